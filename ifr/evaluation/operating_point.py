"""A model's own operating point for the tracking metrics.

The tracking metrics (:mod:`.tracking`) score the predictions above a score threshold.
One fixed threshold does not treat models alike: sigmoid (focal) scores and softmax scores
are not on one scale, so a threshold of 0.5 measures the recall of one model against the
precision of another. The operating point of a model is the threshold of best IDF1 on
data the model is neither trained nor evaluated on (a *tune* split); its test-split
metrics are then reported at that threshold, beside those at the fixed one. The paper is
silent on this choice (docs/method.md).

A curve is IDF1 (percent) at each threshold of a grid: ``{threshold: IDF1}``. It is
computed in one pass over the box overlaps (:class:`IdentityOverlaps`), with the same
matching rule and global identity assignment as py-motmetrics' IDF1 in
:func:`.tracking.tracking_metrics` (tests check the two agree), which would redo the
overlaps and its per-frame bookkeeping at every threshold.
"""

from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from .tracking import mm, tight_boxes  # mm: py-motmetrics, with the NumPy shims it needs
from .tracks import GroundTruth, MaskTrack

# The threshold grid: 0.05, 0.10, ..., 0.95, then 0.96 to 0.99 (softmax scores of confident
# predictions crowd near 1).
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (0.96, 0.97, 0.98, 0.99)
UNDEFINED = -1.0  # IDF1 with neither ground-truth nor predicted boxes

Curve = Dict[float, float]


@dataclass
class IdentityOverlaps:
    """The box overlaps of one video's ground-truth tracks (G) and predicted tracks (D).

    ``matched`` (G, D) int64: the frames where both are present with box IoU at least the
    IoU threshold; ``gt_boxes`` the ground-truth boxes of the video; ``dt_boxes`` (D,)
    the frames each prediction is present in; ``scores`` (D,) the predictions' scores.
    """

    matched: np.ndarray
    gt_boxes: int
    dt_boxes: np.ndarray
    scores: np.ndarray

    def identity_true_positives(self, keep: np.ndarray) -> int:
        """IDTP of the predictions ``keep`` (D,) bool: the most frames matched by a
        one-to-one assignment of ground-truth tracks to the kept predictions."""
        matched = self.matched[:, keep]
        if matched.size == 0:
            return 0
        rows, cols = linear_sum_assignment(matched, maximize=True)
        return int(matched[rows, cols].sum())


def identity_overlaps(
    gts: List[MaskTrack], dts: List[MaskTrack], length: int, iou_threshold: float = 0.5
) -> IdentityOverlaps:
    """:class:`IdentityOverlaps` of one video; boxes and the IoU rule of
    :func:`.tracking.accumulate_video`."""
    gt_boxes = [tight_boxes(g) for g in gts]
    dt_boxes = [tight_boxes(d) for d in dts]
    matched = np.zeros((len(gts), len(dts)), dtype=np.int64)
    for t in range(length):
        gt_ids = [i for i, boxes in enumerate(gt_boxes) if t in boxes]
        dt_ids = [j for j, boxes in enumerate(dt_boxes) if t in boxes]
        if not gt_ids or not dt_ids:
            continue
        gt_frame = np.array([gt_boxes[i][t] for i in gt_ids])
        dt_frame = np.array([dt_boxes[j][t] for j in dt_ids])
        distances = mm.distances.iou_matrix(gt_frame, dt_frame, max_iou=1.0 - iou_threshold)
        matched[np.ix_(gt_ids, dt_ids)] += ~np.isnan(distances)
    return IdentityOverlaps(
        matched,
        sum(len(boxes) for boxes in gt_boxes),
        np.array([len(boxes) for boxes in dt_boxes], dtype=np.int64),
        np.array([d.score for d in dts], dtype=np.float64),
    )


def idf1_curve(
    gt: GroundTruth,
    predictions: Sequence[MaskTrack],
    thresholds: Sequence[float] = THRESHOLDS,
    iou_threshold: float = 0.5,
) -> Curve:
    """IDF1 (percent) of the predictions scored at least each threshold:
    ``2 IDTP / (ground-truth boxes + predicted boxes)`` over all videos, -1 where both
    are 0. Crowd ground truth takes no part, as in :func:`.tracking.tracking_metrics`."""
    videos = []
    for video_id in sorted(gt.videos):
        gts = [g for g in gt.tracks if g.video_id == video_id and not g.iscrowd]
        dts = [d for d in predictions if d.video_id == video_id]
        videos.append(identity_overlaps(gts, dts, gt.videos[video_id].length, iou_threshold))
    curve = {}
    for threshold in thresholds:
        idtp = boxes = 0
        for video in videos:
            keep = video.scores >= threshold
            idtp += video.identity_true_positives(keep)
            boxes += video.gt_boxes + int(video.dt_boxes[keep].sum())
        curve[float(threshold)] = 200.0 * idtp / boxes if boxes else UNDEFINED
    return curve


def choose_threshold(curve: Mapping[float, float]) -> float:
    """The threshold of ``curve`` with the highest IDF1; among equal values the lowest
    (the one that keeps the most predictions). Undefined values (-1) do not count.

    Raises:
        ValueError: an empty curve.
    """
    if not curve:
        raise ValueError("an empty curve has no operating point")
    thresholds = sorted(curve)
    defined = [t for t in thresholds if curve[t] != UNDEFINED] or thresholds
    return max(defined, key=lambda t: (curve[t], -t))
