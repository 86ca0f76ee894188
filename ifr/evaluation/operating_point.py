"""A model's own operating point for the tracking metrics.

The tracking metrics (:mod:`.tracking`) score the predictions above a score threshold.
One fixed threshold does not treat models alike: sigmoid (focal) scores and softmax scores
are not on one scale, so a threshold of 0.5 measures the recall of one model against the
precision of another. The operating point of a model is the threshold that maximises a
tracking metric (IDF1 by default) on data the model is neither trained nor evaluated on
(a *tune* split); its test-split metrics are then reported at that threshold, beside
those at the fixed one. The paper is silent on this choice (docs/method.md).

A curve is the tracking metrics at each threshold of a grid, computed on one set of
predictions: ``{threshold: {metric: value}}``.
"""

from typing import Dict, Mapping, Sequence

from .tracking import tracking_metrics
from .tracks import GroundTruth, MaskTrack

# The threshold grid: 0.05, 0.10, ..., 0.95.
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
UNDEFINED = -1.0  # what the tracking metrics report for a metric with nothing to measure

Curve = Dict[float, Dict[str, float]]


def tracking_curve(
    gt: GroundTruth,
    predictions: Sequence[MaskTrack],
    thresholds: Sequence[float] = THRESHOLDS,
) -> Curve:
    """The tracking metrics of ``predictions`` at each score threshold of ``thresholds``."""
    return {float(t): tracking_metrics(gt, predictions, float(t)) for t in thresholds}


def choose_threshold(curve: Mapping[float, Mapping[str, float]], metric: str = "IDF1") -> float:
    """The threshold of ``curve`` where ``metric`` is highest; among equal values the
    lowest threshold (the one that keeps the most predictions). Undefined values (-1)
    never win over defined ones.

    Raises:
        ValueError: an empty curve, or a metric the curve does not hold.
    """
    if not curve:
        raise ValueError("an empty curve has no operating point")
    thresholds = sorted(curve)
    if metric not in curve[thresholds[0]]:
        raise ValueError(
            f"the curve has no metric {metric!r} (it has {sorted(curve[thresholds[0]])})"
        )
    defined = [t for t in thresholds if curve[t][metric] != UNDEFINED] or thresholds
    return max(defined, key=lambda t: (curve[t][metric], -t))
