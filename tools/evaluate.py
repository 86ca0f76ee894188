#!/usr/bin/env python
"""Evaluate a YouTube-VIS results file against a ground-truth json.

    python tools/evaluate.py --annotations GT.json --results results.json \
        [--tracking [--tracking-score-threshold S]] [--output metrics.json]

Prints AP, AP50, AP75, APs, APm, APl, AR1, AR10 (as the official YouTube-VIS evaluation)
and, with --tracking, IDF1, MOTA, IDP, IDR, IDs (paper, Table 3), HOTA, DetA, AssA and
the queries-per-track statistic (OneQuery, QueriesPerTrack) of the predictions scored at
least S (default: the config key TEST.TRACKING_SCORE_THRESHOLD). --results also takes
the results.zip made for the evaluation server. Both files are checked in full first;
a malformed input gives one line naming the file, video and frame at fault, exit code 1.
"""

import argparse
import os
import sys
from typing import List, Optional

from detectron2.config import get_cfg
from tabulate import tabulate

from ifr.config import add_ifr_config
from ifr.engine.cli import run_tool
from ifr.evaluation.offline import evaluate_files
from ifr.utils.atomic_io import atomic_write_json


def default_tracking_score_threshold() -> float:
    """``TEST.TRACKING_SCORE_THRESHOLD`` of the project's config defaults."""
    cfg = get_cfg()
    add_ifr_config(cfg)
    return cfg.TEST.TRACKING_SCORE_THRESHOLD


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--annotations", required=True, help="YouTube-VIS json with ground truth")
    parser.add_argument("--results", required=True, help="results.json or results.zip")
    parser.add_argument("--tracking", action="store_true", help="also the tracking metrics")
    parser.add_argument(
        "--tracking-score-threshold",
        type=float,
        default=None,
        help="predictions scored below take no part in the tracking metrics "
        "(default: the config key TEST.TRACKING_SCORE_THRESHOLD)",
    )
    parser.add_argument("--output", help="write the metrics here as a flat JSON object")
    return parser


def check_output_path(path: str) -> None:
    """Fail before any work when the metrics could not be written to ``path``."""
    if os.path.isdir(path):
        raise ValueError(
            f"--output {path}: is a folder; give a file name, e.g. "
            f"{os.path.join(path, 'metrics.json')}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    parent = folder
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise ValueError(f"--output {path}: cannot write in {parent}")


def main(argv: Optional[List[str]] = None) -> int:
    args = argument_parser().parse_args(argv)
    threshold = args.tracking_score_threshold
    if threshold is None:
        threshold = default_tracking_score_threshold()
    try:
        if args.output:
            check_output_path(args.output)
        metrics = evaluate_files(args.annotations, args.results, args.tracking, threshold)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(tabulate([list(metrics.values())], headers=list(metrics), floatfmt=".2f"))
    if args.tracking:
        print(f"tracking metrics: predictions with score >= {threshold}")
    if args.output:
        atomic_write_json(args.output, metrics, indent=None)
        print(f"metrics written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))  # bad input: one error line
