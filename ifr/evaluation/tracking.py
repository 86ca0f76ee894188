"""Temporal consistency: MOT metrics on the boxes of predicted and ground-truth tracks.

Paper, Table 3: a tight box around each mask in every frame, for predictions and ground
truth, then the CLEAR-MOT and identity metrics of py-motmetrics with a match when the
box IoU is at least 0.5: IDF1, MOTA, IDP, IDR and the number of identity switches,
accumulated over all videos (the sums of every video's events, not a mean of videos).
"""
import math
from typing import Any, Dict, List, Mapping, Sequence

import motmetrics as mm
import numpy as np
from pycocotools import mask as mask_util

from .results_io import validate_results
from .tracks import MaskTrack, category_ids, gt_tracks, result_tracks, video_infos

TRACKING_METRIC_NAMES = ("IDF1", "MOTA", "IDP", "IDR", "IDs")
_MOTMETRICS_NAMES = {
    "IDF1": "idf1",
    "MOTA": "mota",
    "IDP": "idp",
    "IDR": "idr",
    "IDs": "num_switches",
}


def evaluate_tracking(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
) -> Dict[str, float]:
    """IDF1, MOTA, IDP, IDR (percent) and IDs (count) of ``results`` on ``gt``.

    Which tracks take part: every ground-truth annotation that is not a crowd region, and
    every prediction with ``score >= score_threshold``. A MOT metric scores one set of
    hypotheses, so the ranked list of an AP evaluation (top-k per video, many of them
    duplicates of an instance with another class) must be cut; 0.5 keeps the predictions
    the model believes in. Matching is class-agnostic, as in tracking.

    Returns:
        ``{"IDF1", "MOTA", "IDP", "IDR"}`` in percent and ``"IDs"``; -1 for a metric that
        is undefined (no ground truth at all).
    """
    videos = video_infos(gt)
    validate_results(results, videos, set(category_ids(gt)))
    gts = [g for g in gt_tracks(gt, videos) if not g.iscrowd]
    dts = [d for d in result_tracks(results) if d.score >= score_threshold]
    accumulators = [
        accumulate_video(
            [g for g in gts if g.video_id == video_id],
            [d for d in dts if d.video_id == video_id],
            videos[video_id].length,
            iou_threshold,
        )
        for video_id in sorted(videos)
    ]
    return summarize_accumulators(accumulators)


def tight_boxes(track: MaskTrack) -> Dict[int, np.ndarray]:
    """frame index -> (4,) XYWH tight box of the mask, for the frames where it is present."""
    present = [t for t, rle in enumerate(track.rles) if rle is not None and track.areas[t] > 0]
    if not present:
        return {}
    boxes = mask_util.toBbox([track.rles[t] for t in present])
    return dict(zip(present, boxes))


def accumulate_video(
    gts: List[MaskTrack], dts: List[MaskTrack], length: int, iou_threshold: float = 0.5
) -> mm.MOTAccumulator:
    """The MOT events of one video: frame by frame, ground-truth boxes vs predicted boxes,
    a pair matchable when its box IoU >= ``iou_threshold``."""
    gt_boxes = [(g.id, tight_boxes(g)) for g in gts]
    dt_boxes = [(d.id, tight_boxes(d)) for d in dts]
    accumulator = mm.MOTAccumulator(auto_id=False)
    for t in range(length):
        gt_ids = [track_id for track_id, boxes in gt_boxes if t in boxes]
        dt_ids = [track_id for track_id, boxes in dt_boxes if t in boxes]
        gt_frame = np.array([boxes[t] for _, boxes in gt_boxes if t in boxes]).reshape(-1, 4)
        dt_frame = np.array([boxes[t] for _, boxes in dt_boxes if t in boxes]).reshape(-1, 4)
        # Distances are 1 - IoU; pairs farther than 1 - iou_threshold are NaN (no match).
        distances = mm.distances.iou_matrix(gt_frame, dt_frame, max_iou=1.0 - iou_threshold)
        accumulator.update(gt_ids, dt_ids, distances, frameid=t)
    return accumulator


def summarize_accumulators(accumulators: Sequence[mm.MOTAccumulator]) -> Dict[str, float]:
    """IDF1, MOTA, IDP, IDR (percent, -1 when undefined) and IDs over all accumulators."""
    names = [str(i) for i in range(len(accumulators))]
    summary = mm.metrics.create().compute_many(
        list(accumulators),
        metrics=list(_MOTMETRICS_NAMES.values()),
        names=names,
        generate_overall=True,
    )
    overall = summary.loc["OVERALL"]
    metrics = {}
    for name, mm_name in _MOTMETRICS_NAMES.items():
        value = float(overall[mm_name])
        if name == "IDs":
            metrics[name] = int(value)
        else:
            metrics[name] = value * 100 if math.isfinite(value) else -1.0
    return metrics
