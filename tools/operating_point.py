#!/usr/bin/env python
"""Tracking metrics of a comparison's models at a fixed score threshold and at each
model's own threshold, chosen on a tune split (neither trained nor evaluated on).

    python tools/operating_point.py --comparison output/compare_hard \\
        --tune-dataset ytvis_tiny_hard_tune
    python tools/operating_point.py --comparison output/compare_hard \\
        --tune-dataset ytvis_tiny_hard_tune --configs ifr_tiny --name recurrence_off \\
        MODEL.IFR.TEST.RECURRENCE False

For every finished run of the comparison folder (made by tools/compare.py): inference on
the tune split, the threshold of best IDF1 there (0.05 to 0.95 in steps of 0.05, then 0.96
to 0.99), then AP and the tracking metrics of the test split at --fixed-threshold and at
that threshold.
Trailing KEY VALUE pairs (put them last) are test-time overrides; the test split is then
inferred again.
Writes DIR/<name>.md, .csv and .png (IDF1 against the threshold) and, per run,
<run>/<name>/operating_point.json; repeating the command reuses finished runs.
"""

import argparse
import math
import sys
from typing import List, Optional

import ifr  # noqa: F401  (registers datasets and model components)
from ifr.engine.cli import run_tool
from ifr.experiments.operating_point import (
    DEFAULT_NAME,
    operating_points,
    write_operating_point_report,
)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--comparison", required=True, metavar="DIR", help="a tools/compare.py output folder"
    )
    parser.add_argument(
        "--tune-dataset",
        required=True,
        metavar="NAME",
        help="registered dataset the thresholds are chosen on, e.g. ytvis_tiny_hard_tune",
    )
    parser.add_argument("--configs", nargs="+", metavar="LABEL", help="default: every config")
    parser.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help="sub-folder of each run and stem of the report files (default: %(default)s)",
    )
    parser.add_argument(
        "--fixed-threshold",
        type=float,
        default=0.5,
        help="the fixed score threshold reported beside the own one (default: %(default)s)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = argument_parser().parse_args(argv)
    if not (math.isfinite(args.fixed_threshold) and 0.0 <= args.fixed_threshold <= 1.0):
        print(f"error: --fixed-threshold {args.fixed_threshold}: not in [0, 1]", file=sys.stderr)
        return 1
    try:
        results = operating_points(
            args.comparison,
            args.tune_dataset,
            args.configs,
            args.opts,
            args.name,
            args.fixed_threshold,
            echo=lambda line: print(line, flush=True),
        )
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        write_operating_point_report(
            results,
            args.comparison,
            args.tune_dataset,
            args.name,
            args.fixed_threshold,
        )
    )
    print(f"Wrote {args.name}.md, .csv and .png in {args.comparison}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
