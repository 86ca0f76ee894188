"""VisTR's augmentations (ifr/data/augmentation.py): the HSV conversion against Python's
colorsys, the photometric steps by hand, the random size crop's bounds."""

import colorsys

import numpy as np
import pytest

from ifr.data import augmentation
from ifr.data.augmentation import (
    PhotometricTransform,
    RandomSizeCrop,
    hsv_to_rgb,
    rgb_to_hsv,
)


def test_hsv_matches_colorsys_and_round_trips():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (6, 7, 3)).astype(np.float32)
    image[0, 0] = (50, 50, 50)  # grey: hue and saturation 0
    hsv = rgb_to_hsv(image)
    for y, x in [(0, 0), (1, 2), (5, 6), (3, 3)]:
        h, s, v = colorsys.rgb_to_hsv(*(image[y, x] / 255.0))
        np.testing.assert_allclose(hsv[y, x], (h * 360, s, v * 255), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(hsv_to_rgb(hsv), image, atol=1e-3)


def test_photometric_steps_by_hand(monkeypatch):
    """Every coin 1 and every uniform draw at its upper end: brightness +32, contrast x1.5
    before the HSV steps, saturation x1.5, hue +18 degrees, then channel order (1, 0, 2)."""
    # brightness, contrast first, contrast, saturation, hue, channel order, its index
    coins = iter([1, 1, 1, 1, 1, 1, 2])
    monkeypatch.setattr(augmentation.np.random, "randint", lambda *a: next(coins))
    monkeypatch.setattr(augmentation.np.random, "uniform", lambda low, high: high)
    image = np.array([[[100, 60, 20]]], dtype=np.uint8)
    out = PhotometricTransform().apply_image(image)
    expected = (image.astype(np.float32) + 32) * 1.5  # (198, 138, 78)
    h, s, v = colorsys.rgb_to_hsv(*(expected[0, 0] / 255.0))
    r, g, b = colorsys.hsv_to_rgb((h * 360 + 18) / 360 % 1, min(s * 1.5, 1.0), v)
    rgb = np.array([r, g, b]) * 255  # then channels (1, 0, 2): swap red and green
    np.testing.assert_allclose(out[0, 0], np.clip(rgb[[1, 0, 2]], 0, 255).astype(np.uint8), atol=1)


def test_photometric_values_are_clipped_not_wrapped(monkeypatch):
    coins = iter([1, 0, 0, 0, 0, 0])  # brightness only
    monkeypatch.setattr(augmentation.np.random, "randint", lambda *a: next(coins))
    monkeypatch.setattr(augmentation.np.random, "uniform", lambda low, high: high)
    out = PhotometricTransform().apply_image(np.array([[[250, 10, 0]]], dtype=np.uint8))
    assert out[0, 0].tolist() == [255, 42, 32]


def test_random_size_crop_sides_and_position_stay_in_bounds():
    np.random.seed(0)
    crop = RandomSizeCrop(384, 600)
    image = np.zeros((500, 900, 3), np.uint8)
    widths, heights = set(), set()
    for _ in range(200):
        t = crop.get_transform(image)
        assert 384 <= t.w <= 600 and 384 <= t.h <= 500
        assert 0 <= t.x0 <= 900 - t.w and 0 <= t.y0 <= 500 - t.h
        widths.add(t.w)
        heights.add(t.h)
    assert max(heights) == 500 or len(heights) > 50  # heights drawn up to the image's
    small = crop.get_transform(np.zeros((300, 900, 3), np.uint8))  # shorter than 384
    assert small.h == 300 and small.y0 == 0
    with pytest.raises(ValueError, match="RANDOM_SIZE_CROP"):
        RandomSizeCrop(600, 384)
