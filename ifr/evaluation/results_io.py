"""YouTube-VIS results: from model outputs to result entries, to and from files.

A result entry is one predicted instance over a whole video::

    {"video_id": int, "score": float, "category_id": int (dataset id),
     "segmentations": [T x (RLE {"size": [H, W], "counts": str} or None where empty)]}

``results.json`` is a list of entries; ``results.zip`` holds ``results.json`` at its root,
which is what the YouTube-VIS evaluation server takes.
"""

import logging
import math
import os
import zipfile
import zlib
from numbers import Real
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from ..utils.atomic_io import atomic_open, atomic_write_json
from ..utils.json_io import JSONFileError, parse_json, read_json
from ..utils.rle import masks_to_rles, rle_areas, validate_rles, with_str_counts
from .tracks import GroundTruth, MaskTrack, VideoInfo, result_tracks

logger = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
RESULTS_ZIP = "results.zip"
_ENTRY_KEYS = ("video_id", "score", "category_id", "segmentations")


def instances_to_ytvis_results(
    video_id: int, output: Mapping[str, Any], contiguous_to_dataset_id: Mapping[int, int]
) -> List[Dict[str, Any]]:
    """Result entries of one video from the model output of ``docs/design.md``.

    Args:
        video_id: the video's id in the dataset json.
        output: ``{"pred_scores": [float], "pred_labels": [int contiguous],
            "pred_masks": [per instance: bool (T, H0, W0) array/tensor, or T RLE dicts]}``.
        contiguous_to_dataset_id: contiguous class index -> the json's category id.
    """
    for key in ("pred_scores", "pred_labels", "pred_masks"):
        if key not in output:
            raise KeyError(f"video {video_id}: model output has no {key!r}")
    scores, labels, masks = output["pred_scores"], output["pred_labels"], output["pred_masks"]
    if not len(scores) == len(labels) == len(masks):
        raise ValueError(
            f"video {video_id}: {len(scores)} pred_scores, {len(labels)} pred_labels and "
            f"{len(masks)} pred_masks; they must be as many"
        )
    entries = []
    for score, label, mask in zip(scores, labels, masks):
        label = int(label)
        if label not in contiguous_to_dataset_id:
            raise KeyError(f"video {video_id}: predicted class {label} has no dataset category id")
        entries.append(
            {
                "video_id": video_id,
                "score": float(score),
                "category_id": int(contiguous_to_dataset_id[label]),
                "segmentations": encode_track(mask),
            }
        )
    return entries


def encode_track(mask: Any) -> List[Optional[dict]]:
    """Per-frame RLE (``counts`` str) of one instance, ``None`` for an empty frame.

    Args:
        mask: bool (T, H, W) array or tensor, or a list of T RLE dicts (or ``None``).
    """
    if isinstance(mask, (list, tuple)):
        rles = [with_str_counts(rle) if rle else None for rle in mask]
        return [rle if area > 0 else None for rle, area in zip(rles, rle_areas(rles))]
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"a track mask must be (T, H, W), got shape {mask.shape}")
    present = mask.reshape(mask.shape[0], -1).any(axis=1)
    return [rle if p else None for rle, p in zip(masks_to_rles(mask), present)]


def write_results(results: Sequence[Mapping[str, Any]], out_dir: str) -> Tuple[str, str]:
    """Write ``results.json`` and ``results.zip`` (``results.json`` at its root) atomically.

    Returns:
        the paths of the json and the zip.
    """
    json_path = os.path.join(out_dir, RESULTS_JSON)
    zip_path = os.path.join(out_dir, RESULTS_ZIP)
    atomic_write_json(json_path, list(results), indent=None)
    with atomic_open(zip_path, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.write(json_path, arcname=RESULTS_JSON)
    logger.info(f"Wrote {len(results)} result entries to {json_path} and {zip_path}")
    return json_path, zip_path


def load_results(path: str) -> List[Any]:
    """Read a results file: ``results.json`` or a zip holding ``results.json`` at its root.

    Raises:
        JSONFileError: naming the file when it is missing, not a readable zip or JSON, or
            not a list (the entries are checked by :func:`validate_results`).
    """
    what = "results file"
    if not _looks_like_zip(path):
        return read_json(path, what, top_level=list)
    try:
        with zipfile.ZipFile(path) as zf:
            if RESULTS_JSON not in zf.namelist():
                raise JSONFileError(
                    path,
                    f"the zip must hold {RESULTS_JSON} at its root, it holds {zf.namelist()[:5]}",
                )
            data = zf.read(RESULTS_JSON)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise JSONFileError(path, f"not a readable zip file, truncated or corrupt? ({e})") from e
    return parse_json(data, f"{path} ({RESULTS_JSON})", what, top_level=list)


def _looks_like_zip(path: str) -> bool:
    """A zip by its magic number (a truncated zip has no directory for is_zipfile)."""
    if not os.path.isfile(path):
        return False  # read_json says what is wrong
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04" or zipfile.is_zipfile(path)


def parse_results(
    results: Sequence[Any], gt: GroundTruth, source: str = "results"
) -> List[MaskTrack]:
    """Result entries checked against ``gt`` (:func:`validate_results`) as
    :class:`MaskTrack` objects."""
    validate_results(results, gt.videos, set(gt.categories), source)
    return result_tracks(results)


def validate_results(
    results: Sequence[Any],
    videos: Mapping[int, VideoInfo],
    categories: Optional[Set[int]] = None,
    source: str = "results",
) -> None:
    """Raise ``ValueError`` naming the entry index, video id and key of the first bad entry.

    Checks every entry's keys and types, that its video is in the ground truth
    (``videos``), that it has one segmentation per frame of the video, each ``None`` or an
    RLE of the video's frame size whose counts cover exactly that size (a malformed RLE
    makes pycocotools hang or crash), and (when ``categories`` is given) its category id.
    """
    if not isinstance(results, (list, tuple)):
        raise ValueError(f"{source}: results must be a list, got {type(results).__name__}")
    for index, entry in enumerate(results):
        _validate_entry(entry, videos, categories, f"{source}: entry {index}")


def _validate_entry(entry, videos, categories, where: str) -> None:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: must be an object, got {type(entry).__name__}")
    missing = [k for k in _ENTRY_KEYS if k not in entry]
    if missing:
        raise ValueError(f"{where} (video {entry.get('video_id')}): missing key(s) {missing}")
    video_id = entry["video_id"]
    where = f"{where} (video {video_id!r})"
    if isinstance(video_id, bool) or not isinstance(video_id, (int, np.integer)):
        raise ValueError(f"{where}: 'video_id' must be an int, got {video_id!r}")
    if video_id not in videos:
        raise ValueError(f"{where}: video id {video_id} is not in the ground truth")
    score = entry["score"]
    if isinstance(score, bool) or not isinstance(score, Real) or not math.isfinite(score):
        raise ValueError(f"{where}: 'score' must be a finite number, got {score!r}")
    category_id = entry["category_id"]
    if isinstance(category_id, bool) or not isinstance(category_id, (int, np.integer)):
        raise ValueError(f"{where}: 'category_id' must be an int, got {category_id!r}")
    if categories is not None and category_id not in categories:
        raise ValueError(f"{where}: 'category_id' {category_id} is not a ground-truth category")
    _validate_segmentations(entry["segmentations"], videos[video_id], where)


def _validate_segmentations(segmentations, video: VideoInfo, where: str) -> None:
    if not isinstance(segmentations, (list, tuple)):
        raise ValueError(f"{where}: 'segmentations' must be a list")
    if len(segmentations) != video.length:
        raise ValueError(
            f"{where}: 'segmentations' has {len(segmentations)} frames, "
            f"the ground truth's video {video.video_id} has {video.length}"
        )
    rles, wheres = [], []
    for t, rle in enumerate(segmentations):
        if rle is None:
            continue
        if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
            raise ValueError(f"{where}, frame {t}: a segmentation must be None or an RLE dict")
        if not isinstance(rle["counts"], (str, bytes)):
            raise ValueError(f"{where}, frame {t}: RLE 'counts' must be a compressed str")
        rles.append(rle)
        wheres.append(f"{where}, frame {t}")
    # All frames of the entry in one pass; the error of the first bad one as validate_rle's.
    validate_rles(rles, video.height, video.width, wheres)
