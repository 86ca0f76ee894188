#!/usr/bin/env python
"""Evaluate a YouTube-VIS results file against a ground-truth json.

    python tools/evaluate.py --annotations GT.json --results results.json \
        [--tracking] [--output metrics.json]

Prints AP, AP50, AP75, APs, APm, APl, AR1, AR10 (as the official YouTube-VIS evaluation)
and, with --tracking, IDF1, MOTA, IDP, IDR and IDs (paper, Table 3). --results also takes
the results.zip made for the evaluation server. Exit code 1 on a malformed input.
"""
import argparse
import sys
from typing import List, Optional

from tabulate import tabulate

from ifr.evaluation.offline import evaluate_files
from ifr.utils.atomic_io import atomic_write_json


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--annotations", required=True, help="YouTube-VIS json with ground truth")
    parser.add_argument("--results", required=True, help="results.json or results.zip")
    parser.add_argument("--tracking", action="store_true", help="also the MOT metrics")
    parser.add_argument(
        "--tracking-score-threshold", type=float, default=0.5,
        help="predictions scored below take no part in the MOT metrics",
    )
    parser.add_argument("--output", help="write the metrics here as a flat JSON object")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = argument_parser().parse_args(argv)
    try:
        metrics = evaluate_files(
            args.annotations, args.results, args.tracking, args.tracking_score_threshold
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(tabulate([list(metrics.values())], headers=list(metrics), floatfmt=".2f"))
    if args.output:
        atomic_write_json(args.output, metrics, indent=None)
        print(f"metrics written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
