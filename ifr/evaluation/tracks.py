"""Mask tracks: one instance over a whole video, as RLE per frame.

Both the ground truth of a YouTube-VIS json (``annotations``) and the entries of a
results file become :class:`MaskTrack` objects, so the AP and the tracking metrics read
one representation. Segmentations are checked and converted by :mod:`ifr.utils.rle`:
polygons and uncompressed RLE (``counts`` a list) become compressed RLE; an empty frame is
``None``. Every check happens here, once, when a file is read, so that pycocotools only
ever sees valid RLEs and an error names the file, video, annotation and frame at fault.
"""

from collections import Counter
from dataclasses import dataclass
from numbers import Real
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set

import numpy as np
from pycocotools import mask as mask_util

from ..utils.rle import rle_areas, segmentation_to_rle, validate_rles, with_str_counts


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


@dataclass
class GroundTruth:
    """A YouTube-VIS json, checked and converted once: ``videos`` by id, the sorted
    ``categories`` ids, and ``tracks``, every annotation (crowd ones included)."""

    videos: Dict[int, VideoInfo]
    categories: List[int]
    tracks: List[MaskTrack]

    def restrict(self, video_ids: Iterable[int]) -> "GroundTruth":
        """The same ground truth with only the videos ``video_ids`` and their tracks."""
        keep = set(video_ids)
        return GroundTruth(
            {v: info for v, info in self.videos.items() if v in keep},
            self.categories,
            [t for t in self.tracks if t.video_id in keep],
        )


def parse_ground_truth(gt: Any, source: str = "ground truth") -> GroundTruth:
    """Check a YouTube-VIS json with annotations and convert it to :class:`GroundTruth`.

    Args:
        source: names the json in errors (its path).
    Raises:
        ValueError: ``"<source>: video V, annotation A[, frame t]: <what is wrong>"`` for
            the first malformed video, category or annotation (duplicate ids, a
            segmentation count other than the video's length, an RLE whose size is not
            the video's or whose counts do not cover it, ...).
    """
    if not isinstance(gt, Mapping):
        raise ValueError(f"{source}: a YouTube-VIS json must be an object")
    videos = video_infos(gt, source)
    categories = category_ids(gt, source)
    return GroundTruth(videos, categories, gt_tracks(gt, videos, source, set(categories)))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _list_of(gt: Mapping[str, Any], key: str, source: str) -> list:
    if key not in gt:
        raise ValueError(f"{source}: no {key!r} list")
    if not isinstance(gt[key], list):
        raise ValueError(f"{source}: {key!r} must be a list")
    return gt[key]


def video_infos(gt: Mapping[str, Any], source: str = "ground truth") -> Dict[int, VideoInfo]:
    """Map video id -> :class:`VideoInfo` from the ``videos`` list of a YouTube-VIS json,
    checked: int ids seen once, positive sizes, ``length`` agreeing with ``file_names``."""
    infos = {}
    for index, video in enumerate(_list_of(gt, "videos", source)):
        if not isinstance(video, Mapping):
            raise ValueError(f"{source}: videos[{index}] must be an object")
        video_id = video.get("id")
        where = f"{source}: video {video_id}"
        missing = [k for k in ("id", "height", "width") if k not in video]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}")
        if not _is_int(video_id):
            raise ValueError(f"{source}: videos[{index}] 'id' must be an int, got {video_id!r}")
        for key in ("height", "width"):
            if not _is_int(video[key]) or video[key] <= 0:
                raise ValueError(f"{where}: {key!r} must be a positive int, got {video[key]!r}")
        length = _video_length(video, where)
        if video_id in infos:
            raise ValueError(f"{where}: video id {video_id} appears twice")
        infos[video_id] = VideoInfo(video_id, int(video["height"]), int(video["width"]), length)
    return infos


def _video_length(video: Mapping[str, Any], where: str) -> int:
    file_names = video.get("file_names")
    if file_names is not None and not isinstance(file_names, list):
        raise ValueError(f"{where}: 'file_names' must be a list")
    if "length" not in video:
        if file_names is None:
            raise ValueError(f"{where}: neither 'length' nor 'file_names'")
        return len(file_names)
    length = video["length"]
    if not _is_int(length) or length < 0:
        raise ValueError(f"{where}: 'length' must be an int >= 0, got {length!r}")
    if file_names is not None and len(file_names) != length:
        raise ValueError(f"{where}: 'length' is {length} but it has {len(file_names)} file_names")
    return int(length)


def category_ids(gt: Mapping[str, Any], source: str = "ground truth") -> List[int]:
    """Sorted category ids of the ``categories`` list of a YouTube-VIS json (checked)."""
    ids = []
    for category in _list_of(gt, "categories", source):
        if not isinstance(category, Mapping) or not _is_int(category.get("id")):
            raise ValueError(f"{source}: every category needs an int 'id', got {category!r}")
        ids.append(int(category["id"]))
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise ValueError(f"{source}: category id(s) {duplicates} appear more than once")
    return sorted(ids)


def has_annotations(gt: Mapping[str, Any]) -> bool:
    """Whether a YouTube-VIS json carries ground truth (the test split has none)."""
    return bool(gt.get("annotations"))


def average_area(areas: Sequence[Optional[float]]) -> float:
    """Mean of the non-zero, non-``None`` areas, 0 when there is none (as YouTube-VIS)."""
    nonzero = [float(a) for a in areas if a]
    return float(np.mean(nonzero)) if nonzero else 0.0


def gt_tracks(
    gt: Mapping[str, Any],
    videos: Mapping[int, VideoInfo],
    source: str = "ground truth",
    categories: Optional[Set[int]] = None,
) -> List[MaskTrack]:
    """The annotations of a YouTube-VIS json as :class:`MaskTrack` objects, each checked
    (errors as :func:`parse_ground_truth`; ``categories``: the known category ids).

    The average area comes from the annotation's ``areas`` field when present (as the
    official evaluation), else from the masks.
    """
    annotations = gt.get("annotations") or []
    if not isinstance(annotations, list):
        raise ValueError(f"{source}: 'annotations' must be a list")
    tracks: List[MaskTrack] = []
    video_of_id: Dict[int, int] = {}
    for index, ann in enumerate(annotations):
        track = _gt_track(ann, index, videos, source, categories)
        if track.id in video_of_id:
            raise ValueError(
                f"{source}: video {track.video_id}, annotation {track.id}: annotation id "
                f"{track.id} appears twice (also in video {video_of_id[track.id]})"
            )
        video_of_id[track.id] = track.video_id
        tracks.append(track)
    return tracks


def _gt_track(
    ann: Any,
    index: int,
    videos: Mapping[int, VideoInfo],
    source: str,
    categories: Optional[Set[int]],
) -> MaskTrack:
    if not isinstance(ann, Mapping):
        raise ValueError(f"{source}: annotations[{index}] must be an object")
    ann_id = ann.get("id")
    where = f"{source}: video {ann.get('video_id')}, annotation {ann_id}"
    for key in ("id", "video_id", "category_id", "segmentations"):
        if key not in ann:
            raise ValueError(f"{where}: missing key {key!r}")
    if not _is_int(ann_id):
        raise ValueError(f"{source}: annotations[{index}] 'id' must be an int, got {ann_id!r}")
    video = videos.get(ann["video_id"])
    if video is None:
        raise ValueError(f"{where}: video id {ann['video_id']} not in 'videos'")
    category_id = ann["category_id"]
    if not _is_int(category_id) or (categories is not None and category_id not in categories):
        raise ValueError(f"{where}: category id {category_id!r} not in 'categories'")
    segmentations = ann["segmentations"]
    if not isinstance(segmentations, list) or len(segmentations) != video.length:
        count = len(segmentations) if isinstance(segmentations, list) else "no list of"
        raise ValueError(f"{where}: {count} segmentations for a video of {video.length} frames")
    rles = _frame_rles(segmentations, video, where)
    areas = rle_areas(rles)
    return MaskTrack(
        id=int(ann_id),
        video_id=video.video_id,
        category_id=int(category_id),
        rles=rles,
        areas=areas,
        avg_area=_annotated_average_area(ann, video.length, where, areas),
        iscrowd=bool(ann.get("iscrowd", 0)),
    )


def _frame_rles(segmentations: list, video: VideoInfo, where: str) -> List[Optional[dict]]:
    """Compressed RLE (or ``None``) of each frame's segmentation, all checked; the RLEs of
    the track in one vectorised pass (``validate_rles``), polygons frame by frame."""
    wheres = [f"{where}, frame {t}" for t in range(len(segmentations))]
    rle_frames = [t for t, s in enumerate(segmentations) if isinstance(s, dict)]
    validate_rles(
        [segmentations[t] for t in rle_frames],
        video.height,
        video.width,
        [wheres[t] for t in rle_frames],
    )
    return [
        with_str_counts(s)
        if isinstance(s, dict)
        else segmentation_to_rle(s, video.height, video.width, wheres[t])
        for t, s in enumerate(segmentations)
    ]


def _annotated_average_area(
    ann: Mapping[str, Any], length: int, where: str, areas: np.ndarray
) -> float:
    if "areas" not in ann or ann["areas"] is None:
        return average_area(areas)
    given = ann["areas"]
    if (
        not isinstance(given, list)
        or len(given) != length
        or not all(
            a is None or (isinstance(a, Real) and not isinstance(a, bool) and a >= 0) for a in given
        )
    ):
        raise ValueError(f"{where}: 'areas' must be {length} numbers >= 0 or nulls")
    return average_area(given)


def result_tracks(results: Sequence[Mapping[str, Any]]) -> List[MaskTrack]:
    """Result entries (already validated) as :class:`MaskTrack` objects, ids 1, 2, ..."""
    tracks = []
    for index, entry in enumerate(results):
        rles = [rle if rle else None for rle in entry["segmentations"]]
        areas = rle_areas(rles)
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
