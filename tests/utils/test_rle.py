"""ifr/utils/rle.py: RLE decoding checked against run lengths computed from the masks
themselves, round trips, and the malformed RLEs that make pycocotools hang or crash."""

import numpy as np
import pytest

from ifr.utils.rle import (
    RLEError,
    decode_counts,
    mask_to_rle,
    masks_to_rles,
    rle_to_mask,
    segmentation_to_mask,
    segmentation_to_rle,
    validate_rle,
)


def _runs_of(mask: np.ndarray) -> list:
    """Run lengths of a mask read column by column, starting with a run of 0s."""
    flat = mask.flatten(order="F").astype(np.int64)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = list(np.diff(bounds))
    return ([0] + runs) if flat.size and flat[0] == 1 else runs


@pytest.mark.parametrize("seed", range(5))
def test_decode_counts_gives_the_masks_run_lengths(seed):
    rng = np.random.default_rng(seed)
    # Large masks make long runs (several 5-bit groups) and negative deltas.
    h, w = int(rng.integers(1, 300)), int(rng.integers(1, 300))
    mask = rng.random((h, w)) < rng.uniform(0.001, 0.999)
    mask[: h // 2, : w // 3] = True
    rle = mask_to_rle(mask)
    assert list(decode_counts(rle["counts"])) == _runs_of(mask)
    validate_rle(rle, h, w)
    assert np.array_equal(rle_to_mask(rle), mask)


def test_masks_to_rles_round_trip_and_empty_frame():
    masks = np.zeros((3, 5, 7), dtype=bool)
    masks[0, 1:3, 2:6] = True
    masks[2] = True
    rles = masks_to_rles(masks)
    assert [r["size"] for r in rles] == [[5, 7]] * 3
    assert all(isinstance(r["counts"], str) for r in rles)
    for rle, mask in zip(rles, masks):
        assert np.array_equal(rle_to_mask(rle), mask)
    with pytest.raises(ValueError, match="binary"):
        masks_to_rles(masks.astype(np.float32))


def test_uncompressed_rle():
    rle = {"size": [2, 3], "counts": [1, 2, 3]}  # column-major: 0, 1 1, 0 0 0
    mask = segmentation_to_mask(rle, 2, 3)
    assert np.array_equal(mask, np.array([[0, 1, 0], [1, 0, 0]], dtype=bool))
    with pytest.raises(RLEError, match="cover 5 pixels"):
        validate_rle({"size": [2, 3], "counts": [1, 2, 2]})
    with pytest.raises(RLEError, match="negative"):
        validate_rle({"size": [2, 3], "counts": [7, -1]})


@pytest.mark.parametrize(
    "rle, message",
    [
        # The counts of a 48x64 mask declared 96x128: they cover a quarter of it.
        (
            {"size": [96, 128], "counts": mask_to_rle(np.ones((48, 64)))["counts"]},
            r"cover 3072 pixels, its size \[96, 128\] has 12288",
        ),
        ({"size": [96, 128], "counts": "@@@@garbage!!"}, "character 'r' outside"),
        ({"size": [1, 1], "counts": "P"}, "truncated"),  # 'P': a group with "more" set
        ({"size": [1, 1], "counts": "O"}, "negative"),  # 'O': -1
        ({"size": [1, 1], "counts": "1é"}, "non-ASCII"),
        ({"size": [1, 1], "counts": 5}, "must be a string"),
        ({"size": [1, 1, 1], "counts": "1"}, "'size' must be"),
        ({"size": [1, True], "counts": "1"}, "'size' must be"),
        ({"counts": "1"}, "'size' and 'counts'"),
        ({"size": [1, 1], "counts": "mmmmmmmm0"}, "too large"),
    ],
)
def test_malformed_rle_is_rejected_naming_where(rle, message):
    with pytest.raises(RLEError, match=message) as info:
        validate_rle(rle, where="gt.json: video 3, annotation 7, frame 2")
    assert str(info.value).startswith("gt.json: video 3, annotation 7, frame 2: ")


def test_size_must_match_the_video():
    rle = mask_to_rle(np.ones((4, 5)))
    validate_rle(rle, 4, 5)
    with pytest.raises(RLEError, match=r"RLE size \[4, 5\], the video is \[5, 4\]"):
        validate_rle(rle, 5, 4, where="f")


def test_polygons_to_mask():
    square = [1, 1, 5, 1, 5, 5, 1, 5]  # 4x4 square, pixel centres 1..4 inside
    mask = segmentation_to_mask([square], 8, 8)
    assert mask.sum() == 16 and mask[1:5, 1:5].all()
    # Fewer than 3 points (4 numbers would be read as a box by pycocotools) is no area.
    assert segmentation_to_rle([[1, 1, 5, 5]], 8, 8) is None
    assert segmentation_to_rle([], 8, 8) is None and segmentation_to_rle(None, 8, 8) is None
    with pytest.raises(RLEError, match="odd number"):
        segmentation_to_rle([[1, 1, 5, 1, 5]], 8, 8, where="w")
    with pytest.raises(RLEError, match="finite numbers"):
        segmentation_to_rle([[1, 1, 5, "a", 5, 5]], 8, 8, where="w")
    with pytest.raises(RLEError, match="got str"):
        segmentation_to_rle("abc", 8, 8, where="w")
