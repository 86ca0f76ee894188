"""Evaluation of a results file against a ground-truth file (what ``tools/evaluate.py`` runs)."""

from collections import OrderedDict
from typing import List, Sequence, Set, Tuple

from ..utils.json_io import read_json
from .results_io import load_results, parse_results
from .tracking import tracking_metrics
from .tracks import GroundTruth, MaskTrack, has_annotations, parse_ground_truth
from .ytvis_eval import ytvis_metrics


def load_ground_truth(path: str) -> GroundTruth:
    """Read and check a YouTube-VIS json that has ground truth (``annotations``).

    Raises:
        ValueError: naming the file (and the video, annotation and frame) at fault.
    """
    gt = read_json(path, "ground-truth file")
    if not has_annotations(gt):
        raise ValueError(f"{path}: has no 'annotations' (a test split?); nothing to evaluate")
    return parse_ground_truth(gt, source=path)


def evaluate_files(
    annotations_path: str,
    results_path: str,
    tracking: bool,
    tracking_score_threshold: float,
) -> "OrderedDict[str, float]":
    """Flat metrics of a ``results.json`` (or ``results.zip``) on a YouTube-VIS json:
    ``AP, AP50, AP75, APs, APm, APl, AR1, AR10`` (percent) and, with ``tracking``, the
    :data:`~ifr.evaluation.tracking.TRACKING_METRIC_NAMES` of predictions scored at least
    ``tracking_score_threshold``.

    Both files are checked in full when read, before any metric is computed.

    Raises:
        ValueError: naming the file, and the video, entry or annotation and frame, of a
            malformed input.
    """
    gt, predictions = load_files(annotations_path, results_path)
    return evaluate_tracks(gt, predictions, tracking, tracking_score_threshold)


def load_files(annotations_path: str, results_path: str) -> Tuple[GroundTruth, List[MaskTrack]]:
    """The ground truth and the predicted tracks (in the results file's order), both files
    checked in full (errors as :func:`evaluate_files`)."""
    gt = load_ground_truth(annotations_path)
    return gt, parse_results(load_results(results_path), gt, source=results_path)


def evaluate_tracks(
    gt: GroundTruth,
    predictions: Sequence[MaskTrack],
    tracking: bool,
    tracking_score_threshold: float,
) -> "OrderedDict[str, float]":
    """The metrics of :func:`evaluate_files`, from files already read (:func:`load_files`)."""
    metrics = OrderedDict(ytvis_metrics(gt, predictions))
    if tracking:
        metrics.update(tracking_metrics(gt, predictions, tracking_score_threshold))
    return metrics


def parse_video_ids(spec: str) -> Set[int]:
    """``"1-8"``, ``"3,5,9"`` or ``"1-4,10"`` -> the video ids it names; ValueError naming
    the spec when it is malformed or empty."""
    ids: Set[int] = set()
    try:
        for part in spec.split(","):
            first, _, last = part.strip().partition("-")
            low, high = int(first), int(last or first)
            if high < low:
                raise ValueError
            ids.update(range(low, high + 1))
    except ValueError:
        raise ValueError(
            f"--videos {spec!r}: expected ids and ranges such as 1-8 or 3,5,9"
        ) from None
    return ids


def restrict_to_videos(
    gt: GroundTruth, predictions: Sequence[MaskTrack], video_ids: Set[int]
) -> Tuple[GroundTruth, List[MaskTrack]]:
    """The ground truth and predictions of the videos ``video_ids`` only; ValueError naming
    the ids the ground truth does not have."""
    unknown = sorted(video_ids - set(gt.videos))
    if unknown:
        raise ValueError(
            f"--videos: {len(unknown)} ids not in the ground truth, e.g. {unknown[:5]}"
        )
    return gt.restrict(video_ids), [p for p in predictions if p.video_id in video_ids]
