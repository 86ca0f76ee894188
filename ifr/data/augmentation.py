"""Training augmentations beyond Detectron2's: VisTR's photometric distortion and its random
size crop (Epiphqny/VisTR ``datasets/transforms.py``: ``PhotometricDistort``,
``RandomSizeCrop``).

The clip mapper draws an augmentation's parameters once, on the first frame, and applies
the same transform to every frame; the photometric distortion, as VisTR's, draws new
parameters for every frame (its ``apply_image`` draws them), and moves no pixel, so masks
are unchanged.
"""

from typing import Tuple

import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import CropTransform, Transform

__all__ = ["PhotometricDistortion", "RandomSizeCrop", "hsv_to_rgb", "rgb_to_hsv"]

# VisTR's (SSD's) ranges: brightness delta, contrast and saturation factors, hue delta (deg).
BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18.0
CHANNEL_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def rgb_to_hsv(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 255] -> HSV with hue in degrees [0, 360), saturation in
    [0, 1], value in [0, 255] (OpenCV's float convention)."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    value = image.max(-1)
    spread = value - image.min(-1)
    saturation = np.where(value > 0, spread / np.where(value > 0, value, 1), 0)
    safe = np.where(spread > 0, spread, 1)
    hue = np.where(
        value == r,
        60 * (g - b) / safe,
        np.where(value == g, 120 + 60 * (b - r) / safe, 240 + 60 * (r - g) / safe),
    )
    hue = np.where(spread > 0, hue % 360, 0)
    return np.stack([hue, saturation, value], -1).astype(np.float32)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv`."""
    hue, saturation, value = hsv[..., 0] % 360, hsv[..., 1], hsv[..., 2]
    chroma = value * saturation
    sector = hue / 60
    x = chroma * (1 - np.abs(sector % 2 - 1))
    zero = np.zeros_like(chroma)
    index = np.clip(sector.astype(np.int64), 0, 5)
    choices = [
        (chroma, x, zero),
        (x, chroma, zero),
        (zero, chroma, x),
        (zero, x, chroma),
        (x, zero, chroma),
        (chroma, zero, x),
    ]
    rgb = [np.choose(index, [c[channel] for c in choices]) for channel in range(3)]
    return (np.stack(rgb, -1) + (value - chroma)[..., None]).astype(np.float32)


class PhotometricTransform(Transform):
    """VisTR's ``PhotometricDistort`` of one frame, with parameters drawn at each call."""

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> distorted uint8 (values clipped to [0, 255])."""
        out = image.astype(np.float32)
        if np.random.randint(2):
            out = out + np.random.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA)
        contrast_first = bool(np.random.randint(2))
        if contrast_first:
            out = _random_contrast(out)
        hsv = rgb_to_hsv(out)
        if np.random.randint(2):
            hsv[..., 1] *= np.random.uniform(*SATURATION_RANGE)
        if np.random.randint(2):
            hsv[..., 0] = (hsv[..., 0] + np.random.uniform(-HUE_DELTA, HUE_DELTA)) % 360
        out = hsv_to_rgb(hsv)
        if not contrast_first:
            out = _random_contrast(out)
        if np.random.randint(2):
            out = out[..., list(CHANNEL_ORDERS[np.random.randint(len(CHANNEL_ORDERS))])]
        # VisTR casts with astype(uint8), which wraps out-of-range values around; clipped here.
        return np.clip(out, 0, 255).astype(np.uint8)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation


def _random_contrast(image: np.ndarray) -> np.ndarray:
    if np.random.randint(2):
        return image * np.random.uniform(*CONTRAST_RANGE)
    return image


class PhotometricDistortion(T.Augmentation):
    """VisTR's photometric distortion (brightness, contrast, saturation, hue, channel
    order, each with probability 1/2), drawn anew for every frame of a clip."""

    def get_transform(self, image: np.ndarray) -> Transform:
        return PhotometricTransform()


class RandomSizeCrop(T.Augmentation):
    """VisTR's ``RandomSizeCrop(min_size, max_size)``: a crop of width drawn uniformly in
    [min_size, min(W, max_size)] and height in [min_size, min(H, max_size)] (integers,
    both ends included; a side shorter than ``min_size`` is kept whole), at a uniformly
    drawn position; the same crop for every frame of a clip."""

    def __init__(self, min_size: int, max_size: int):
        super().__init__()
        if not 1 <= min_size <= max_size:
            raise ValueError(
                "INPUT.RANDOM_SIZE_CROP needs 1 <= MIN_SIZE <= MAX_SIZE, got "
                f"{min_size}, {max_size}"
            )
        self.min_size, self.max_size = min_size, max_size

    def _side(self, length: int) -> int:
        low = min(self.min_size, length)
        return int(np.random.randint(low, min(length, self.max_size) + 1))

    def get_transform(self, image: np.ndarray) -> Transform:
        height, width = image.shape[:2]
        crop_h, crop_w = self._side(height), self._side(width)
        y0 = int(np.random.randint(0, height - crop_h + 1))
        x0 = int(np.random.randint(0, width - crop_w + 1))
        return CropTransform(x0, y0, crop_w, crop_h)


def vistr_crop_augmentations(pre_resize: Tuple[int, ...], min_size: int, max_size: int) -> list:
    """VisTR's crop chain: shorter side resized to one of ``pre_resize`` (no cap), then
    :class:`RandomSizeCrop`; the final resize follows (INPUT.MIN_SIZE_TRAIN)."""
    return [
        T.ResizeShortestEdge(tuple(pre_resize), max_size=10**6, sample_style="choice"),
        RandomSizeCrop(min_size, max_size),
    ]
