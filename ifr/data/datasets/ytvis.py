"""Read YouTube-VIS-format json files (YouTube-VIS 2019/2021/2022, OVIS, the tiny set) into
Detectron2 dataset dicts, one per video, and register them with the catalogs.

Every malformed input is reported at load time by one ``YTVISFormatError`` naming the json
file, the video and the key (or annotation and frame) at fault; nothing malformed reaches
the training loop. Frame files are checked to exist here; their sizes (headers) are checked
against the json by ``ifr.data.datasets.frame_headers`` when a data loader is built.
"""
import json
import logging
import os
from typing import Dict, Iterable, List, Optional

import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ...utils.rle import RLEError, segmentation_to_rle, validate_rles, with_str_counts
from ...utils.json_io import JSONFileError, read_json
from .categories import distinct_colors

__all__ = [
    "YTVISFormatError",
    "check_annotation_ids",
    "check_videos",
    "load_ytvis_json",
    "read_ytvis_json",
    "register_ytvis_instances",
]

logger = logging.getLogger(__name__)

_VIDEO_KEYS = ("id", "file_names", "height", "width")
_ANNOTATION_KEYS = ("video_id", "category_id", "segmentations")
_PER_FRAME_KEYS = ("segmentations", "bboxes", "areas")


class YTVISFormatError(ValueError):
    """A YouTube-VIS json file does not follow the format; the message names the file, the
    video id and the key at fault."""

    def __init__(self, json_file: str, problem: str, video_id=None, key: Optional[str] = None):
        where = f"{json_file}"
        if video_id is not None:
            where += f", video id {video_id}"
        if key is not None:
            where += f", key '{key}'"
        super().__init__(f"{where}: {problem}")
        self.json_file = json_file
        self.video_id = video_id
        self.key = key


def load_ytvis_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str] = None,
    extra_annotation_keys: Optional[List[str]] = None,
    *,
    check_frame_files: bool = True,
) -> List[Dict]:
    """Load a YouTube-VIS json file into dataset dicts (see docs/design.md).

    Args:
        json_file: the annotation file.
        image_root: folder that the videos' ``file_names`` are relative to.
        dataset_name: when given and its metadata already has
            ``thing_dataset_id_to_contiguous_id`` (built-in datasets), that mapping is used and
            every category of the file must be in it; otherwise the mapping is built from the
            file's categories (sorted by id) and stored in the metadata.
        extra_annotation_keys: more keys copied from each annotation into the per-frame
            instance dicts.
        check_frame_files: check that every frame file exists, by one directory listing
            per video folder (fast for thousands of videos).

    Returns:
        One dict per video, sorted by video id: ``file_names``, ``height``, ``width``,
        ``length``, ``video_id`` and, when the file has annotations, ``annotations``: a list
        of ``length`` per-frame lists of ``{id, category_id (contiguous), bbox (XYWH_ABS),
        bbox_mode, segmentation, iscrowd}``. Test files (no ``annotations`` key) give dicts
        without ``annotations``.

    Raises:
        YTVISFormatError: on any malformed input.
    """
    data = read_ytvis_json(json_file)
    id_map = _category_id_map(data, json_file, dataset_name)
    videos = check_videos(data, json_file)
    if check_frame_files:
        _check_frame_files_exist(videos, image_root, json_file)
    records = {v["id"]: _video_record(v, image_root) for v in videos}
    if "annotations" in data:
        annotations = data["annotations"]
        if not isinstance(annotations, list):
            raise YTVISFormatError(json_file, "must be a list", key="annotations")
        track_ids = check_annotation_ids(annotations, json_file)
        tracks = _group_annotations(annotations, records, id_map, json_file)
        ann_keys = ["iscrowd"] + list(extra_annotation_keys or [])
        for video_id, record in records.items():
            record["annotations"] = _per_frame_annotations(
                tracks.get(video_id, []), record, track_ids, id_map, ann_keys, json_file
            )
    logger.info(f"Loaded {len(records)} videos in YouTube-VIS format from {json_file}")
    return [records[k] for k in sorted(records)]


def read_ytvis_json(json_file: str) -> Dict:
    """The parsed json object, with ``videos`` and ``categories``.

    Raises:
        YTVISFormatError: missing file, not json, not an object, a key missing.
    """
    try:
        data = read_json(json_file, "annotation file")
    except JSONFileError as e:
        raise YTVISFormatError(json_file, e.problem) from e
    for key in ("videos", "categories"):
        if key not in data:
            raise YTVISFormatError(json_file, "missing top-level key", key=key)
    return data


def _category_id_map(data: Dict, json_file: str, dataset_name: Optional[str]) -> Dict[int, int]:
    categories = data["categories"]
    if not isinstance(categories, list) or not categories:
        raise YTVISFormatError(json_file, "must be a non-empty list", key="categories")
    for cat in categories:
        if not isinstance(cat, dict):
            raise YTVISFormatError(json_file, "a category is not an object", key="categories")
        for key in ("id", "name"):
            if key not in cat:
                raise YTVISFormatError(json_file, f"a category lacks '{key}'", key="categories")
        if not isinstance(cat["id"], int) or isinstance(cat["id"], bool):
            raise YTVISFormatError(
                json_file, f"category id {cat['id']!r} is not an integer", key="categories"
            )
    file_ids = sorted(c["id"] for c in categories)
    if len(set(file_ids)) != len(file_ids):
        raise YTVISFormatError(json_file, "duplicate category ids", key="categories")
    meta = MetadataCatalog.get(dataset_name) if dataset_name is not None else None
    if meta is not None and hasattr(meta, "thing_dataset_id_to_contiguous_id"):
        id_map = dict(meta.thing_dataset_id_to_contiguous_id)
        unknown = [i for i in file_ids if i not in id_map]
        if unknown:
            raise YTVISFormatError(
                json_file,
                f"category ids {unknown} are not categories of dataset '{dataset_name}'",
                key="categories",
            )
        return id_map
    id_map = {cat_id: i for i, cat_id in enumerate(file_ids)}
    if meta is not None:
        meta.set(**_categories_metadata(categories))
    return id_map


def _categories_metadata(categories: List[Dict]) -> Dict:
    """``thing_classes``, ``thing_colors`` and ``thing_dataset_id_to_contiguous_id`` of a
    file's (checked) categories, in the order of increasing id."""
    names = {c["id"]: c["name"] for c in categories}
    file_ids = sorted(names)
    return {
        "thing_classes": [names[i] for i in file_ids],
        "thing_colors": distinct_colors(len(file_ids)),
        "thing_dataset_id_to_contiguous_id": {cat_id: i for i, cat_id in enumerate(file_ids)},
    }


def check_videos(data: Dict, json_file: str) -> List[Dict]:
    """The file's ``videos``, checked: the keys of ``_VIDEO_KEYS``, unique ids, positive
    integer ``height``/``width``, a non-empty list of file names as long as ``length``.

    Raises:
        YTVISFormatError: naming the video and the key.
    """
    videos = data["videos"]
    if not isinstance(videos, list):
        raise YTVISFormatError(json_file, "must be a list", key="videos")
    seen = set()
    for video in videos:
        video_id = video.get("id") if isinstance(video, dict) else None
        for key in _VIDEO_KEYS:
            if not isinstance(video, dict) or key not in video:
                raise YTVISFormatError(json_file, "video lacks this key", video_id, key)
        if not isinstance(video_id, int) or isinstance(video_id, bool):
            raise YTVISFormatError(
                json_file, f"video id {video_id!r} is not an integer", key="id"
            )
        if video_id in seen:
            raise YTVISFormatError(json_file, "duplicate video id", video_id, "id")
        seen.add(video_id)
        for key in ("height", "width"):
            value = video[key]
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise YTVISFormatError(
                    json_file, f"must be a positive integer, got {value!r}", video_id, key
                )
        names = video["file_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise YTVISFormatError(json_file, "must be a list of strings", video_id, "file_names")
        if not names:
            raise YTVISFormatError(json_file, "a video needs at least one frame", video_id, "file_names")
        length = video.get("length", len(video["file_names"]))
        if length != len(video["file_names"]):
            raise YTVISFormatError(
                json_file,
                f"'length' is {length} but there are {len(video['file_names'])} file names",
                video_id,
                "file_names",
            )
    return videos


def _check_frame_files_exist(videos: List[Dict], image_root: str, json_file: str) -> None:
    """One ``os.listdir`` per frame folder (a video's frames share one folder), instead of
    one ``stat`` per frame: 3,000 videos x 36 frames cost 3,000 listings."""
    listings: Dict[str, set] = {}
    for video in videos:
        for name in video["file_names"]:
            path = os.path.join(image_root, name)
            folder, base = os.path.split(path)
            if folder not in listings:
                listings[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
            if base not in listings[folder]:
                raise YTVISFormatError(
                    json_file, f"frame file not found: {path}", video["id"], "file_names"
                )


def _video_record(video: Dict, image_root: str) -> Dict:
    return {
        "file_names": [os.path.join(image_root, n) for n in video["file_names"]],
        "height": video["height"],
        "width": video["width"],
        "length": len(video["file_names"]),
        "video_id": video["id"],
    }


def check_annotation_ids(annotations: List, json_file: str) -> List[int]:
    """One track id per annotation: its ``id``, unique across the file (several
    annotations with one id would merge into one training instance). Annotations without
    an ``id`` get fresh ids above the largest one.

    Raises:
        YTVISFormatError: naming the file, the video and the duplicate id.
    """
    first_video: Dict = {}
    for ann in annotations:
        if not isinstance(ann, dict) or "id" not in ann:
            continue
        ann_id, video_id = ann["id"], ann.get("video_id")
        if not isinstance(ann_id, int) or isinstance(ann_id, bool):
            raise YTVISFormatError(
                json_file, f"annotation id {ann_id!r} is not an integer", video_id, "id"
            )
        if ann_id in first_video:
            other = first_video[ann_id]
            where = "in the same video" if other == video_id else f"also in video {other}"
            raise YTVISFormatError(
                json_file, f"duplicate annotation id {ann_id} ({where})", video_id, "id"
            )
        first_video[ann_id] = video_id
    next_id = max(first_video, default=0) + 1
    track_ids = []
    for ann in annotations:
        if isinstance(ann, dict) and "id" in ann:
            track_ids.append(ann["id"])
        else:
            track_ids.append(next_id)
            next_id += 1
    return track_ids


def _group_annotations(
    annotations: List[Dict], records: Dict, id_map: Dict[int, int], json_file: str
) -> Dict:
    tracks: Dict[int, List] = {}
    for index, ann in enumerate(annotations):
        video_id = ann.get("video_id") if isinstance(ann, dict) else None
        for key in _ANNOTATION_KEYS:
            if not isinstance(ann, dict) or key not in ann:
                raise YTVISFormatError(json_file, "annotation lacks this key", video_id, key)
        if video_id not in records:
            raise YTVISFormatError(
                json_file, "annotation refers to a video not in 'videos'", video_id, "video_id"
            )
        if ann["category_id"] not in id_map:
            raise YTVISFormatError(
                json_file,
                f"unknown category id {ann['category_id']} (not in 'categories')",
                video_id,
                "category_id",
            )
        length = records[video_id]["length"]
        if not isinstance(ann["segmentations"], list):
            raise YTVISFormatError(
                json_file,
                f"annotation id {ann.get('id')!r}: must be a list with one entry per frame, got "
                f"{type(ann['segmentations']).__name__}",
                video_id,
                "segmentations",
            )
        for key in _PER_FRAME_KEYS:
            values = ann.get(key)
            if values is not None and not isinstance(values, list):
                raise YTVISFormatError(json_file, "must be a list per frame", video_id, key)
            if values is not None and len(values) != length:
                raise YTVISFormatError(
                    json_file,
                    f"has {len(values)} entries but the video has {length} frames",
                    video_id,
                    key,
                )
        tracks.setdefault(video_id, []).append((index, ann))
    return tracks


def _per_frame_annotations(
    tracks: List,
    record: Dict,
    track_ids: List[int],
    id_map: Dict[int, int],
    ann_keys: Iterable[str],
    json_file: str,
) -> List[List[Dict]]:
    """``length`` lists of instance dicts from the video's ``(index, annotation)`` pairs;
    every segmentation is checked and turned into a compressed RLE (``counts`` str)."""
    length = record["length"]
    try:
        rles = _video_rles(tracks, record, track_ids)
    except RLEError as e:
        raise YTVISFormatError(json_file, str(e), record["video_id"], "segmentations") from e
    frames: List[List[Dict]] = [[] for _ in range(length)]
    for index, ann in tracks:
        bboxes = ann.get("bboxes") or [None] * length
        for t in range(length):
            rle = rles.get((index, t))
            if rle is None:
                continue  # the instance is absent from frame t
            bbox = bboxes[t] if bboxes[t] is not None else mask_util.toBbox(rle).tolist()
            obj = {key: ann[key] for key in ann_keys if key in ann}
            obj.update(
                id=track_ids[index],
                category_id=id_map[ann["category_id"]],
                bbox=list(bbox),
                bbox_mode=BoxMode.XYWH_ABS,
                segmentation=rle,
            )
            frames[t].append(obj)
    return frames


def _video_rles(tracks: List, record: Dict, track_ids: List[int]) -> Dict[tuple, dict]:
    """(annotation index, frame) -> compressed RLE of every present mask of a video. RLEs
    are validated together (``validate_rles``: one vectorised pass per video), the rare
    polygons one by one.

    Raises:
        RLEError: naming the annotation id and the frame.
    """
    height, width = record["height"], record["width"]
    keys, rle_inputs, rles = [], [], {}
    for index, ann in tracks:
        for t, segm in enumerate(ann["segmentations"]):
            if isinstance(segm, dict):
                keys.append((index, t))
                rle_inputs.append(segm)
                continue
            rle = segmentation_to_rle(
                segm, height, width, where=f"annotation id {track_ids[index]}, frame {t}"
            )
            if rle is not None:
                rles[(index, t)] = rle
    wheres = [f"annotation id {track_ids[i]}, frame {t}" for i, t in keys]
    validate_rles(rle_inputs, height, width, wheres)
    uncompressed = [k for k, rle in enumerate(rle_inputs) if isinstance(rle["counts"], list)]
    if uncompressed:  # one pycocotools call for the video
        encoded = mask_util.frPyObjects([rle_inputs[k] for k in uncompressed], height, width)
        for k, rle in zip(uncompressed, encoded):
            rle_inputs[k] = rle
    rles.update((key, with_str_counts(rle)) for key, rle in zip(keys, rle_inputs))
    return rles


def register_ytvis_instances(
    name: str, metadata: Dict, json_file: str, image_root: str
) -> None:
    """Register a YouTube-VIS-format dataset: ``DatasetCatalog`` loads lazily (on first
    ``DatasetCatalog.get``); ``MetadataCatalog`` gets ``metadata`` plus ``json_file``,
    ``image_root`` and ``evaluator_type="ytvis"``.

    When ``metadata`` has no categories (``thing_dataset_id_to_contiguous_id``) and
    ``json_file`` exists, the categories are read from it now (one read of the json), so
    that the number of classes is known before training (the ``NUM_CLASSES`` check).

    Raises:
        YTVISFormatError: the categories are to be read and the file is malformed.
    """
    metadata = dict(metadata)
    if "thing_dataset_id_to_contiguous_id" not in metadata and os.path.isfile(json_file):
        data = read_ytvis_json(json_file)
        _category_id_map(data, json_file, None)  # checks the categories
        metadata.update(_categories_metadata(data["categories"]))
    DatasetCatalog.register(name, lambda: load_ytvis_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="ytvis", **metadata
    )
