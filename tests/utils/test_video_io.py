import os

import cv2
import numpy as np
import pytest

from ifr.utils.video_io import (
    DEFAULT_FPS,
    VideoInputError,
    list_frame_files,
    read_video,
    video_input_files,
    write_image,
    write_video,
)


def frames_of(num_frames, size=(32, 48)):
    return [np.full((*size, 3), 50 * t, np.uint8) for t in range(num_frames)]


def test_mp4_round_trip_keeps_count_rate_and_size(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(str(path), frames_of(5), fps=7.0)
    frames, fps = read_video(str(path))
    assert len(frames) == 5 and fps == 7.0 and frames[0].shape == (32, 48, 3)
    # mp4v is lossy; flat grey frames survive within a few levels.
    assert abs(float(frames[3].mean()) - 150) < 5
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_frame_folder_and_glob_are_read_in_name_order(tmp_path):
    for t in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"{t:03d}.png"), np.full((8, 8, 3), 10 * t, np.uint8))
    (tmp_path / "notes.txt").write_text("not a frame")
    frames, fps = read_video(str(tmp_path))
    assert fps is None and [int(f[0, 0, 0]) for f in frames] == [0, 10, 20]
    assert [os.path.basename(f) for f in list_frame_files(str(tmp_path / "*.png"))] == [
        "000.png",
        "001.png",
        "002.png",
    ]


def test_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="empty_dir"):
        read_video(str(tmp_path / "empty_dir" / "*.jpg"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileNotFoundError, match="empty_dir"):
        read_video(str(tmp_path / "empty_dir"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(VideoInputError, match="broken.mp4"):
        read_video(str(broken))
    bad_frame = tmp_path / "frames"
    bad_frame.mkdir()
    (bad_frame / "000.jpg").write_bytes(b"not an image")
    with pytest.raises(VideoInputError, match="000.jpg"):
        read_video(str(bad_frame))
    with pytest.raises(FileNotFoundError, match="input '.*missing.mp4' does not exist"):
        read_video(str(tmp_path / "missing.mp4"))


def test_input_files_of_a_video_a_folder_and_a_glob(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    assert video_input_files(str(video)) == [str(video)]
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    expected = [str(tmp_path / "a.jpg"), str(tmp_path / "b.png")]
    assert video_input_files(str(tmp_path)) == expected
    assert video_input_files(str(tmp_path / "*.png")) == expected[1:]


def test_frames_of_different_sizes_are_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(VideoInputError, match="b.png"):
        read_video(str(tmp_path))
    with pytest.raises(ValueError, match="out.mp4"):
        write_video(
            str(tmp_path / "out.mp4"),
            [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)],
            DEFAULT_FPS,
        )
    assert not (tmp_path / "out.mp4").exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]


def test_write_image_is_readable(tmp_path):
    path = tmp_path / "sub" / "f.jpg"
    write_image(str(path), np.full((8, 8, 3), 200, np.uint8))
    assert cv2.imread(str(path)).shape == (8, 8, 3)
