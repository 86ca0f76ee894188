import os

import cv2
import numpy as np
import pytest
import torch

from ifr.utils.video_io import write_video

HERE = os.path.dirname(__file__)
CONFIG = os.path.join(HERE, "ifr_r18_tiny_random.yaml")


def synthetic_video(path, num_frames=4, fps=12.0, size=(64, 96)):
    """A white square moving right over a dark background."""
    frames = []
    for t in range(num_frames):
        frame = np.full((*size, 3), 30, np.uint8)
        frame[20:40, 10 + 8 * t : 30 + 8 * t] = 255
        frames.append(frame)
    write_video(str(path), frames, fps)
    return frames


def video_properties(path):
    capture = cv2.VideoCapture(str(path))
    try:
        count = 0
        while capture.read()[0]:
            count += 1
        return (
            count,
            capture.get(cv2.CAP_PROP_FPS),
            (
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            ),
        )
    finally:
        capture.release()


@pytest.mark.slow
def test_demo_writes_a_playable_video_at_the_source_rate(tmp_path, load_tool):
    torch.set_num_threads(1)
    source = tmp_path / "in.mp4"
    synthetic_video(source)
    out, frames_dir = tmp_path / "out.mp4", tmp_path / "frames"
    output = load_tool("demo").main(
        [
            "--config-file",
            CONFIG,
            "--input",
            str(source),
            "--output",
            str(out),
            "--frames-dir",
            str(frames_dir),
            "--confidence",
            "0.0",
            "MODEL.VIS.TEST.TOP_K",
            "2",
        ]
    )
    assert len(output["pred_scores"]) == 2 and output["image_size"] == (64, 96)
    assert video_properties(out) == (4, 12.0, (64, 96))
    assert sorted(os.listdir(frames_dir)) == [f"{t:05d}.jpg" for t in range(4)]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary files left


@pytest.mark.slow
def test_demo_on_a_frame_folder_uses_the_given_fps(tmp_path, load_tool):
    torch.set_num_threads(1)
    frames_in = tmp_path / "frames_in"
    frames_in.mkdir()
    for t in range(3):
        cv2.imwrite(str(frames_in / f"{t:03d}.png"), np.full((64, 80, 3), 40 * t, np.uint8))
    out = tmp_path / "out.mp4"
    load_tool("demo").main(
        ["--config-file", CONFIG, "--input", str(frames_in), "--output", str(out), "--fps", "5"]
    )
    assert video_properties(out) == (3, 5.0, (64, 80))


def test_demo_names_a_missing_input(tmp_path, load_tool):
    missing = str(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        load_tool("demo").main(
            ["--config-file", CONFIG, "--input", missing, "--output", str(tmp_path / "o.mp4")]
        )


@pytest.mark.slow
def test_demo_labels_with_the_class_names_saved_in_the_checkpoint(
    tmp_path, load_tool, make_cfg, monkeypatch
):
    """A model trained on other classes than the config's test dataset keeps its names."""
    from detectron2.modeling import build_model

    import ifr.engine.demo as demo_engine

    torch.set_num_threads(1)
    model = build_model(make_cfg(CONFIG))
    weights = tmp_path / "custom.pth"
    colors = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    torch.save(
        {
            "model": model.state_dict(),
            "class_names": ["dog", "cat", "bird"],
            "class_colors": colors,
        },
        weights,
    )
    seen = []
    draw = demo_engine.draw_video
    monkeypatch.setattr(demo_engine, "draw_video", lambda *a: seen.append(a[3:5]) or draw(*a))
    source = tmp_path / "in.mp4"
    synthetic_video(source, num_frames=2)
    argv = [
        "--config-file",
        CONFIG,
        "--input",
        str(source),
        "--output",
        str(tmp_path / "o.mp4"),
        "MODEL.WEIGHTS",
        str(weights),
        "DATASETS.TEST",
        "('ytvis_tiny_val',)",
    ]
    load_tool("demo").main(argv)
    load_tool("demo").main(argv[:-4] + ["--classes", "a,b,c"] + argv[-4:])
    load_tool("demo").main(argv[:-4] + ["--color-by", "class"] + argv[-4:])
    assert seen == [
        (["dog", "cat", "bird"], None),
        (["a", "b", "c"], None),
        (["dog", "cat", "bird"], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]),
    ]
