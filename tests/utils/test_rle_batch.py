"""Tests of ``ifr.utils.rle.validate_rles`` (the batched check the dataset loader uses)
against the one-by-one ``validate_rle`` and pycocotools' own encoder."""

import numpy as np
import pycocotools.mask as mask_util
import pytest

from ifr.utils.rle import RLEError, validate_rle, validate_rles

H, W = 12, 9


def _compressed(mask, as_bytes=False):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"] if as_bytes else rle["counts"].decode("ascii")
    return {"size": [H, W], "counts": counts}


def _uncompressed(mask):
    flat = mask.astype(np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return {"size": [H, W], "counts": runs}


def _random_rles(rng, num):
    rles = []
    for k in range(num):
        mask = rng.random((H, W)) < rng.uniform(0.0, 1.0)
        kind = k % 3
        rles.append(_compressed(mask, as_bytes=kind == 2) if kind else _uncompressed(mask))
    return rles


def _corrupt(rng, rle):
    """A copy of ``rle`` broken in one of the ways validate_rle refuses."""
    rle = dict(rle)
    counts = rle["counts"]
    how = int(rng.integers(6))
    if how == 0:
        rle["size"] = [W, H]
    elif how == 1 and isinstance(counts, list):
        rle["counts"] = counts + [1]
    elif how == 1:
        rle["counts"] = counts[:-1] if len(counts) > 1 else "1"
    elif how == 2 and isinstance(counts, list):
        rle["counts"] = [float(c) for c in counts]
    elif how == 2:
        rle["counts"] = (counts.decode() if isinstance(counts, bytes) else counts) + "\x7f"
    elif how == 3 and isinstance(counts, list):
        rle["counts"] = [-1] + counts
    elif how == 3:
        rle["counts"] = (counts.decode() if isinstance(counts, bytes) else counts) + "o"
    elif how == 4:
        del rle["counts"]
    else:
        rle["counts"] = 7
    return rle


def _scalar_errors(rles, wheres):
    errors = []
    for rle, where in zip(rles, wheres):
        try:
            validate_rle(rle, H, W, where)
        except RLEError as e:
            errors.append(str(e))
    return errors


def test_valid_rles_pass_and_pycocotools_agrees():
    rng = np.random.default_rng(0)
    rles = _random_rles(rng, 60)
    rles.append({"size": [H, W], "counts": [H * W]})  # all background
    validate_rles(rles, H, W, [f"rle {i}" for i in range(len(rles))])
    assert _scalar_errors(rles, [""] * len(rles)) == []


@pytest.mark.parametrize("seed", range(40))
def test_batch_refuses_exactly_what_the_scalar_check_refuses(seed):
    rng = np.random.default_rng(seed)
    rles = _random_rles(rng, 12)
    for i in rng.choice(len(rles), int(rng.integers(0, 3)), replace=False):
        rles[i] = _corrupt(rng, rles[i])
    wheres = [f"video 3, frame {i}" for i in range(len(rles))]
    expected = _scalar_errors(rles, wheres)
    if not expected:
        validate_rles(rles, H, W, wheres)
        return
    with pytest.raises(RLEError) as info:
        validate_rles(rles, H, W, wheres)
    assert str(info.value) in expected  # the same one-line error as the scalar check


def test_first_bad_rle_is_named():
    rng = np.random.default_rng(1)
    rles = _random_rles(rng, 6)
    rles[4] = (
        {"size": [H, W], "counts": rles[4]["counts"] + [3]}
        if isinstance(rles[4]["counts"], list)
        else {"size": [H, W], "counts": [H * W - 1]}
    )
    rles[2] = {"size": [H, W], "counts": [H * W + 5]}
    with pytest.raises(RLEError, match=r"^frame 2: RLE 'counts' cover 113 pixels"):
        validate_rles(rles, H, W, [f"frame {i}" for i in range(6)])


@pytest.mark.parametrize(
    "counts,fragment",
    [
        ("@", "negative run length"),  # one group, sign bit set: -16
        ("PPPPPPP0", "too large"),  # 8 groups of 5 bits
        ("", "cover 0 pixels"),
    ],
)
def test_compressed_edge_cases_as_the_scalar_check(counts, fragment):
    rles = [_compressed(np.ones((H, W), bool)), {"size": [H, W], "counts": counts}]
    with pytest.raises(RLEError, match=fragment) as batch:
        validate_rles(rles, H, W, ["a", "b"])
    with pytest.raises(RLEError) as scalar:
        validate_rle(rles[1], H, W, "b")
    assert str(batch.value) == str(scalar.value)
