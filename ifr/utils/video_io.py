"""Reading videos (a video file, a folder of frames, or a glob of frames) and writing mp4s.

Frames are uint8 (H, W, 3) numpy arrays in BGR order, as OpenCV reads and writes them.
An input that does not exist raises FileNotFoundError, one that cannot be read
VideoInputError; both name the path.
"""

import glob
import os
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import UserInputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Frame rate of a video given as frames (a folder or a glob), which carries none.
DEFAULT_FPS = 24.0


class VideoInputError(UserInputError):
    """A video or frame that cannot be read, or frames of different sizes."""


def is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def list_frame_files(path: str) -> List[str]:
    """Sorted image files of a folder or of a glob pattern; error naming ``path`` if none."""
    if is_glob(path):
        files = sorted(glob.glob(path))
    elif os.path.isdir(path):
        files = sorted(
            os.path.join(path, name)
            for name in os.listdir(path)
            if name.lower().endswith(IMAGE_EXTENSIONS)
        )
    elif not os.path.exists(path):
        raise FileNotFoundError(f"input {path!r} does not exist")
    else:
        raise FileNotFoundError(f"{path!r} is neither a folder nor a glob pattern of frames")
    if not files:
        raise FileNotFoundError(f"no frames found at {path!r} (extensions {IMAGE_EXTENSIONS})")
    return files


def read_frame_files(files: Sequence[str]) -> List[np.ndarray]:
    """Read image files (BGR uint8); all frames must have the same size."""
    frames = []
    for file in files:
        frame = cv2.imread(file, cv2.IMREAD_COLOR)
        if frame is None:
            raise VideoInputError(f"cannot read frame {file!r} (not an image?)")
        if frames and frame.shape != frames[0].shape:
            raise VideoInputError(
                f"frame {file!r} is {frame.shape[:2]}, the first frame {frames[0].shape[:2]}"
            )
        frames.append(frame)
    return frames


def read_video_file(path: str) -> Tuple[List[np.ndarray], float]:
    """Every frame of a video file (BGR uint8) and its frame rate."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video {path!r} does not exist")
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise VideoInputError(f"cannot open video {path!r} (not a video OpenCV reads?)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise VideoInputError(f"video {path!r} has no readable frame")
    return frames, (fps if fps and fps > 0 else DEFAULT_FPS)


def video_input_files(path: str) -> List[str]:
    """The files a video input reads: ``[path]`` for a video file, the sorted frame files
    of a folder or a glob. FileNotFoundError naming ``path`` when there are none."""
    if not is_glob(path) and os.path.isfile(path):
        return [path]
    return list_frame_files(path)


def read_video(path: str) -> Tuple[List[np.ndarray], Optional[float]]:
    """Frames (BGR uint8 (H, W, 3)) of a video file, a folder of frames or a glob of
    frames, and the frame rate (``None`` for frames, which carry none)."""
    if not is_glob(path) and os.path.isfile(path):
        return read_video_file(path)
    return read_frame_files(list_frame_files(path)), None


def write_video(path: str, frames: Sequence[np.ndarray], fps: float) -> None:
    """Write BGR uint8 frames to an mp4 (codec ``mp4v``), atomically: a temporary file in
    the same folder is renamed to ``path`` once complete."""
    if not frames:
        raise ValueError(f"no frames to write to {path!r}")
    if fps <= 0:
        raise ValueError(f"frame rate must be positive to write {path!r}, got {fps}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    height, width = frames[0].shape[:2]
    tmp_path = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp.mp4")
    writer = cv2.VideoWriter(tmp_path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    try:
        if not writer.isOpened():
            raise OSError(f"cannot open a video writer for {path!r}")
        for frame in frames:
            if frame.shape[:2] != (height, width):
                raise ValueError(
                    f"frames written to {path!r} differ in size: {frame.shape[:2]} vs "
                    f"{(height, width)}"
                )
            writer.write(np.ascontiguousarray(frame))
        writer.release()
        os.replace(tmp_path, path)
    finally:
        writer.release()
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def write_image(path: str, image: np.ndarray) -> None:
    """Write one BGR image atomically (temporary file in the same folder, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(os.path.basename(path))
    tmp_path = os.path.join(folder, f".{stem}.{os.getpid()}.tmp{ext}")
    if not cv2.imwrite(tmp_path, image):
        raise OSError(f"cannot write image {path!r}")
    os.replace(tmp_path, path)
