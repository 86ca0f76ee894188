"""Evaluation of a results file against a ground-truth file (what ``tools/evaluate.py`` runs)."""
import json
import os
from collections import OrderedDict
from typing import Any, Dict

from .results_io import load_results
from .tracking import evaluate_tracking
from .tracks import has_annotations
from .ytvis_eval import evaluate_ytvis


def load_ground_truth(path: str) -> Dict[str, Any]:
    """Read a YouTube-VIS json that has ground truth (``annotations``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    try:
        with open(path) as f:
            gt = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(gt, dict):
        raise ValueError(f"{path}: a YouTube-VIS json must be an object")
    if not has_annotations(gt):
        raise ValueError(f"{path}: has no 'annotations' (a test split?); nothing to evaluate")
    return gt


def evaluate_files(
    annotations_path: str,
    results_path: str,
    tracking: bool = False,
    tracking_score_threshold: float = 0.5,
) -> "OrderedDict[str, float]":
    """Flat metrics of a ``results.json`` (or ``results.zip``) on a YouTube-VIS json:
    ``AP, AP50, AP75, APs, APm, APl, AR1, AR10`` (percent) and, with ``tracking``,
    ``IDF1, MOTA, IDP, IDR`` (percent) and ``IDs``.

    Raises:
        ValueError: naming the file, the entry and the video of a malformed input.
    """
    gt = load_ground_truth(annotations_path)
    results = load_results(results_path)
    try:
        metrics = OrderedDict(evaluate_ytvis(gt, results))
        if tracking:
            metrics.update(evaluate_tracking(gt, results, tracking_score_threshold))
    except ValueError as e:
        raise ValueError(f"{results_path} on {annotations_path}: {e}") from e
    return metrics
