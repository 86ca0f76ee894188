import math

import pytest
import torch

from ifr.modeling.position_encoding import PositionEmbeddingSine


def test_shape_and_hand_computed_values():
    layer = PositionEmbeddingSine(num_pos_feats=4, temperature=100, normalize=True)
    x = torch.zeros(2, 3, 2, 4)  # B=2, H=2, W=4
    pos = layer(x)
    assert pos.shape == (2, 8, 2, 4)
    # Pixel (row 1, col 2): y = 2/2 * 2pi, x = 3/4 * 2pi (1-based counts / extent).
    y = 2 / 2 * 2 * math.pi
    xx = 3 / 4 * 2 * math.pi
    # dim_t for k = 0..3: 100 ** (2 * (k // 2) / 4) = [1, 1, 10, 10].
    expected_y = [math.sin(y / 1), math.cos(y / 1), math.sin(y / 10), math.cos(y / 10)]
    expected_x = [math.sin(xx / 1), math.cos(xx / 1), math.sin(xx / 10), math.cos(xx / 10)]
    torch.testing.assert_close(
        pos[1, :, 1, 2], torch.tensor(expected_y + expected_x), atol=1e-5, rtol=0
    )
    # Pixel (0, 0): y = 1/2 * 2pi = pi, x = 1/4 * 2pi.
    assert pos[0, 0, 0, 0].item() == pytest.approx(math.sin(math.pi), abs=1e-5)
    assert pos[0, 4, 0, 0].item() == pytest.approx(math.sin(math.pi / 2), abs=1e-5)
    assert pos[0, 7, 0, 0].item() == pytest.approx(math.cos(math.pi / 2 / 10), abs=1e-5)


def test_unnormalized_uses_pixel_counts():
    layer = PositionEmbeddingSine(num_pos_feats=2, temperature=10000, normalize=False)
    pos = layer(torch.zeros(1, 1, 3, 3))
    # Channel 0 = sin(y) with y the 1-based row; channel 2 = sin(x).
    torch.testing.assert_close(pos[0, 0, :, 0], torch.sin(torch.tensor([1.0, 2.0, 3.0])))
    torch.testing.assert_close(pos[0, 2, 0, :], torch.sin(torch.tensor([1.0, 2.0, 3.0])))


def test_padding_mask_excludes_padded_pixels():
    layer = PositionEmbeddingSine(num_pos_feats=8)
    full = layer(torch.zeros(1, 1, 4, 3))
    mask = torch.zeros(1, 4, 5, dtype=torch.bool)
    mask[:, :, 3:] = True  # two padded columns on the right
    padded = layer(torch.zeros(1, 1, 4, 5), mask)
    torch.testing.assert_close(padded[..., :3], full)


def test_scale_without_normalize_is_rejected():
    with pytest.raises(ValueError, match="normalize"):
        PositionEmbeddingSine(normalize=False, scale=1.0)
