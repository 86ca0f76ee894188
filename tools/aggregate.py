#!/usr/bin/env python
"""Mean ± std of every setting of a sweep made by tools/sweep.py.

    python tools/aggregate.py output/lambda_e [--metrics AP,AP50] [--x MODEL.IFR.LAMBDA_E]

Writes DIR/summary.md, DIR/summary.csv and DIR/summary.png (one panel per metric).
"""

import argparse
import sys

import ifr  # noqa: F401
from ifr.engine.cli import EXIT_ERROR, run_tool
from ifr.experiments.aggregate import aggregate_sweep


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep_dir", metavar="DIR", help="the --output-dir of tools/sweep.py")
    parser.add_argument(
        "--metrics",
        metavar="AP,AP50,...",
        help="default: AP, AP50, AP75, AR1, AR10 and the tracking metrics "
        "(IDF1, MOTA, IDP, IDR, IDs) when the runs report them",
    )
    parser.add_argument(
        "--x",
        dest="x_key",
        metavar="KEY",
        help="swept key on the plot's x axis (needed when several are swept)",
    )
    return parser


def main(argv=None) -> int:
    args = argument_parser().parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        aggregate_sweep(args.sweep_dir, metrics=metrics, x_key=args.x_key)
    except (ValueError, FileNotFoundError) as e:
        print(f"aggregate: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))  # bad input: one error line
