#!/usr/bin/env python
"""Evaluate a YouTube-VIS results file against a ground-truth json.

    python tools/evaluate.py --annotations GT.json --results results.json \\
        [--tracking [--tracking-score-threshold S]] [--videos 1-8] \\
        [--output metrics.json] [--per-track per_track.csv]

Prints AP, AP50, AP75, APs, APm, APl, AR1, AR10 (as the official YouTube-VIS evaluation)
and, with --tracking, IDF1, MOTA, IDP, IDR, IDs (paper, Table 3), HOTA, DetA, AssA and
the queries-per-track statistic (OneQuery, QueriesPerTrack) of the predictions scored at
least S (default: the config key TEST.TRACKING_SCORE_THRESHOLD). --results also takes
the results.zip made for the evaluation server. Both files are checked in full first;
a malformed input gives one line naming the file, video and frame at fault, exit code 1.
--per-track also writes one CSV row per ground-truth track with the predicted track that
overlaps it most (its track IoU, score, category and mean area; the fields are described
in ifr/evaluation/per_track.py) and prints a summary of those overlaps. --videos evaluates
a subset of the videos (e.g. the first 8 of a split).
"""

import argparse
import math
import os
import sys
from typing import List, Optional

from detectron2.config import get_cfg
from tabulate import tabulate

from ifr.config import add_ifr_config
from ifr.engine.cli import run_tool
from ifr.evaluation.offline import (
    evaluate_tracks,
    load_files,
    parse_video_ids,
    restrict_to_videos,
)
from ifr.evaluation.per_track import (
    format_summary,
    per_track_overlaps,
    summarize_overlaps,
    write_per_track_csv,
)
from ifr.utils.atomic_io import atomic_write_json
from ifr.utils.paths import check_output_is_not_input


def default_tracking_score_threshold() -> float:
    """``TEST.TRACKING_SCORE_THRESHOLD`` of the project's config defaults."""
    cfg = get_cfg()
    add_ifr_config(cfg)
    return cfg.TEST.TRACKING_SCORE_THRESHOLD


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    parser.add_argument(
        "--videos",
        metavar="IDS",
        help="evaluate these videos only (ground truth and results), e.g. 1-8 or 3,5,9",
    )
    parser.add_argument("--output", help="write the metrics here as a flat JSON object")
    parser.add_argument(
        "--per-track",
        metavar="FILE.csv",
        help="write, per ground-truth track, the best-overlapping predicted track here",
    )
    return parser


def check_output_path(path: str, flag: str = "--output", example: str = "metrics.json") -> None:
    """Fail before any work when the file of ``flag`` could not be written to ``path``."""
    if os.path.isdir(path):
        raise ValueError(
            f"{flag} {path}: is a folder; give a file name, e.g. {os.path.join(path, example)}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    parent = folder
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise ValueError(f"{flag} {path}: cannot write in {parent}")


def main(argv: Optional[List[str]] = None) -> int:
    args = argument_parser().parse_args(argv)
    threshold = args.tracking_score_threshold
    if threshold is None:
        threshold = default_tracking_score_threshold()
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        print(f"error: --tracking-score-threshold {threshold}: not in [0, 1]", file=sys.stderr)
        return 1
    try:
        inputs = {"--annotations": args.annotations, "--results": args.results}
        if args.output:
            check_output_path(args.output)
            check_output_is_not_input("--output", args.output, inputs)
        if args.per_track:
            check_output_path(args.per_track, "--per-track", "per_track.csv")
            check_output_is_not_input("--per-track", args.per_track, inputs)
            if args.output:
                check_output_is_not_input("--per-track", args.per_track, {"--output": args.output})
        video_ids = parse_video_ids(args.videos) if args.videos else None
        gt, predictions = load_files(args.annotations, args.results)
        if video_ids is not None:
            gt, predictions = restrict_to_videos(gt, predictions, video_ids)
        metrics = evaluate_tracks(gt, predictions, args.tracking, threshold)
    except ValueError as e:  # OutputIsInputError too
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(tabulate([list(metrics.values())], headers=list(metrics), floatfmt=".2f"))
    if args.tracking:
        print(f"tracking metrics: predictions with score >= {threshold}")
    if args.output:
        atomic_write_json(args.output, metrics, indent=None)
        print(f"metrics written to {args.output}")
    if args.per_track:
        rows = per_track_overlaps(gt, predictions)
        write_per_track_csv(args.per_track, rows)
        print(format_summary(summarize_overlaps(rows)))
        print(f"per-track overlaps written to {args.per_track}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))  # bad input: one error line
