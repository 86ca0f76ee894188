"""COCO run-length encoding (RLE) of binary masks: conversions and validation, in one place.

An RLE is ``{"size": [H, W], "counts": ...}``: the mask read column by column (Fortran
order) as alternating runs of 0s and 1s, starting with 0s. ``counts`` is either a list of
run lengths ("uncompressed") or COCO's compressed string ("compressed", ``str`` or
``bytes``). A frame's segmentation in a YouTube-VIS json is an RLE, polygons (a list of
flat ``[x0, y0, x1, y1, ...]`` lists) or ``None``/empty where the instance is absent.

pycocotools trusts its input: an RLE whose run lengths do not add up to ``H * W`` makes
its C code read or write outside the mask and return garbage, crash or hang. So every RLE
from a file is checked here, in Python, before pycocotools sees it
(:func:`validate_rle`); the error names where the RLE came from (``where``: the file,
video and frame, as the caller knows them).
"""

from numbers import Real
from typing import Any, List, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_util

# The compressed string: each run length (from the fourth on, minus the run two before)
# is written in 5-bit groups, least significant first, one character (chr(48 + c)) each;
# bit 0x20 of c says "more groups follow", bit 0x10 of the last group is the sign.
_CHAR_OFFSET = 48
_MORE_BIT = 0x20
_SIGN_BIT = 0x10
_VALUE_BITS = 0x1F
# 7 groups hold 35 bits, more than any real mask's run length (< 2^32).
_MAX_GROUPS = 7


class RLEError(ValueError):
    """A malformed RLE or segmentation; the message names where it came from."""


def decode_counts(counts: Any, where: str = "RLE") -> np.ndarray:
    """Run lengths (int64, (R,)) of a compressed ``counts`` string (``str`` or ``bytes``),
    decoded as pycocotools' ``rleFrString`` does, without trusting it.

    Raises:
        RLEError: a character outside COCO's alphabet, a truncated last run, or a negative
            run length.
    """
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError as e:
            raise RLEError(f"{where}: 'counts' has non-ASCII characters") from e
    if not isinstance(counts, bytes):
        raise RLEError(f"{where}: 'counts' must be a string, got {type(counts).__name__}")
    codes = np.frombuffer(counts, dtype=np.uint8) - np.uint8(_CHAR_OFFSET)  # wraps below 0
    if codes.size == 0:
        return np.zeros(0, dtype=np.int64)
    if codes.max() > 63:
        char = chr(counts[int(np.argmax(codes > 63))])
        raise RLEError(f"{where}: 'counts' has a character {char!r} outside COCO's RLE alphabet")
    if codes[-1] & _MORE_BIT:
        raise RLEError(f"{where}: 'counts' is truncated (its last run is incomplete)")
    ends = np.flatnonzero((codes & _MORE_BIT) == 0)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    groups = ends - starts + 1
    if groups.max() > _MAX_GROUPS:
        raise RLEError(f"{where}: 'counts' has a run length too large for any mask")
    # Position of each character within its run: index - start of the run.
    position = np.arange(codes.size) - np.repeat(starts, groups)
    values = np.add.reduceat((codes & _VALUE_BITS).astype(np.int64) << (5 * position), starts)
    negative = (codes[ends] & _SIGN_BIT) != 0
    values[negative] -= np.left_shift(1, 5 * groups[negative])
    # From the fourth run on, a value is the difference to the run two before.
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    if (runs < 0).any():
        raise RLEError(f"{where}: 'counts' decodes to a negative run length")
    return runs


def run_lengths(rle: Any, where: str = "RLE") -> np.ndarray:
    """Run lengths (int64, (R,)) of an RLE, compressed or not (checked, not summed)."""
    counts = rle["counts"]
    if isinstance(counts, (list, tuple)):
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in counts):
            raise RLEError(f"{where}: uncompressed 'counts' must be a list of ints")
        runs = np.asarray(counts, dtype=np.int64).reshape(-1)
        if (runs < 0).any():
            raise RLEError(f"{where}: 'counts' has a negative run length")
        return runs
    return decode_counts(counts, where)


def rle_size(rle: Any, where: str = "RLE") -> List[int]:
    """``[H, W]`` of an RLE dict, checked to be two non-negative ints."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise RLEError(f"{where}: an RLE must be a dict with 'size' and 'counts'")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        or min(size) < 0
    ):
        raise RLEError(f"{where}: 'size' must be [height, width], got {size!r}")
    return [int(s) for s in size]


def validate_rle(
    rle: Any, height: Optional[int] = None, width: Optional[int] = None, where: str = "RLE"
) -> None:
    """Check an RLE before pycocotools reads it: ``size`` is ``[height, width]`` (when
    given) and the run lengths add up to exactly ``H * W``.

    Raises:
        RLEError: naming ``where`` and what is wrong.
    """
    size = rle_size(rle, where)
    if height is not None and width is not None and size != [int(height), int(width)]:
        raise RLEError(f"{where}: RLE size {size}, the video is {[int(height), int(width)]}")
    total = int(run_lengths(rle, where).sum())
    if total != size[0] * size[1]:
        raise RLEError(
            f"{where}: RLE 'counts' cover {total} pixels, its size {size} has {size[0] * size[1]}"
        )


def with_str_counts(rle: Any) -> dict:
    """A compressed RLE with ``counts`` as ``str`` (JSON-ready) from any RLE (compressed
    as ``str``/``bytes`` or uncompressed). Does not validate."""
    counts = rle["counts"]
    height, width = (int(s) for s in rle["size"])
    if isinstance(counts, (list, tuple)):
        counts = mask_util.frPyObjects(
            {"size": [height, width], "counts": list(counts)}, height, width
        )["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [height, width], "counts": counts}


def mask_to_rle(mask: np.ndarray) -> dict:
    """Compressed RLE (``counts`` str) of one binary (H, W) mask."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (H, W), got shape {mask.shape}")
    return with_str_counts(mask_util.encode(np.asfortranarray(mask.astype(np.uint8))))


def masks_to_rles(masks: np.ndarray) -> List[dict]:
    """Compressed RLEs (``counts`` str) of binary (N, H, W) masks, one per mask."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if masks.dtype.kind == "f":
        # Probabilities or logits would be silently truncated by the cast to uint8.
        raise ValueError(f"masks must be binary (thresholded), got {masks.dtype}")
    if masks.shape[0] == 0:
        return []
    # pycocotools encodes (H, W, N) Fortran-ordered arrays.
    encoded = mask_util.encode(np.asfortranarray(masks.astype(np.uint8).transpose(1, 2, 0)))
    return [with_str_counts(rle) for rle in encoded]


def rle_to_mask(rle: Any, where: str = "RLE") -> np.ndarray:
    """bool (H, W) mask of an RLE (compressed or not), validated first."""
    validate_rle(rle, where=where)
    return mask_util.decode(with_str_counts(rle)).astype(bool)


def validate_polygons(polygons: Any, where: str = "polygons") -> List[List[float]]:
    """The polygons with at least 3 points, checked to be flat lists of an even number of
    finite numbers (``[x0, y0, x1, y1, ...]``); fewer than 3 points is no area, dropped
    (pycocotools would read a 4-number polygon as a box)."""
    kept = []
    for polygon in polygons:
        if not isinstance(polygon, (list, tuple)) or not all(
            isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v) for v in polygon
        ):
            raise RLEError(f"{where}: a polygon must be a flat list of finite numbers")
        if len(polygon) % 2:
            raise RLEError(f"{where}: a polygon has an odd number of coordinates")
        if len(polygon) >= 6:
            kept.append([float(v) for v in polygon])
    return kept


def segmentation_to_rle(
    segmentation: Any, height: int, width: int, where: str = "segmentation"
) -> Optional[dict]:
    """Compressed RLE (``counts`` str) of one frame's segmentation, ``None`` when absent.

    Args:
        segmentation: ``None``/empty (absent), an RLE dict (compressed or not; its size
            must be ``[height, width]``) or polygons.
    Raises:
        RLEError: naming ``where``, for any malformed segmentation.
    """
    if segmentation is None or (isinstance(segmentation, (list, tuple)) and not segmentation):
        return None
    if isinstance(segmentation, dict):
        validate_rle(segmentation, height, width, where)
        return with_str_counts(segmentation)
    if isinstance(segmentation, (list, tuple)):
        polygons = validate_polygons(segmentation, where)
        if not polygons:
            return None
        return with_str_counts(mask_util.merge(mask_util.frPyObjects(polygons, height, width)))
    raise RLEError(
        f"{where}: a segmentation must be an RLE dict, polygons or null, "
        f"got {type(segmentation).__name__}"
    )


def segmentation_to_mask(
    segmentation: Any, height: int, width: int, where: str = "segmentation"
) -> np.ndarray:
    """bool (height, width) mask of one frame's segmentation (all False when absent)."""
    rle = segmentation_to_rle(segmentation, height, width, where)
    if rle is None:
        return np.zeros((height, width), dtype=bool)
    return mask_util.decode(rle).astype(bool)


def rle_areas(rles: Sequence[Optional[dict]]) -> np.ndarray:
    """(T,) int64 pixel counts of (validated) RLEs, 0 where ``None``."""
    present = [i for i, rle in enumerate(rles) if rle is not None]
    areas = np.zeros(len(rles), dtype=np.int64)
    if present:
        areas[present] = mask_util.area([rles[i] for i in present])
    return areas


def validate_rles(rles: Sequence[Any], height: int, width: int, wheres: Sequence[str]) -> None:
    """:func:`validate_rle` of many RLEs of one ``height`` x ``width`` (e.g. every mask of a
    video) at once: the run lengths of all compressed ``counts`` are decoded in one
    vectorised pass, and those of all uncompressed ``counts`` summed in one, instead of a
    dozen small numpy calls per RLE (about 100 us each; a YouTube-VIS train file has
    ~10^5 masks). Same checks, same errors: where RLE ``i`` is bad, :func:`validate_rle`
    raises its own error for it, naming ``wheres[i]`` (the first bad RLE in order, except
    that a bad character or truncated string is found before a wrong total).

    Raises:
        RLEError: as :func:`validate_rle` does for a bad RLE.
    """
    expected = [int(height), int(width)]
    compressed, uncompressed, one_by_one = [], [], []
    for i, rle in enumerate(rles):
        size = rle.get("size") if isinstance(rle, dict) else None
        if isinstance(size, list) and list(map(type, size)) == [int, int] and size == expected:
            counts = rle.get("counts")
            if isinstance(counts, (str, bytes)):
                compressed.append(i)
                continue
            if isinstance(counts, list):
                uncompressed.append(i)
                continue
        one_by_one.append(i)
    totals: dict = {}
    bad = len(rles)  # the first bad RLE of the batches
    if compressed:
        bad = min(bad, _batch_compressed_totals(rles, compressed, totals))
    if uncompressed:
        bad = min(bad, _batch_uncompressed_totals(rles, uncompressed, totals))
    area = expected[0] * expected[1]
    bad = min([bad] + [i for i, total in totals.items() if total != area])
    for i in sorted(one_by_one + ([bad] if bad < len(rles) else [])):
        validate_rle(rles[i], height, width, wheres[i])  # raises its own error when bad
        if i == bad:  # not reached: the batch and the one-by-one checks agree
            raise RLEError(f"{wheres[i]}: malformed RLE")


def _batch_uncompressed_totals(rles, indices: List[int], totals: dict) -> int:
    """Pixel totals of uncompressed RLEs into ``totals``; returns the first index that
    needs the one-by-one check (non-int or negative counts), else ``len(rles)``."""
    lists = [rles[i]["counts"] for i in indices]
    flat = [c for counts in lists for c in counts]
    if not set(map(type, flat)) <= {int}:
        return next(i for i, c in zip(indices, lists) if not set(map(type, c)) <= {int})
    runs = np.asarray(flat, dtype=np.int64)
    lengths = np.array([len(c) for c in lists])
    owner = np.repeat(np.arange(len(lists)), lengths)
    if (runs < 0).any():
        return indices[int(owner[np.argmax(runs < 0)])]
    sums = np.bincount(owner, weights=runs, minlength=len(lists))
    totals.update((i, int(s)) for i, s in zip(indices, sums))
    return len(rles)


def _batch_compressed_totals(rles, indices: List[int], totals: dict) -> int:
    """Pixel totals of compressed RLEs into ``totals``, decoded as :func:`decode_counts`
    does but for all strings at once; returns the first index that needs the one-by-one
    check (bad character, truncated, too long or negative run), else ``len(rles)``."""
    strings = []
    for i in indices:
        counts = rles[i]["counts"]
        if isinstance(counts, str):
            if not counts.isascii():
                return i
            counts = counts.encode("ascii")
        strings.append(counts)
    lengths = np.array([len(s) for s in strings], dtype=np.int64)
    char_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    codes = np.frombuffer(b"".join(strings), dtype=np.uint8) - np.uint8(_CHAR_OFFSET)
    flagged = np.zeros(len(strings), dtype=bool)
    nonempty = lengths > 0
    if codes.size:
        owner_of_char = np.repeat(np.arange(len(strings)), lengths)
        flagged[owner_of_char[codes > 63]] = True
        last = codes[char_start[nonempty] + lengths[nonempty] - 1]
        flagged[np.flatnonzero(nonempty)[(last & _MORE_BIT) != 0]] = True
    if flagged.any():  # the decoding below assumes a well-formed string
        return indices[int(np.argmax(flagged))]
    sums = np.zeros(len(strings), dtype=np.int64)
    if codes.size:
        ends = np.flatnonzero((codes & _MORE_BIT) == 0)
        starts = np.concatenate([[0], ends[:-1] + 1])
        groups = ends - starts + 1
        owner = np.searchsorted(char_start, starts, side="right") - 1
        flagged[owner[groups > _MAX_GROUPS]] = True
        position = np.arange(codes.size) - np.repeat(starts, groups)
        shift = np.minimum(5 * position, 62)  # a too long run is flagged above anyway
        values = np.add.reduceat((codes & _VALUE_BITS).astype(np.int64) << shift, starts)
        negative = (codes[ends] & _SIGN_BIT) != 0
        values[negative] -= np.left_shift(1, np.minimum(5 * groups[negative], 62))
        runs = _undo_differences(values, owner)
        flagged[owner[runs < 0]] = True
        sums = np.bincount(owner, weights=runs, minlength=len(strings)).astype(np.int64)
    if flagged.any():
        return indices[int(np.argmax(flagged))]
    totals.update((i, int(s)) for i, s in zip(indices, sums))
    return len(rles)


def _undo_differences(values: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Run lengths from COCO's values: within each RLE (``owner``, sorted), from the fourth
    run on a value is the difference to the run two before; so odd runs are the cumulative
    sum of the odd values, and even runs from the third on that of the even values."""
    first_run = np.searchsorted(owner, owner, side="left")
    local = np.arange(values.size) - first_run
    runs = values.copy()
    for mask in ((local % 2) == 1, ((local % 2) == 0) & (local >= 2)):
        cumulative = np.concatenate([[0], np.cumsum(np.where(mask, values, 0))])
        runs[mask] = (cumulative[1:] - cumulative[first_run])[mask]
    return runs
