"""Builders of tiny YouTube-VIS ground truth and results from numpy masks, for tests."""

from typing import List, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_util

Track = Sequence[Optional[np.ndarray]]  # per frame a bool (H, W) mask, or None (absent)

# The tracking metrics of predictions identical to the ground truth: every rate 100 %, no
# identity switch, one query per track.
PERFECT_TRACKING = {
    "IDF1": 100.0,
    "MOTA": 100.0,
    "IDP": 100.0,
    "IDR": 100.0,
    "IDs": 0,
    "HOTA": 100.0,
    "DetA": 100.0,
    "AssA": 100.0,
    "OneQuery": 100.0,
    "QueriesPerTrack": 1.0,
}


def box(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """bool (H, W) mask, True on rows y0..y1-1 and columns x0..x1-1."""
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def rle(mask: Optional[np.ndarray]) -> Optional[dict]:
    if mask is None:
        return None
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode("ascii")}


def make_gt(videos, annotations, categories=(1, 2)) -> dict:
    """videos: [(video_id, height, width, length)];
    annotations: [(video_id, category_id, track)] or (..., iscrowd)."""
    gt = {
        "videos": [
            {
                "id": v,
                "height": h,
                "width": w,
                "length": t,
                "file_names": [f"{v}/{i:05d}.jpg" for i in range(t)],
            }
            for v, h, w, t in videos
        ],
        "categories": [{"id": c, "name": f"class{c}"} for c in categories],
        "annotations": [],
    }
    for ann_id, ann in enumerate(annotations, start=1):
        video_id, category_id, track = ann[:3]
        iscrowd = ann[3] if len(ann) > 3 else 0
        gt["annotations"].append(
            {
                "id": ann_id,
                "video_id": video_id,
                "category_id": category_id,
                "segmentations": [rle(m) for m in track],
                "areas": [int(m.sum()) if m is not None else None for m in track],
                "bboxes": [None for _ in track],
                "iscrowd": iscrowd,
            }
        )
    return gt


def make_result(video_id: int, category_id: int, score: float, track: Track) -> dict:
    return {
        "video_id": video_id,
        "category_id": category_id,
        "score": score,
        "segmentations": [rle(m) for m in track],
    }


def random_masks(rng: np.random.Generator, count: int, height: int, width: int) -> List[np.ndarray]:
    """``count`` random rectangles, of many sizes."""
    masks = []
    for _ in range(count):
        h = int(rng.integers(1, height + 1))
        w = int(rng.integers(1, width + 1))
        y0 = int(rng.integers(0, height - h + 1))
        x0 = int(rng.integers(0, width - w + 1))
        masks.append(box(height, width, y0, y0 + h, x0, x0 + w))
    return masks
