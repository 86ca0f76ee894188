"""Mask tracks: one instance over a whole video, as RLE per frame.

Both the ground truth of a YouTube-VIS json (``annotations``) and the entries of a
results file become :class:`MaskTrack` objects, so the AP and the tracking metrics read
one representation. Segmentations are converted with pycocotools: polygons and
uncompressed RLE (``counts`` a list) become compressed RLE; an empty frame is ``None``.
"""
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_util


@dataclass(frozen=True)
class VideoInfo:
    """Frame size and length of one video of the ground truth."""

    video_id: int
    height: int
    width: int
    length: int


@dataclass
class MaskTrack:
    """One instance over a video (a ground-truth annotation or a predicted result).

    ``rles``: T compressed RLE dicts, ``None`` for a frame where the instance is absent.
    ``areas``: (T,) int64 pixel counts, 0 where absent.
    ``avg_area``: mean of the non-zero per-frame areas, 0 when there is none; this is the
    area that the YouTube-VIS area ranges (small/medium/large) test.
    """

    id: int
    video_id: int
    category_id: int
    rles: List[Optional[dict]]
    areas: np.ndarray
    avg_area: float
    score: float = 1.0
    iscrowd: bool = False


def video_infos(gt: Mapping[str, Any]) -> Dict[int, VideoInfo]:
    """Map video id -> :class:`VideoInfo` from the ``videos`` list of a YouTube-VIS json."""
    if "videos" not in gt:
        raise ValueError("ground truth has no 'videos' list")
    infos = {}
    for video in gt["videos"]:
        video_id = video.get("id")
        missing = [k for k in ("id", "height", "width") if k not in video]
        if missing:
            raise ValueError(f"ground truth video {video_id}: missing key(s) {missing}")
        if "length" in video:
            length = int(video["length"])
        elif "file_names" in video:
            length = len(video["file_names"])
        else:
            raise ValueError(f"ground truth video {video_id}: neither 'length' nor 'file_names'")
        if video_id in infos:
            raise ValueError(f"ground truth video id {video_id} appears twice")
        infos[video_id] = VideoInfo(video_id, int(video["height"]), int(video["width"]), length)
    return infos


def category_ids(gt: Mapping[str, Any]) -> List[int]:
    """Sorted category ids of the ``categories`` list of a YouTube-VIS json."""
    if "categories" not in gt:
        raise ValueError("ground truth has no 'categories' list")
    return sorted(int(c["id"]) for c in gt["categories"])


def has_annotations(gt: Mapping[str, Any]) -> bool:
    """Whether a YouTube-VIS json carries ground truth (the test split has none)."""
    return bool(gt.get("annotations"))


def segmentation_to_rle(segm: Any, height: int, width: int) -> Optional[dict]:
    """Compressed RLE (``counts`` bytes or str) of one frame's segmentation, or ``None``.

    ``segm``: ``None``/empty (absent), polygons (list of flat xy lists), uncompressed RLE
    (``counts`` a list of ints) or compressed RLE (``counts`` str or bytes).
    """
    if not segm:
        return None
    if isinstance(segm, list):
        return mask_util.merge(mask_util.frPyObjects(segm, height, width))
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if isinstance(segm["counts"], list):
            return mask_util.frPyObjects(segm, height, width)
        return segm
    raise ValueError(f"unknown segmentation format: {type(segm).__name__}")


def frame_areas(rles: Sequence[Optional[dict]]) -> np.ndarray:
    """(T,) int64 pixel counts of per-frame RLEs, 0 where ``None``."""
    present = [i for i, rle in enumerate(rles) if rle is not None]
    areas = np.zeros(len(rles), dtype=np.int64)
    if present:
        areas[present] = mask_util.area([rles[i] for i in present])
    return areas


def average_area(areas: Sequence[Optional[float]]) -> float:
    """Mean of the non-zero, non-``None`` areas, 0 when there is none (as YouTube-VIS)."""
    nonzero = [float(a) for a in areas if a]
    return float(np.mean(nonzero)) if nonzero else 0.0


def gt_tracks(gt: Mapping[str, Any], videos: Mapping[int, VideoInfo]) -> List[MaskTrack]:
    """The annotations of a YouTube-VIS json as :class:`MaskTrack` objects.

    The average area comes from the annotation's ``areas`` field when present (as the
    official evaluation), else from the masks.
    """
    tracks = []
    for ann in gt.get("annotations") or []:
        ann_id = ann.get("id")
        for key in ("id", "video_id", "category_id", "segmentations"):
            if key not in ann:
                raise ValueError(f"ground truth annotation {ann_id}: missing key {key!r}")
        video = videos.get(ann["video_id"])
        if video is None:
            raise ValueError(
                f"ground truth annotation {ann_id}: video id {ann['video_id']} not in 'videos'"
            )
        if len(ann["segmentations"]) != video.length:
            raise ValueError(
                f"ground truth annotation {ann_id} (video {video.video_id}): "
                f"{len(ann['segmentations'])} segmentations for a video of {video.length} frames"
            )
        rles = [segmentation_to_rle(s, video.height, video.width) for s in ann["segmentations"]]
        areas = frame_areas(rles)
        avg_area = average_area(ann["areas"]) if "areas" in ann else average_area(areas)
        tracks.append(
            MaskTrack(
                id=int(ann_id),
                video_id=video.video_id,
                category_id=int(ann["category_id"]),
                rles=rles,
                areas=areas,
                avg_area=avg_area,
                iscrowd=bool(ann.get("iscrowd", 0)),
            )
        )
    return tracks


def result_tracks(results: Sequence[Mapping[str, Any]]) -> List[MaskTrack]:
    """Result entries (already validated) as :class:`MaskTrack` objects, ids 1, 2, ..."""
    tracks = []
    for index, entry in enumerate(results):
        rles = [rle if rle else None for rle in entry["segmentations"]]
        areas = frame_areas(rles)
        tracks.append(
            MaskTrack(
                id=index + 1,
                video_id=entry["video_id"],
                category_id=int(entry["category_id"]),
                rles=rles,
                areas=areas,
                avg_area=average_area(areas),
                score=float(entry["score"]),
            )
        )
    return tracks


def track_iou_matrix(dts: Sequence[MaskTrack], gts: Sequence[MaskTrack]) -> np.ndarray:
    """(D, G) track IoU: sum over frames of intersections / sum over frames of unions.

    Frames where both tracks are empty contribute nothing; a pair whose union is empty
    has IoU 0 (as the official YouTube-VIS evaluation).
    """
    if not dts or not gts:
        return np.zeros((len(dts), len(gts)))
    length = len(gts[0].rles)
    intersection = np.zeros((len(dts), len(gts)))
    for t in range(length):
        d_idx = [i for i, d in enumerate(dts) if d.rles[t] is not None]
        g_idx = [j for j, g in enumerate(gts) if g.rles[t] is not None]
        if d_idx and g_idx:
            intersection[np.ix_(d_idx, g_idx)] += _frame_intersections(
                [dts[i].rles[t] for i in d_idx], [gts[j].rles[t] for j in g_idx]
            )
    d_total = np.array([d.areas.sum() for d in dts], dtype=np.float64)
    g_total = np.array([g.areas.sum() for g in gts], dtype=np.float64)
    union = d_total[:, None] + g_total[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


def _frame_intersections(d_rles: List[dict], g_rles: List[dict]) -> np.ndarray:
    """(D, G) pixel counts of pairwise intersections of one frame's masks."""
    # pycocotools' IoU against a "crowd" region is intersection / area(detection);
    # multiplying back by the detection area gives the integer intersection, in C.
    over_d_area = np.asarray(mask_util.iou(d_rles, g_rles, [1] * len(g_rles)), dtype=np.float64)
    d_area = mask_util.area(d_rles).astype(np.float64)
    return np.rint(over_d_area.reshape(len(d_rles), len(g_rles)) * d_area[:, None])


def restrict_to_videos(gt: Mapping[str, Any], video_ids: Iterable[int]) -> Dict[str, Any]:
    """A shallow copy of a YouTube-VIS json keeping only the videos ``video_ids`` and their
    annotations (other top-level keys, e.g. ``categories``, are kept as they are)."""
    keep = set(video_ids)
    subset = dict(gt)
    subset["videos"] = [v for v in gt["videos"] if v["id"] in keep]
    if gt.get("annotations") is not None:
        subset["annotations"] = [a for a in gt["annotations"] if a["video_id"] in keep]
    return subset
