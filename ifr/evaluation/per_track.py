"""Per-track overlap report: for each ground-truth track, the predicted track that overlaps
it most, to see why a model scores a low AP (no overlap at all, masks too big, too small).

The overlap is the YouTube-VIS track IoU that AP uses (:func:`~.tracks.track_iou_matrix`:
sum over frames of the intersections / sum over frames of the unions), taken against every
predicted track of the same video, whatever its category or score.

One row per ground-truth track (crowd ones included), with the fields of
:data:`PER_TRACK_FIELDS`:

- ``video_id``, ``gt_id``: the video and the annotation id of the ground-truth track;
- ``category``: its category id;
- ``gt_frames``: the number of frames where it is present (a non-empty mask);
- ``gt_area``: its mean mask area in pixels over those frames;
- ``best_pred``: the 0-based index, in the results file, of the predicted track of the same
  video with the highest track IoU (ties: the higher score, then the lower index);
- ``best_iou``: that track IoU, in [0, 1];
- ``best_score``, ``best_category``: that prediction's score and category id;
- ``pred_area``: that prediction's mean mask area in pixels over the frames where it is
  non-empty (``pred_area / gt_area`` > 1: the prediction is too big, e.g. it covers
  several objects; < 1: too small).

A video without any prediction gives ``None`` in every ``best_*`` field and ``pred_area``.
When predictions exist but none overlaps the track, ``best_iou`` is 0 and the other
``best_*`` fields and ``pred_area`` are ``None`` (no prediction is "best" then).
"""

import csv
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..utils.atomic_io import atomic_open
from .tracks import GroundTruth, MaskTrack, average_area, track_iou_matrix

PER_TRACK_FIELDS = (
    "video_id",
    "gt_id",
    "category",
    "gt_frames",
    "gt_area",
    "best_pred",
    "best_iou",
    "best_score",
    "best_category",
    "pred_area",
)
IOU_MATCHED = 0.5  # the loosest IoU threshold of AP (AP50)


def per_track_overlaps(gt: GroundTruth, predictions: Sequence[MaskTrack]) -> List[Dict[str, Any]]:
    """One row (a dict with the keys :data:`PER_TRACK_FIELDS`, see the module docstring) per
    ground-truth track of ``gt``, in the order of its annotations.

    Args:
        predictions: the tracks of a results file, in its order (as
            :func:`~.results_io.parse_results` returns them: index ``i`` is entry ``i``).
    """
    indices_by_video: Dict[int, List[int]] = defaultdict(list)
    for index, prediction in enumerate(predictions):
        indices_by_video[prediction.video_id].append(index)
    gts_by_video: Dict[int, List[MaskTrack]] = defaultdict(list)
    for track in gt.tracks:
        gts_by_video[track.video_id].append(track)
    rows: Dict[int, Dict[str, Any]] = {}  # annotation id -> row
    for video_id, gts in gts_by_video.items():
        indices = indices_by_video.get(video_id, [])
        iou = track_iou_matrix([predictions[i] for i in indices], gts)  # (D, G)
        scores = [predictions[i].score for i in indices]
        for column, track in enumerate(gts):
            row = _best_row(iou[:, column], scores)
            best = None if row is None else indices[row]
            best_iou = float(iou[:, column].max()) if indices else None
            prediction = None if best is None else predictions[best]
            rows[track.id] = _row(track, best, best_iou, prediction)
    return [rows[track.id] for track in gt.tracks]


def _best_row(ious: np.ndarray, scores: Sequence[float]) -> Optional[int]:
    """Row of the highest IoU > 0 (ties: highest score, then first), ``None`` when none."""
    if len(ious) == 0 or ious.max() <= 0:
        return None
    # np.lexsort sorts by its last key first: IoU, then score, then row, all descending.
    order = np.lexsort((np.arange(len(ious)), -np.asarray(scores, dtype=np.float64), -ious))
    return int(order[0])


def _row(
    track: MaskTrack,
    best: Optional[int],
    best_iou: Optional[float],
    prediction: Optional[MaskTrack],
) -> Dict[str, Any]:
    return {
        "video_id": track.video_id,
        "gt_id": track.id,
        "category": track.category_id,
        "gt_frames": int(np.count_nonzero(track.areas)),
        "gt_area": average_area(track.areas),
        "best_pred": best,
        "best_iou": best_iou,
        "best_score": prediction.score if prediction else None,
        "best_category": prediction.category_id if prediction else None,
        "pred_area": average_area(prediction.areas) if prediction else None,
    }


def summarize_overlaps(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Summary of :func:`per_track_overlaps` rows.

    Returns:
        ``tracks``: the number of ground-truth tracks; ``without_prediction``: how many are
        in a video without any prediction; ``mean_best_iou`` and ``max_best_iou`` over all
        tracks, a track without prediction counting 0 (``None`` when there is no track);
        ``matched``: how many reach IoU >= 0.5; ``mean_area_ratio``: the mean of
        ``pred_area / gt_area`` over the tracks that have a best prediction and a non-empty
        mask (``None`` when none has); ``right_category``: how many tracks' best prediction
        has the track's category; ``mean_best_score``: the mean score of the best
        predictions (``None`` when no track has one). Masks as good but scores lower or
        categories wrong point at the classification, not the masks.
    """
    best_ious = np.array([r["best_iou"] or 0.0 for r in rows], dtype=np.float64)
    ratios = [
        r["pred_area"] / r["gt_area"] for r in rows if r["pred_area"] is not None and r["gt_area"]
    ]
    scores = [r["best_score"] for r in rows if r["best_score"] is not None]
    return {
        "tracks": len(rows),
        "without_prediction": sum(r["best_iou"] is None for r in rows),
        "mean_best_iou": float(best_ious.mean()) if len(rows) else None,
        "max_best_iou": float(best_ious.max()) if len(rows) else None,
        "matched": int(np.count_nonzero(best_ious >= IOU_MATCHED)),
        "mean_area_ratio": float(np.mean(ratios)) if ratios else None,
        "right_category": sum(
            r["best_category"] is not None and r["best_category"] == r["category"] for r in rows
        ),
        "mean_best_score": float(np.mean(scores)) if scores else None,
    }


def format_summary(summary: Dict[str, Any]) -> str:
    """A few lines for the terminal from :func:`summarize_overlaps`' dict."""

    def number(value: Optional[float], fmt: str = ".3f") -> str:
        return "-" if value is None else format(value, fmt)

    return "\n".join(
        [
            f"ground-truth tracks: {summary['tracks']} "
            f"({summary['without_prediction']} in videos without predictions)",
            f"best track IoU: mean {number(summary['mean_best_iou'])}, "
            f"max {number(summary['max_best_iou'])}; "
            f"{summary['matched']} reach IoU {IOU_MATCHED}",
            f"pred_area / gt_area of the best predictions: mean "
            f"{number(summary['mean_area_ratio'], '.2f')}",
            f"best predictions: {summary['right_category']} of the track's category, "
            f"mean score {number(summary['mean_best_score'])}",
        ]
    )


def write_per_track_csv(path: str, rows: Sequence[Dict[str, Any]]) -> None:
    """Write ``rows`` as CSV (header :data:`PER_TRACK_FIELDS`), atomically; ``None`` is an
    empty field, floats keep 6 significant digits."""
    with atomic_open(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PER_TRACK_FIELDS)
        for row in rows:
            writer.writerow([_cell(row[key]) for key in PER_TRACK_FIELDS])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)
