"""Temporal consistency: MOT metrics of predicted tracks against ground-truth tracks.

- IDF1, MOTA, IDP, IDR and ID switches (paper, Table 3): a tight box around each mask in
  every frame, for predictions and ground truth, then the CLEAR-MOT and identity metrics
  of py-motmetrics with a match when the box IoU is at least 0.5.
- HOTA, DetA and AssA (Luiten et al., IJCV 2021) on the masks: TrackEval's HOTA metric
  with the per-frame mask IoU as similarity, averaged over its IoU thresholds .05:.05:.95.
- Queries per track: for each ground-truth track, the number of distinct predicted
  tracks that cover it (:func:`covering_tracks`); ``OneQuery`` is the share of ground-truth
  tracks covered by exactly one, ``QueriesPerTrack`` the mean number.

Every metric is accumulated over all videos (the sums of every video's events, not a mean
of videos) and is class-agnostic. The predictions that take part are those scored at
least ``score_threshold``: a MOT metric scores one set of hypotheses, so the ranked list
of an AP evaluation (top-k per video, many of them duplicates of an instance with another
class) must be cut. The threshold's default is the config key
``TEST.TRACKING.SCORE_THRESHOLD`` (``ifr/config.py``), its only place.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_util
from scipy.optimize import linear_sum_assignment

from ..utils.compat import apply_compat_shims

apply_compat_shims()  # py-motmetrics calls np.asfarray, removed in NumPy 2

import motmetrics as mm  # noqa: E402

from .results_io import parse_results  # noqa: E402
from .tracks import GroundTruth, MaskTrack, parse_ground_truth  # noqa: E402

# The names of the metrics, in the order they are reported.
TRACKING_METRIC_NAMES = (
    "IDF1",
    "MOTA",
    "IDP",
    "IDR",
    "IDs",
    "HOTA",
    "DetA",
    "AssA",
    "OneQuery",
    "QueriesPerTrack",
)
_UNDEFINED = -1.0


def evaluate_tracking(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    score_threshold: float,
    iou_threshold: float = 0.5,
) -> Dict[str, float]:
    """:data:`TRACKING_METRIC_NAMES` of ``results`` (entries of a results file) on ``gt``
    (a YouTube-VIS json); both are checked first. See :func:`tracking_metrics`."""
    ground_truth = parse_ground_truth(gt)
    return tracking_metrics(
        ground_truth, parse_results(results, ground_truth), score_threshold, iou_threshold
    )


def tracking_metrics(
    gt: GroundTruth,
    predictions: Sequence[MaskTrack],
    score_threshold: float,
    iou_threshold: float = 0.5,
) -> Dict[str, float]:
    """The tracking metrics of checked predictions on checked ground truth.

    Which tracks take part: every ground-truth track that is not a crowd region, and every
    prediction with ``score >= score_threshold``; matching is class-agnostic.

    Returns:
        ``IDF1, MOTA, IDP, IDR, HOTA, DetA, AssA, OneQuery`` in percent, ``IDs`` (count)
        and ``QueriesPerTrack``; -1 for a metric that is undefined (e.g. no ground truth).
    """
    gts = [g for g in gt.tracks if not g.iscrowd]
    dts = [d for d in predictions if d.score >= score_threshold]
    accumulators, hota_results, covering = [], [], []
    for video_id in sorted(gt.videos):
        video_gts = [g for g in gts if g.video_id == video_id]
        video_dts = [d for d in dts if d.video_id == video_id]
        length = gt.videos[video_id].length
        accumulators.append(accumulate_video(video_gts, video_dts, length, iou_threshold))
        similarity = mask_similarity(video_gts, video_dts, length)
        hota_results.append(hota_sequence(similarity))
        covering.extend(covering_tracks(similarity, iou_threshold))
    metrics = summarize_accumulators(accumulators)
    metrics.update(summarize_hota(hota_results))
    metrics.update(summarize_covering(covering))
    return {name: metrics[name] for name in TRACKING_METRIC_NAMES}


@dataclass
class MaskSimilarity:
    """Per-frame mask IoU between the ground-truth and predicted tracks of one video.

    Tracks are numbered 0..G-1 and 0..D-1 in the order given. For each frame t:
    ``gt_ids[t]`` (G_t,) and ``dt_ids[t]`` (D_t,) int64, the tracks present in the frame
    (a non-empty mask); ``ious[t]`` (G_t, D_t) float64, their mask IoUs.
    """

    num_gt: int
    num_dt: int
    gt_ids: List[np.ndarray]
    dt_ids: List[np.ndarray]
    ious: List[np.ndarray]


def mask_similarity(
    gts: Sequence[MaskTrack], dts: Sequence[MaskTrack], length: int
) -> MaskSimilarity:
    """The :class:`MaskSimilarity` of one video's tracks (each with ``length`` frames)."""
    gt_ids, dt_ids, ious = [], [], []
    for t in range(length):
        g_idx = np.array([i for i, g in enumerate(gts) if g.areas[t] > 0], dtype=np.int64)
        d_idx = np.array([i for i, d in enumerate(dts) if d.areas[t] > 0], dtype=np.int64)
        iou = np.zeros((len(g_idx), len(d_idx)))
        if len(g_idx) and len(d_idx):
            iou[:] = np.asarray(
                mask_util.iou(
                    [gts[i].rles[t] for i in g_idx],
                    [dts[j].rles[t] for j in d_idx],
                    [0] * len(d_idx),
                )
            ).reshape(len(g_idx), len(d_idx))
        gt_ids.append(g_idx)
        dt_ids.append(d_idx)
        ious.append(iou)
    return MaskSimilarity(len(gts), len(dts), gt_ids, dt_ids, ious)


def hota_sequence(similarity: MaskSimilarity) -> Dict[str, Any]:
    """TrackEval's HOTA results of one video (its ``eval_sequence`` on mask IoUs).

    TrackEval wants the ids of one video numbered 0.. without gaps over the tracks that
    appear; tracks present in no frame are left out (they count nowhere in HOTA).
    """
    gt_ids = _renumber(similarity.gt_ids, similarity.num_gt)
    dt_ids = _renumber(similarity.dt_ids, similarity.num_dt)
    data = {
        "num_timesteps": len(similarity.ious),
        "num_gt_ids": int(max((ids.max() + 1 for ids in gt_ids if ids.size), default=0)),
        "num_tracker_ids": int(max((ids.max() + 1 for ids in dt_ids if ids.size), default=0)),
        "num_gt_dets": int(sum(ids.size for ids in gt_ids)),
        "num_tracker_dets": int(sum(ids.size for ids in dt_ids)),
        "gt_ids": gt_ids,
        "tracker_ids": dt_ids,
        "similarity_scores": similarity.ious,
    }
    return _hota_metric().eval_sequence(data)


def _hota_metric():
    """TrackEval's HOTA metric. trackeval is installed by tools/install_deps.sh without its
    dependencies (it asks for a second OpenCV), so it is not in setup.py: say so if absent."""
    try:
        from trackeval.metrics import HOTA
    except ImportError as e:
        raise ImportError(
            "HOTA needs the trackeval package: run `bash tools/install_deps.sh` or "
            "`pip install --no-deps trackeval==1.3.0`"
        ) from e
    return HOTA()


def _renumber(ids_per_frame: List[np.ndarray], num_ids: int) -> List[np.ndarray]:
    present = np.zeros(num_ids, dtype=bool)
    for ids in ids_per_frame:
        present[ids] = True
    new_id = np.cumsum(present) - 1
    return [new_id[ids] for ids in ids_per_frame]


def summarize_hota(per_video: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """HOTA, DetA, AssA (percent, mean over TrackEval's IoU thresholds) of all videos
    together; -1 when there is no ground truth in any frame."""
    combined = _hota_metric().combine_sequences({str(i): res for i, res in enumerate(per_video)})
    num_gt_dets = combined["HOTA_TP"][0] + combined["HOTA_FN"][0]
    if not per_video or num_gt_dets == 0:
        return {"HOTA": _UNDEFINED, "DetA": _UNDEFINED, "AssA": _UNDEFINED}
    return {name: float(np.mean(combined[name])) * 100 for name in ("HOTA", "DetA", "AssA")}


def covering_tracks(similarity: MaskSimilarity, iou_threshold: float = 0.5) -> List[int]:
    """For each ground-truth track matched in at least one frame, the number of distinct
    predicted tracks that cover it.

    In each frame, ground-truth and predicted masks are matched one to one (Hungarian
    matching maximising the summed IoU), and a matched pair with mask IoU >=
    ``iou_threshold`` covers the ground-truth track in that frame. A ground-truth track
    covered in no frame is left out (it is a miss, which the other metrics count).
    """
    covered_by: List[set] = [set() for _ in range(similarity.num_gt)]
    for gt_ids, dt_ids, ious in zip(similarity.gt_ids, similarity.dt_ids, similarity.ious):
        if not ious.size:
            continue
        rows, cols = linear_sum_assignment(-ious)
        for r, c in zip(rows, cols):
            if ious[r, c] >= iou_threshold:
                covered_by[gt_ids[r]].add(int(dt_ids[c]))
    return [len(tracks) for tracks in covered_by if tracks]


def summarize_covering(counts: Sequence[int]) -> Dict[str, float]:
    """``OneQuery``: percent of the covered ground-truth tracks covered by exactly one
    predicted track; ``QueriesPerTrack``: the mean number of covering tracks (-1 both when
    no track is covered)."""
    if not counts:
        return {"OneQuery": _UNDEFINED, "QueriesPerTrack": _UNDEFINED}
    counts = np.asarray(counts)
    return {
        "OneQuery": float(np.mean(counts == 1)) * 100,
        "QueriesPerTrack": float(np.mean(counts)),
    }


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


# py-motmetrics' counts per video; every metric is a ratio of their sums over the videos.
_MOTMETRICS_COUNTS = (
    "num_objects",
    "num_misses",
    "num_false_positives",
    "num_switches",
    "idtp",
    "idfp",
    "idfn",
)


def summarize_accumulators(accumulators: Sequence[mm.MOTAccumulator]) -> Dict[str, float]:
    """IDF1, MOTA, IDP, IDR (percent, -1 when undefined) and IDs over all accumulators.

    Each video's counts come from its own accumulator and are summed: tracks of different
    videos never overlap, so the identity assignment over all videos (what py-motmetrics'
    ``OVERALL`` solves as one (G + D) x (G + D) problem) is the sum of the per-video
    ones, and memory is bounded by the largest video's (G_v + D_v)^2 costs instead of the
    whole dataset's.
    """
    metrics_host = mm.metrics.create()
    totals = dict.fromkeys(_MOTMETRICS_COUNTS, 0.0)
    for accumulator in accumulators:
        counts = metrics_host.compute(accumulator, metrics=list(_MOTMETRICS_COUNTS))
        for name in _MOTMETRICS_COUNTS:
            totals[name] += float(counts[name].iloc[0])
    idtp, idfp, idfn = totals["idtp"], totals["idfp"], totals["idfn"]
    errors = totals["num_misses"] + totals["num_false_positives"] + totals["num_switches"]
    return {
        "IDF1": _percent(2 * idtp, 2 * idtp + idfp + idfn),
        "MOTA": _percent(totals["num_objects"] - errors, totals["num_objects"]),
        "IDP": _percent(idtp, idtp + idfp),
        "IDR": _percent(idtp, idtp + idfn),
        "IDs": int(totals["num_switches"]),
    }


def _percent(numerator: float, denominator: float) -> float:
    return 100.0 * numerator / denominator if denominator > 0 else _UNDEFINED
