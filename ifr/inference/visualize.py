"""Drawing a video's predicted instances: one colour per instance for the whole track (or
per class, with the training dataset's class colours), its class name and score, on every
frame where its mask is not empty."""

from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.utils.colormap import colormap

from ..utils.rle import rle_to_mask

_PALETTE = colormap(rgb=False, maximum=255).astype(np.uint8)  # (74, 3) BGR, fixed order


def track_color(track_id: int) -> Tuple[int, int, int]:
    """BGR colour of a track: deterministic, the same on every frame."""
    return tuple(int(c) for c in _PALETTE[track_id % len(_PALETTE)])


def instance_label(label: int, score: float, class_names: Optional[Sequence[str]]) -> str:
    name = class_names[label] if class_names and 0 <= label < len(class_names) else f"class {label}"
    return f"{name} {score:.2f}"


def kept_instances(output: Dict, confidence: float) -> List[int]:
    """Indices of the output's instances with score >= ``confidence``, best first."""
    scores = output["pred_scores"]
    return [
        i for i in sorted(range(len(scores)), key=lambda i: -scores[i]) if scores[i] >= confidence
    ]


def frame_mask(masks, frame_idx: int) -> np.ndarray:
    """Bool (H, W) mask of one frame from T RLE dicts or a (T, H, W) array/tensor."""
    mask = masks[frame_idx]
    if isinstance(mask, dict):
        return rle_to_mask(mask, where=f"frame {frame_idx}'s mask")
    return np.asarray(mask, dtype=bool)


def draw_instance(
    image: np.ndarray, mask: np.ndarray, color, text: str, alpha: float = 0.5
) -> None:
    """Blend ``mask`` (H, W bool) into ``image`` (BGR, in place) with its outline and text."""
    if not mask.any():
        return
    image[mask] = (image[mask] * (1 - alpha) + np.asarray(color) * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(image, contours, -1, color, 1)
    ys, xs = np.nonzero(mask)
    origin = (int(xs.min()), max(int(ys.min()) - 3, 10))
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)


def instance_color(
    index: int, label: int, class_colors: Optional[Sequence[Sequence[int]]]
) -> Tuple[int, int, int]:
    """BGR colour of instance ``index``: its class's colour when ``class_colors`` (RGB per
    class, as detectron2's ``thing_colors``) covers ``label``, else ``track_color(index)``."""
    if class_colors and 0 <= label < len(class_colors):
        red, green, blue = (int(c) for c in class_colors[label])
        return (blue, green, red)
    return track_color(index)


def draw_video(
    frames: Sequence[np.ndarray],
    output: Dict,
    confidence: float = 0.5,
    class_names: Optional[Sequence[str]] = None,
    class_colors: Optional[Sequence[Sequence[int]]] = None,
) -> Iterator[np.ndarray]:
    """Yield each BGR frame with the instances of ``output`` (the model's per-video dict)
    scoring at least ``confidence`` drawn on it; instance i keeps one colour on every frame:
    ``track_color(i)``, or its class's colour with ``class_colors`` (RGB per class)."""
    kept = kept_instances(output, confidence)
    labels = output["pred_labels"]
    texts = {i: instance_label(labels[i], output["pred_scores"][i], class_names) for i in kept}
    colors = {i: instance_color(i, labels[i], class_colors) for i in kept}
    for t, frame in enumerate(frames):
        image = frame.copy()
        for i in reversed(kept):  # best on top
            draw_instance(image, frame_mask(output["pred_masks"][i], t), colors[i], texts[i])
        yield image
