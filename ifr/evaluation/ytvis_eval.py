"""YouTube-VIS AP and AR, computed as the official YouTube-VIS evaluation does.

The official evaluation (the YouTube-VIS fork of the COCO API, ``YTVOSeval``) is COCO's
segm evaluation with a track IoU in place of the mask IoU:

- track IoU of a prediction and a ground-truth instance: sum over frames of the
  intersections / sum over frames of the unions;
- per video and category, predictions by decreasing score (at most 100), each matched
  greedily to the unmatched ground truth of highest IoU >= the threshold, at the IoU
  thresholds .50:.05:.95; crowd instances are ignored and may match many predictions;
- area ranges test a track's average area over the frames where it is present:
  all [0, 1e10], small [0, 128^2], medium [128^2, 256^2], large [256^2, 1e10];
- per category, precision made monotone (interpolated) and read at 101 recall points;
  AP is the mean over thresholds, recall points and categories with ground truth; AR_k
  the mean over thresholds and categories of the recall with k predictions per video.

Metrics are percentages (0-100); a metric with no ground truth to measure is -1.
"""

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from .results_io import parse_results
from .tracks import GroundTruth, MaskTrack, parse_ground_truth, track_iou_matrix

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETS = (1, 10, 100)
# YouTube-VIS' area ranges (not COCO's 32^2 / 96^2), bounds inclusive.
AREA_RANGES = (
    ("all", (0.0, 1e5**2)),
    ("small", (0.0, 128.0**2)),
    ("medium", (128.0**2, 256.0**2)),
    ("large", (256.0**2, 1e5**2)),
)
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")


@dataclass
class MatchResult:
    """Matching of one video and category at one area range.

    ``scores (D,)``, ``dt_matched (T, D) bool``, ``dt_ignore (T, D) bool`` for the D
    predictions by decreasing score, ``gt_ignore (G,) bool``; T IoU thresholds.
    """

    scores: np.ndarray
    dt_matched: np.ndarray
    dt_ignore: np.ndarray
    gt_ignore: np.ndarray


def evaluate_ytvis(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl, AR1, AR10 (percent) of ``results`` on ``gt``.

    Args:
        gt: a YouTube-VIS json (``videos``, ``annotations``, ``categories``).
        results: result entries (see :mod:`ifr.evaluation.results_io`); every video id and
            category id must be in ``gt``.
    Both are checked first (ValueError naming the bad entry).
    """
    ground_truth = parse_ground_truth(gt)
    return ytvis_metrics(ground_truth, parse_results(results, ground_truth))


def ytvis_metrics(gt: GroundTruth, predictions: Sequence[MaskTrack]) -> Dict[str, float]:
    """:func:`evaluate_ytvis` on checked ground truth and predictions."""
    precision, recall = compute_precision_recall(gt, predictions)
    return summarize(precision, recall)


def compute_precision_recall(
    gt: GroundTruth, predictions: Sequence[MaskTrack]
) -> Tuple[np.ndarray, np.ndarray]:
    """COCO-style accumulated curves of ``predictions`` on ``gt``.

    Returns:
        precision: (T, R, K, A, M) interpolated precision at R recall points, -1 where the
            category has no ground truth in the area range;
        recall: (T, K, A, M) highest recall, -1 likewise. T IoU thresholds, K categories
        (sorted ids of ``gt``), A area ranges, M max-detection caps.
    """
    gts_by_key = _group(gt.tracks)
    dts_by_key = {
        key: _top_scoring(dts, MAX_DETS[-1]) for key, dts in _group(list(predictions)).items()
    }
    matches = [[[] for _ in AREA_RANGES] for _ in gt.categories]
    for k, category_id in enumerate(gt.categories):
        for video_id in sorted(gt.videos):
            gts = gts_by_key.get((video_id, category_id), [])
            dts = dts_by_key.get((video_id, category_id), [])
            if not gts and not dts:
                continue
            ious = track_iou_matrix(dts, gts)
            for a, (_, area_range) in enumerate(AREA_RANGES):
                matches[k][a].append(match_video_category(ious, dts, gts, area_range))
    return accumulate(matches)


def _group(tracks: List[MaskTrack]) -> Dict[Tuple[int, int], List[MaskTrack]]:
    groups = defaultdict(list)
    for track in tracks:
        groups[track.video_id, track.category_id].append(track)
    return groups


def _top_scoring(dts: List[MaskTrack], max_dets: int) -> List[MaskTrack]:
    # Stable sort: equal scores keep the order of the results file, as the official code.
    order = np.argsort([-d.score for d in dts], kind="mergesort")
    return [dts[i] for i in order[:max_dets]]


def _outside(area: float, area_range: Tuple[float, float]) -> bool:
    return area < area_range[0] or area > area_range[1]


def match_video_category(
    ious: np.ndarray,
    dts: Sequence[MaskTrack],
    gts: Sequence[MaskTrack],
    area_range: Tuple[float, float],
) -> MatchResult:
    """Greedy matching of one video and category at every IoU threshold.

    Args:
        ious: (D, G) track IoUs, predictions ``dts`` sorted by decreasing score.
        area_range: ground truth whose average area is outside is ignored, and so are
            unmatched predictions whose average area is outside.
    """
    gt_ignore = np.array([g.iscrowd or _outside(g.avg_area, area_range) for g in gts], bool)
    gt_crowd = np.array([g.iscrowd for g in gts], bool)
    order = np.argsort(gt_ignore, kind="mergesort")  # ignored ground truth last
    gt_ignore, gt_crowd = gt_ignore[order], gt_crowd[order]
    dt_matched, dt_ignore = greedy_match(ious[:, order], gt_ignore, gt_crowd, IOU_THRESHOLDS)
    dt_outside = np.array([_outside(d.avg_area, area_range) for d in dts], bool)
    dt_ignore |= ~dt_matched & dt_outside[None, :]
    return MatchResult(np.array([d.score for d in dts], float), dt_matched, dt_ignore, gt_ignore)


def greedy_match(
    ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray, thresholds: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """COCO's greedy matching, predictions in the order of the rows of ``ious``.

    Each prediction takes, among the ground truth still free (a crowd one is always
    free) with IoU >= the threshold, the one of highest IoU (the last one on ties);
    ground truth that is not ignored first, ignored ground truth only when none is left.

    Args:
        ious: (D, G); gt_ignore, gt_crowd: (G,) bool; thresholds: (T,).
    Returns:
        dt_matched (T, D) bool, dt_ignore (T, D) bool (matched to ignored ground truth).
    """
    num_dts, num_gts = ious.shape
    dt_matched = np.zeros((len(thresholds), num_dts), dtype=bool)
    dt_ignore = np.zeros((len(thresholds), num_dts), dtype=bool)
    if num_gts == 0:
        return dt_matched, dt_ignore
    for t, threshold in enumerate(thresholds):
        gt_taken = np.zeros(num_gts, dtype=bool)
        above = ious >= min(threshold, 1 - 1e-10)
        for d in range(num_dts):
            candidates = above[d] & (~gt_taken | gt_crowd)
            best = _best_candidate(ious[d], candidates & ~gt_ignore)
            if best < 0:
                best = _best_candidate(ious[d], candidates & gt_ignore)
            if best < 0:
                continue
            dt_matched[t, d] = True
            dt_ignore[t, d] = gt_ignore[best]
            gt_taken[best] = True
    return dt_matched, dt_ignore


def _best_candidate(iou_row: np.ndarray, candidates: np.ndarray) -> int:
    if not candidates.any():
        return -1
    values = np.where(candidates, iou_row, -np.inf)
    return int(np.flatnonzero(values == values.max())[-1])


def accumulate(matches: List[List[List[MatchResult]]]) -> Tuple[np.ndarray, np.ndarray]:
    """Precision (T, R, K, A, M) and recall (T, K, A, M) from ``matches[k][a]``: the
    :class:`MatchResult` of every video (in video-id order) of category k, area range a."""
    num_t, num_r, num_m = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(MAX_DETS)
    num_k, num_a = len(matches), len(AREA_RANGES)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    for k in range(num_k):
        for a in range(num_a):
            entries = matches[k][a]
            if not entries:
                continue
            num_gt = int(np.count_nonzero(~np.concatenate([e.gt_ignore for e in entries])))
            if num_gt == 0:
                continue
            for m, max_dets in enumerate(MAX_DETS):
                precision[:, :, k, a, m], recall[:, k, a, m] = _precision_recall_curve(
                    entries, max_dets, num_gt
                )
    return precision, recall


def _precision_recall_curve(
    entries: List[MatchResult], max_dets: int, num_gt: int
) -> Tuple[np.ndarray, np.ndarray]:
    """(T, R) interpolated precision at the recall points and (T,) highest recall."""
    scores = np.concatenate([e.scores[:max_dets] for e in entries])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([e.dt_matched[:, :max_dets] for e in entries], axis=1)[:, order]
    ignored = np.concatenate([e.dt_ignore[:, :max_dets] for e in entries], axis=1)[:, order]
    tp_sum = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
    fp_sum = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
    num_t, num_dts = tp_sum.shape
    precision = np.zeros((num_t, len(RECALL_THRESHOLDS)))
    if num_dts == 0:
        return precision, np.zeros(num_t)
    recall_curve = tp_sum / num_gt
    precision_curve = tp_sum / (tp_sum + fp_sum + np.spacing(1))
    # Interpolation: precision at a recall is the best precision at any higher recall.
    precision_curve = np.maximum.accumulate(precision_curve[:, ::-1], axis=1)[:, ::-1]
    for t in range(num_t):
        inds = np.searchsorted(recall_curve[t], RECALL_THRESHOLDS, side="left")
        reached = inds < num_dts
        precision[t, reached] = precision_curve[t, inds[reached]]
    return precision, recall_curve[:, -1]


def summarize(precision: np.ndarray, recall: np.ndarray) -> Dict[str, float]:
    """The eight summary metrics (percent, -1 where undefined) of the accumulated curves."""
    all_area, m100 = 0, MAX_DETS.index(100)
    t50 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.5)))
    t75 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))
    values = {
        "AP": precision[:, :, :, all_area, m100],
        "AP50": precision[t50, :, :, all_area, m100],
        "AP75": precision[t75, :, :, all_area, m100],
        "APs": precision[:, :, :, 1, m100],
        "APm": precision[:, :, :, 2, m100],
        "APl": precision[:, :, :, 3, m100],
        "AR1": recall[:, :, all_area, MAX_DETS.index(1)],
        "AR10": recall[:, :, all_area, MAX_DETS.index(10)],
    }
    return {name: _mean_percent(values[name]) for name in METRIC_NAMES}


def _mean_percent(values: np.ndarray) -> float:
    defined = values[values > -1]
    return float(defined.mean() * 100) if defined.size else -1.0
