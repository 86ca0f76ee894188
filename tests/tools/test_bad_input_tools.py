"""Bad input at the command line of the tools: one ``error:`` line naming what is wrong, a
non-zero exit, nothing overwritten. The tools run in-process through the
boundary they share (``ifr.engine.cli.run_tool``), on the tiny configs."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from ifr.engine.cli import run_tool
from ifr.utils.video_io import write_image, write_video

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TINY = os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml")
DEMO_CFG = os.path.join(HERE, "ifr_r18_tiny_random.yaml")

pytestmark = pytest.mark.usefixtures("restore_loggers")  # the tools run in-process


@pytest.fixture(scope="module")
def files(tmp_path_factory, make_cfg):
    """Weight files of every kind of wrong, and a video of 3 frames (file and folder)."""
    folder = tmp_path_factory.mktemp("bad_input")
    path = lambda name: str(folder / name)  # noqa: E731
    with open(path("text.pth"), "w") as f:
        f.write("these are not weights\n")
    torch.save({"model": {"w": torch.ones(2)}}, path("full.pth"))
    with open(path("full.pth"), "rb") as f:
        data = f.read()
    with open(path("truncated.pth"), "wb") as f:
        f.write(data[: len(data) // 2])
    for name, content in [("list.pkl", [1, 2]), ("str.pkl", "abc"), ("int.pkl", 7)]:
        with open(path(name), "wb") as f:
            pickle.dump(content, f, protocol=2)
    torch.save({"model": {"unrelated.weight": torch.zeros(3, 3)}}, path("unrelated.pth"))
    other_classes = build_model(make_cfg(TINY, {"MODEL.VIS.NUM_CLASSES": 5}))
    torch.save({"model": other_classes.state_dict()}, path("five_classes.pth"))
    frames = [np.full((32, 48, 3), 40 * t, np.uint8) for t in range(3)]
    write_video(path("in.mp4"), frames, 10.0)
    for t, frame in enumerate(frames):
        write_image(path(f"frames/{t:03d}.png"), frame)
    os.makedirs(path("folder.mp4"))
    _write_ytvis_json(path("unknown_video.json"), annotation_video_id=9)
    _write_ytvis_json(path("no_categories.json"), categories=[])
    return path


def _write_ytvis_json(path, annotation_video_id=1, categories=None):
    """A 2-video YouTube-VIS train file with one annotation; its faults by argument."""
    videos = [
        {"id": i, "width": 4, "height": 4, "length": 1, "file_names": [f"v{i}/0.jpg"]}
        for i in (1, 2)
    ]
    annotation = {
        "id": 1,
        "video_id": annotation_video_id,
        "category_id": 1,
        "iscrowd": 0,
        "segmentations": [None],
        "bboxes": [None],
        "areas": [None],
    }
    categories = [{"id": 1, "name": "cat"}] if categories is None else categories
    with open(path, "w") as f:
        json.dump({"videos": videos, "annotations": [annotation], "categories": categories}, f)


def _eval(*opts):
    return ["--config-file", TINY, "--eval-only", *opts]


def _demo(input_path, output_path, *opts):
    return ["--config-file", DEMO_CFG, "--input", input_path, "--output", output_path, *opts]


# (id, tool, argv with {f:name} placeholders for files(name), text expected in the line)
CASES = [
    (
        "unknown-key",
        "train_net",
        ["--config-file", TINY, "MODEL.IFR.LAMBDA_X", "1"],
        "MODEL.IFR.LAMBDA_X does not exist in the config; did you mean MODEL.IFR.LAMBDA_E",
    ),
    (
        "odd-overrides",
        "train_net",
        ["--config-file", TINY, "SOLVER.MAX_ITER"],
        "odd number: ['SOLVER.MAX_ITER']; give every KEY a VALUE",
    ),
    (
        "flag-after-overrides",
        "train_net",
        ["--config-file", TINY, "SOLVER.MAX_ITER", "5", "--resume"],
        "--resume comes after the KEY VALUE overrides, where it is read as an override: put "
        "--resume before the overrides",
    ),
    (
        "wrong-type",
        "train_net",
        ["--config-file", TINY, "SOLVER.MAX_ITER", "many"],
        "SOLVER.MAX_ITER=many: not a valid value",
    ),
    (
        "missing-config",
        "train_net",
        ["--config-file", "nope.yaml"],
        "--config-file 'nope.yaml' does not exist",
    ),
    (
        "unknown-flag",
        "train_net",
        ["--config-file", TINY, "--bogus"],
        "unrecognized arguments: --bogus",
    ),
    (
        "unregistered-dataset",
        "train_net",
        _eval("DATASETS.TEST", "('nope',)"),
        "dataset 'nope' (DATASETS.TEST) is not registered",
    ),
    (
        "unregistered-tune-dataset",
        "train_net",
        _eval("TEST.TRACKING_TUNE_DATASET", "nope"),
        "dataset 'nope' (TEST.TRACKING_TUNE_DATASET) is not registered",
    ),
    (
        "missing-weights",
        "train_net",
        _eval("MODEL.WEIGHTS", "{f:absent.pth}"),
        "absent.pth' does not exist",
    ),
    (
        "text-as-pth",
        "train_net",
        _eval("MODEL.WEIGHTS", "{f:text.pth}"),
        "text.pth: not a readable torch checkpoint",
    ),
    (
        "truncated-pth",
        "train_net",
        _eval("MODEL.WEIGHTS", "{f:truncated.pth}"),
        "truncated.pth: not a readable torch checkpoint",
    ),
    ("pkl-list", "train_net", _eval("MODEL.WEIGHTS", "{f:list.pkl}"), "list.pkl: holds a list"),
    ("pkl-str", "train_net", _eval("MODEL.WEIGHTS", "{f:str.pkl}"), "str.pkl: holds a str"),
    ("pkl-int", "train_net", _eval("MODEL.WEIGHTS", "{f:int.pkl}"), "int.pkl: holds a int"),
    (
        "unrelated-weights",
        "train_net",
        _eval("MODEL.WEIGHTS", "{f:unrelated.pth}"),
        "unrelated.pth: 250 of 250 model tensors are not in it",
    ),
    (
        "other-num-classes",
        "train_net",
        _eval("MODEL.WEIGHTS", "{f:five_classes.pth}"),
        "transformer_decoder.class_embed.bias (5,) in the file, (3,) in the model",
    ),
    # --eval-only does not check DATASETS.TRAIN: the error is the weights', not 'nope'.
    (
        "eval-ignores-train-datasets",
        "train_net",
        _eval("DATASETS.TRAIN", "('nope',)", "MODEL.WEIGHTS", "{f:unrelated.pth}"),
        "unrelated.pth: 250 of 250",
    ),
    (
        "demo-output-is-input",
        "demo",
        _demo("{f:in.mp4}", "{f:in.mp4}"),
        "in.mp4' is the input video and would be overwritten",
    ),
    (
        "demo-frames-dir-is-input",
        "demo",
        _demo("{f:frames}", "{f:out.mp4}", "--frames-dir", "{f:frames}"),
        "holds the input (000.png ...): the drawn frames would overwrite",
    ),
    (
        "demo-glob-frames-dir",
        "demo",
        _demo("{f:frames}/*.png", "{f:out.mp4}", "--frames-dir", "{f:frames}/."),
        "holds the input",
    ),
    (
        "demo-gif",
        "demo",
        _demo("{f:in.mp4}", "{f:out.gif}"),
        "the demo writes MP4 video",
    ),
    (
        "demo-output-folder",
        "demo",
        _demo("{f:in.mp4}", "{f:folder.mp4}"),
        "folder.mp4' is a folder",
    ),
    (
        "demo-fps-0",
        "demo",
        _demo("{f:frames}", "{f:out.mp4}", "--fps", "0"),
        "--fps: must be positive, got 0",
    ),
    (
        "demo-confidence",
        "demo",
        _demo("{f:in.mp4}", "{f:out.mp4}", "--confidence", "5"),
        "--confidence: must be in [0, 1]",
    ),
    (
        "demo-missing-input",
        "demo",
        _demo("{f:missing.mp4}", "{f:out.mp4}"),
        "input '{f:missing.mp4}' does not exist",
    ),
    (
        "demo-text-weights",
        "demo",
        _demo("{f:in.mp4}", "{f:out.mp4}", "MODEL.WEIGHTS", "{f:text.pth}"),
        "text.pth: not a readable torch checkpoint",
    ),
    (
        "demo-unrelated-weights",
        "demo",
        _demo("{f:in.mp4}", "{f:out.mp4}", "MODEL.WEIGHTS", "{f:unrelated.pth}"),
        "model tensors are not in it or have another shape",
    ),
    (
        "demo-class-count",
        "demo",
        _demo("{f:in.mp4}", "{f:out.mp4}", "--classes", "dog,cat"),
        "--classes 'dog,cat' gives 2 class names but the model has MODEL.VIS.NUM_CLASSES 3",
    ),
    (
        "max-iter-0",
        "train_net",
        ["--config-file", TINY, "SOLVER.MAX_ITER", "0"],
        "SOLVER.MAX_ITER must be at least 1, got 0",
    ),
    (
        "batch-0",
        "train_net",
        ["--config-file", TINY, "SOLVER.IMS_PER_BATCH", "0"],
        "SOLVER.IMS_PER_BATCH must be at least 1, got 0",
    ),
    (
        "num-gpus-0",
        "train_net",
        ["--config-file", TINY, "--num-gpus", "0"],
        "--num-gpus must be at least 1, got 0",
    ),
    (
        "output-dir-is-a-file",
        "train_net",
        ["--config-file", TINY, "OUTPUT_DIR", "{f:text.pth}"],
        "OUTPUT_DIR '{f:text.pth}' is a file, not a folder",
    ),
    (
        "split-out-dir-is-a-file",
        "split_ytvis",
        ["{f:unknown_video.json}", "--out-dir", "{f:text.pth}/sub"],
        "'{f:text.pth}' is a file, not a folder",
    ),
    (
        "demo-classes-unregistered-dataset",
        "demo",
        _demo("{f:in.mp4}", "{f:out.mp4}", "--classes", "ytvis_nope"),
        "'ytvis_nope' is not a registered dataset either",
    ),
    (
        "split-missing-file",
        "split_ytvis",
        ["{f:absent.json}"],
        "absent.json: annotation file not found",
    ),
    (
        "split-not-json",
        "split_ytvis",
        ["{f:text.pth}", "--out-dir", "{f:split}"],
        "text.pth: annotation file is not valid JSON",
    ),
    (
        "split-annotation-of-unknown-video",
        "split_ytvis",
        ["{f:unknown_video.json}", "--num-val", "1", "--out-dir", "{f:split}"],
        "annotation refers to a video not in 'videos'",
    ),
    (
        "split-no-categories",
        "split_ytvis",
        ["{f:no_categories.json}", "--num-val", "1", "--out-dir", "{f:split}"],
        "must be a non-empty list",
    ),
]


def _fill(text, files):
    while "{f:" in text:
        start = text.index("{f:")
        end = text.index("}", start)
        text = text[:start] + files(text[start + 3 : end]) + text[end + 1 :]
    return text


def _snapshot(files):
    names = ["in.mp4"] + [f"frames/{t:03d}.png" for t in range(3)]
    snapshot = {}
    for name in names:
        with open(files(name), "rb") as f:
            snapshot[name] = f.read()
    return snapshot


@pytest.mark.parametrize("tool, argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_nothing_is_overwritten(
    tool, argv, expected, files, load_tool, capsys
):
    torch.set_num_threads(1)
    before = _snapshot(files)
    status = run_tool(load_tool(tool).main, [_fill(arg, files) for arg in argv])
    err_lines = [line for line in capsys.readouterr().err.splitlines() if "error: " in line]
    assert status != 0
    assert len(err_lines) == 1, err_lines
    assert _fill(expected, files) in err_lines[0]
    assert _snapshot(files) == before  # the inputs' bytes
    assert not os.path.exists(files("out.mp4")) and not os.path.exists(files("out.gif"))


def test_traceback_flag_shows_the_exception(files, load_tool):
    from ifr.engine.defaults import ConfigError

    with pytest.raises(ConfigError, match="LAMBDA_X"):
        run_tool(
            load_tool("train_net").main,
            ["--traceback", "--config-file", TINY, "MODEL.IFR.LAMBDA_X", "1"],
        )


def test_a_bug_keeps_its_traceback():
    def buggy(argv):
        raise ZeroDivisionError("a bug, not bad input")

    with pytest.raises(ZeroDivisionError):
        run_tool(buggy, [])


def test_failed_start_leaves_a_finished_runs_config_and_names_the_checkpoint(
    tmp_path, load_tool, capsys
):
    """--resume on a truncated checkpoint: one line naming it; the folder's config.yaml
    still describes the finished run."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("the finished run's config\n")
    (run / "model_0000009.pth").write_bytes(b"PK\x03\x04 truncated")
    (run / "last_checkpoint").write_text("model_0000009.pth")
    status = run_tool(
        load_tool("train_net").main,
        [
            "--config-file",
            TINY,
            "--resume",
            "SOLVER.MAX_ITER",
            "1",
            "DATALOADER.NUM_WORKERS",
            "0",
            "MODEL.VIS.NUM_QUERIES",
            "4",
            "OUTPUT_DIR",
            str(run),
        ],
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert status == 1
    assert len(err) == 1 and err[0].startswith(
        f"error: {run / 'model_0000009.pth'}: not a readable torch checkpoint (not written by "
        "torch.save, truncated or empty): RuntimeError: PytorchStreamReader failed"
    )
    assert (run / "config.yaml").read_text() == "the finished run's config\n"


@pytest.mark.slow
def test_command_line_exit_status_and_single_line(tmp_path):
    """The same boundary when run as a program: stderr's last line, exit status 1."""
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "train_net.py"),
            "--config-file",
            TINY,
            "SOLVER.MAX_ITER",
            "5",
            "--eval-only",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: --eval-only comes after the KEY VALUE overrides")
    )
    assert "Traceback" not in result.stderr


def test_a_cuda_device_without_cuda_is_refused_naming_the_key(monkeypatch, make_cfg):
    from ifr.engine.defaults import ConfigError, check_processes_and_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="MODEL.DEVICE is 'cuda:1' but no CUDA device"):
        check_processes_and_device(make_cfg(TINY, {"MODEL.DEVICE": "cuda:1"}), 1, 1)
    check_processes_and_device(make_cfg(TINY, {"MODEL.DEVICE": "cpu"}), 1, 1)


def test_sweep_and_compare_refuse_an_output_folder_that_is_a_file(tmp_path, load_tool, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    sweep = ["--config-file", TINY, "--seeds", "1", "--output-dir", str(afile), "--dry-run"]
    assert load_tool("sweep").main(sweep) == 1
    assert f"--output-dir '{afile}' is a file, not a folder" in capsys.readouterr().err
    compare = ["--configs", TINY, TINY.replace("ifr_tiny", "m2f_vis_tiny")]
    assert load_tool("compare").main([*compare, "--output-dir", str(afile), "--dry-run"]) == 1
    assert f"--output-dir '{afile}' is a file, not a folder" in capsys.readouterr().err


def test_resume_whose_last_checkpoint_is_gone_names_it(tmp_path, load_tool, capsys):
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth")
    argv = ["--config-file", TINY, "--resume", "OUTPUT_DIR", str(tmp_path)]
    assert run_tool(load_tool("train_net").main, argv) == 1
    err = capsys.readouterr().err
    assert "last_checkpoint names 'model_0000099.pth', which is not in" in err
    assert "MODEL.WEIGHTS" not in err
