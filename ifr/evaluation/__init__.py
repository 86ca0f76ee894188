"""Evaluation: YouTube-VIS AP/AR as the official evaluation, MOT metrics, results files and
the Detectron2 ``DatasetEvaluator``."""
from .evaluator import YTVISEvaluator
from .results_io import (
    instances_to_ytvis_results,
    load_results,
    validate_results,
    write_results,
)
from .tracking import TRACKING_METRIC_NAMES, evaluate_tracking
from .ytvis_eval import METRIC_NAMES, evaluate_ytvis

__all__ = [
    "YTVISEvaluator",
    "evaluate_ytvis",
    "evaluate_tracking",
    "instances_to_ytvis_results",
    "load_results",
    "validate_results",
    "write_results",
    "METRIC_NAMES",
    "TRACKING_METRIC_NAMES",
]
