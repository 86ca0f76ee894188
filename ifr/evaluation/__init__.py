"""Evaluation: YouTube-VIS AP/AR as the official evaluation, MOT metrics, results files and
the Detectron2 ``DatasetEvaluator``."""

from .evaluator import YTVISEvaluator
from .results_io import (
    instances_to_ytvis_results,
    load_results,
    parse_results,
    validate_results,
    write_results,
)
from .tracking import TRACKING_METRIC_NAMES, evaluate_tracking, tracking_metrics
from .tracks import GroundTruth, parse_ground_truth
from .ytvis_eval import METRIC_NAMES, evaluate_ytvis, ytvis_metrics

__all__ = [
    "YTVISEvaluator",
    "evaluate_ytvis",
    "evaluate_tracking",
    "ytvis_metrics",
    "tracking_metrics",
    "GroundTruth",
    "parse_ground_truth",
    "parse_results",
    "instances_to_ytvis_results",
    "load_results",
    "validate_results",
    "write_results",
    "METRIC_NAMES",
    "TRACKING_METRIC_NAMES",
]
