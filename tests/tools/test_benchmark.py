import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml")


def test_lengths_do_not_swallow_the_config_overrides(load_tool):
    args = load_tool("benchmark").parse_args(
        ["--config-file", TINY, "--lengths", "4,8", "MODEL.VIS.NUM_QUERIES", "5"]
    )
    assert args.lengths == [4, 8]
    assert args.opts == ["MODEL.VIS.NUM_QUERIES", "5"]


def test_prints_speed_and_memory_tables(capsys, load_tool):
    load_tool("benchmark").main(
        [
            "--config-file",
            TINY,
            "--size",
            "64",
            "96",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--infer-frames",
            "3",
            "--lengths",
            "2,4",
            "MODEL.VIS.NUM_QUERIES",
            "5",
            "MODEL.VIS.TRAIN_NUM_POINTS",
            "64",
            "SOLVER.IMS_PER_BATCH",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert "train it/s (batch 1 x 2 frames)" in out
    assert "inference frames/s (3-frame video)" in out
    rows = [
        line
        for line in out.splitlines()
        if line.startswith("|") and line.split("|")[1].strip() in ("2", "4")
    ]
    assert len(rows) == 2


def test_original_size_renders_masks_at_the_video_size(load_tool):
    """--original-size: the model sees --size frames, masks come at the original size."""
    from ifr.inference.memory import random_video_input

    args = load_tool("benchmark").parse_args(
        ["--config-file", TINY, "--size", "32", "48", "--original-size", "300", "450"]
    )
    assert args.original_size == [300, 450]
    video = random_video_input(2, (32, 48), original_size=(300, 450))
    assert video["image"][0].shape == (3, 32, 48)
    assert (video["height"], video["width"]) == (300, 450)
