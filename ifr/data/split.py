"""Hold out videos of a YouTube-VIS train set as a validation set with ground truth.

The paper's Fig. 4 ablation (docs/method.md): 400 videos of YTVIS-2019 train are held out.
The split is a seeded permutation of the sorted video ids, so the same seed always holds out
the same videos.
"""

import logging
import os
from typing import Dict, Tuple

import numpy as np

from ..utils.atomic_io import atomic_write_json
from ..utils.paths import check_output_folder, check_output_is_not_input
from .datasets.ytvis import YTVISFormatError, load_ytvis_json, read_ytvis_json

__all__ = ["split_ytvis_json"]

logger = logging.getLogger(__name__)


def split_ytvis_json(
    train_json: str, out_dir: str, num_val: int = 400, seed: int = 0
) -> Tuple[str, str]:
    """Split ``train_json`` into ``out_dir/train_sub.json`` and ``out_dir/val_sub.json``.

    Both are valid YouTube-VIS files with ground truth: the videos are disjoint, each keeps
    its own annotations, and both keep every top-level key of the input (``categories``,
    ``info``, ``licenses``). Files are written atomically.

    Returns:
        ``(train_sub_path, val_sub_path)``.

    Raises:
        YTVISFormatError: the input is not a YouTube-VIS train file, or has duplicate video
            or annotation ids (checked before anything is written).
        ValueError: ``num_val`` is not between 1 and the number of videos - 1.
        OutputIsInputError: an output would overwrite ``train_json``.
    """
    check_output_folder("--out-dir", out_dir)
    data = _read_train_json(train_json)
    video_ids = sorted(v["id"] for v in data["videos"])
    if not 0 < num_val < len(video_ids):
        raise ValueError(
            f"num_val must be in [1, {len(video_ids) - 1}] for {train_json} "
            f"({len(video_ids)} videos), got {num_val}"
        )
    order = np.random.default_rng(seed).permutation(len(video_ids))
    val_ids = {video_ids[i] for i in order[:num_val]}
    train_path = os.path.join(out_dir, "train_sub.json")
    val_path = os.path.join(out_dir, "val_sub.json")
    for path in (train_path, val_path):
        check_output_is_not_input("output", path, {"the input": train_json})
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_json(train_path, _subset(data, lambda vid: vid not in val_ids), indent=None)
    atomic_write_json(val_path, _subset(data, lambda vid: vid in val_ids), indent=None)
    logger.info(
        f"Split {train_json}: {len(video_ids) - num_val} videos -> {train_path}, "
        f"{num_val} videos -> {val_path} (seed {seed})"
    )
    return train_path, val_path


def _read_train_json(train_json: str) -> Dict:
    """The parsed file, checked by the loader's own checks (categories, videos, every
    annotation and its per-frame entries), so both outputs load wherever the input would;
    frame files are not looked for (the split does not need them)."""
    data = read_ytvis_json(train_json)
    if "annotations" not in data:
        raise YTVISFormatError(train_json, "missing top-level key", key="annotations")
    load_ytvis_json(train_json, image_root="", check_frame_files=False)
    return data


def _subset(data: Dict, keep) -> Dict:
    subset = {k: v for k, v in data.items() if k not in ("videos", "annotations")}
    subset["videos"] = [v for v in data["videos"] if keep(v["id"])]
    subset["annotations"] = [a for a in data["annotations"] if keep(a["video_id"])]
    return subset
