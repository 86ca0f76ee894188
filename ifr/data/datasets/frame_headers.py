"""Check every frame's size against its json before training: read each file's header (the
size only, no decoding), in parallel, with a progress line.

A frame whose file is empty, not an image, or whose size is not the json's ``height`` x
``width`` (swapped included) would otherwise fail deep inside a data-loader worker when its
clip happens to be sampled, possibly hours into training. Reading a header costs a file
open and a few KB; 100,000 frames take seconds with a thread pool. Switched off by
``DATALOADER.CHECK_FRAME_HEADERS False`` for very large sets on slow storage.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

from PIL import Image

from .ytvis import YTVISFormatError

__all__ = ["check_frame_headers", "read_frame_size"]

logger = logging.getLogger(__name__)

# EXIF orientations that turn the image by 90 degrees (detectron2's read_image applies them).
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def read_frame_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image file as Detectron2's ``read_image`` will return it (EXIF
    rotation applied), from its header only.

    Raises:
        OSError: the file is missing, unreadable or not an image (PIL's
            ``UnidentifiedImageError`` is an ``OSError``).
    """
    with Image.open(path) as image:
        width, height = image.size
        # Only when the EXIF block was read with the header: PIL's getexif() decodes a PNG
        # whose EXIF chunk comes after the pixels.
        if "exif" in image.info:
            if image.getexif().get(_EXIF_ORIENTATION, 1) in _TRANSPOSING_ORIENTATIONS:
                width, height = height, width
    return height, width


def _video_problem(video: Dict) -> Optional[str]:
    """The first problem of a video's frames, or ``None``."""
    expected = (video["height"], video["width"])
    for t, path in enumerate(video["file_names"]):
        try:
            size = read_frame_size(path)
        except OSError as e:
            reason = str(e).replace(str(path), "").strip(" :'\"") or type(e).__name__
            return f"frame {t} ({path}) cannot be read as an image: {reason}"
        if size != expected:
            return (
                f"frame {t} ({path}) is {size[0]}x{size[1]} (height x width), the json says "
                f"{expected[0]}x{expected[1]}"
            )
    return None


def check_frame_headers(
    dataset_dicts: List[Dict], json_file: str, num_threads: int = 16, log_period_s: float = 10.0
) -> None:
    """Check that every frame of ``dataset_dicts`` (``file_names``, ``height``, ``width``,
    ``video_id`` each) can be opened as an image of the video's size.

    Headers are read by ``num_threads`` threads (file I/O releases the GIL); a progress line
    is logged every ``log_period_s`` seconds and at the end.

    Raises:
        YTVISFormatError: naming ``json_file``, the video id, the frame index and path, for
            the first bad frame in video order.
    """
    num_frames = sum(len(v["file_names"]) for v in dataset_dicts)
    logger.info(f"Checking the headers of {num_frames} frames ({json_file}) ...")
    start = last_log = time.perf_counter()
    checked = 0
    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        # map() returns results in video order, so the error reported is deterministic.
        for video, problem in zip(dataset_dicts, pool.map(_video_problem, dataset_dicts)):
            if problem is not None:
                pool.shutdown(wait=False, cancel_futures=True)
                raise YTVISFormatError(json_file, problem, video["video_id"], "file_names")
            checked += len(video["file_names"])
            if time.perf_counter() - last_log > log_period_s:
                last_log = time.perf_counter()
                logger.info(f"  {checked}/{num_frames} frame headers checked")
    logger.info(
        f"Checked {num_frames} frame headers of {json_file} in "
        f"{time.perf_counter() - start:.1f} s"
    )
