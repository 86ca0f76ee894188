"""End to end through tools/train_net.py on the tiny dataset (few iterations, CPU)."""

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import torch

from ifr.data.tiny import TINY_SPLITS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")
TINY = os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml")
FAST = [
    "MODEL.VIS.NUM_QUERIES",
    "5",
    "MODEL.VIS.TRAIN_NUM_POINTS",
    "64",
    "SOLVER.IMS_PER_BATCH",
    "2",
]


def run_train_net(*args, env=None, check=True):
    result = subprocess.run(
        [sys.executable, TRAIN_NET, "--config-file", TINY, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"train_net failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.mark.slow
def test_two_process_training_then_resume_then_eval_only(tmp_path):
    out = str(tmp_path / "run")
    # 2 CPU processes with gloo (DDP), 3 iterations, checkpoint every 2.
    run_train_net(
        "--num-gpus",
        "2",
        *FAST,
        "SOLVER.MAX_ITER",
        "3",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "OUTPUT_DIR",
        out,
    )
    files = set(os.listdir(out))
    expected = {"model_0000001.pth", "model_final.pth", "last_checkpoint", "final_metrics.json"}
    assert expected | {"config.yaml"} <= files
    metrics = json.load(open(os.path.join(out, "final_metrics.json")))
    assert set(metrics) >= {"AP", "AP50", "AP75", "AR1", "AR10", "IDF1", "MOTA", "IDs"}
    results_dir = os.path.join(out, "inference", "ytvis_tiny_val")
    results = json.load(open(os.path.join(results_dir, "results.json")))
    num_val = TINY_SPLITS["val"]["num_videos"]
    assert {r["video_id"] for r in results} == set(range(1, num_val + 1))  # once, gathered
    with zipfile.ZipFile(os.path.join(results_dir, "results.zip")) as z:
        assert z.namelist() == ["results.json"]
    import torch
    from detectron2.data import MetadataCatalog

    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert final["class_names"] == list(MetadataCatalog.get("ytvis_tiny_train").thing_classes)

    # --resume continues from model_final (iteration 2) to the new MAX_ITER.
    log = run_train_net("--resume", *FAST, "SOLVER.MAX_ITER", "5", "OUTPUT_DIR", out)
    text = log.stdout + log.stderr
    assert "model_final.pth" in text and "Starting training from iteration 3" in text

    # --eval-only on the trained weights writes the server files and the metrics.
    eval_dir = str(tmp_path / "eval")
    weights = os.path.join(out, "model_final.pth")
    log = run_train_net("--eval-only", *FAST, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", eval_dir)
    assert os.path.exists(os.path.join(eval_dir, "inference", "ytvis_tiny_val", "results.zip"))
    assert "copypaste: AP,AP50,AP75" in log.stdout + log.stderr
    assert "AP" in json.load(open(os.path.join(eval_dir, "eval_metrics.json")))
    assert {"eval_config.yaml"} <= set(os.listdir(eval_dir)) and "config.yaml" not in os.listdir(
        eval_dir
    )  # config.yaml describes a trained model; --eval-only writes its own


@pytest.mark.slow
def test_missing_dataset_stops_at_once_naming_where_to_put_it(tmp_path):
    result = run_train_net(
        "DATASETS.TRAIN",
        "('ytvis_2019_train',)",
        "OUTPUT_DIR",
        str(tmp_path / "x"),
        env={"DETECTRON2_DATASETS": str(tmp_path / "nowhere")},
        check=False,
    )
    assert result.returncode != 0
    err = result.stderr
    assert "ytvis_2019_train" in err and "datasets/README.md" in err
    assert str(tmp_path / "nowhere") in err
    assert "Starting training" not in result.stdout + err


def test_missing_weights_stop_before_the_model_is_built(tmp_path):
    from ifr.engine.defaults import build_cfg, check_weights_available

    cfg = build_cfg(TINY, ["MODEL.WEIGHTS", str(tmp_path / "m2f.pkl"), "OUTPUT_DIR", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="m2f.pkl"):
        check_weights_available(cfg, resume=False)
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    (tmp_path / "model_0000009.pth").write_bytes(b"")
    check_weights_available(cfg, resume=True)  # --resume loads OUTPUT_DIR's checkpoint instead
    cfg.MODEL.WEIGHTS = ""
    check_weights_available(cfg, resume=False)


def test_class_count_mismatch_with_the_dataset_is_refused():
    from ifr.engine.defaults import build_cfg, check_datasets_available

    cfg = build_cfg(TINY, ["MODEL.VIS.NUM_CLASSES", "40"])
    with pytest.raises(ValueError, match="ytvis_tiny_train.*3 categories.*NUM_CLASSES"):
        check_datasets_available(cfg)
    check_datasets_available(build_cfg(TINY))


def test_checkpoints_carry_the_training_classes_and_eval_checks_them(ifr_caplog):
    import logging

    from detectron2.data import MetadataCatalog

    from ifr.engine.defaults import ConfigError, build_cfg, check_class_names
    from ifr.engine.trainer import training_classes

    tiny_names = list(MetadataCatalog.get("ytvis_tiny_train").thing_classes)
    extras = training_classes(build_cfg(TINY))
    assert extras["class_names"] == tiny_names
    assert len(extras["class_colors"]) == len(tiny_names)
    assert training_classes(build_cfg(TINY, ["DATASETS.TRAIN", "()"])) == {}

    check_class_names(extras, ["ytvis_tiny_val"])  # the same categories: accepted
    with pytest.raises(ConfigError, match="trained on classes .*'ytvis_2019_val' .*\\(40\\)"):
        check_class_names(extras, ["ytvis_2019_val"])
    with ifr_caplog.at_level(logging.WARNING):
        check_class_names({}, ["ytvis_tiny_val"])  # a checkpoint from before: a warning
    assert "holds no class names" in ifr_caplog.text


def test_config_is_saved_only_when_the_run_starts(tmp_path, restore_loggers):
    from ifr.engine.defaults import argument_parser, save_run_config, setup

    args = argument_parser().parse_args(
        ["--config-file", TINY, "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", "3"]
    )
    cfg = setup(args)
    assert not (tmp_path / "config.yaml").exists()  # setup alone writes no config
    path = save_run_config(cfg)
    assert path == str(tmp_path / "config.yaml")
    assert "MAX_ITER: 3" in (tmp_path / "config.yaml").read_text()


def _final_weights(run_dir):
    return torch.load(os.path.join(run_dir, "model_final.pth"), weights_only=True)["model"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "launch, overrides, checkpoints",
    [
        ([], [], ("model_0000001.pth", "model_0000003.pth")),
        (["--num-gpus", "2"], [], ("model_0000003.pth",)),
    ],
    ids=["1-process", "2-processes"],
)
def test_resume_from_a_checkpoint_continues_the_same_run(tmp_path, launch, overrides, checkpoints):
    """A run killed right after a checkpoint leaves that checkpoint and ``last_checkpoint``
    naming it; resumed from there it ends with the uninterrupted run's weights, bit for bit
    (no data-loader workers: every random draw is in the training processes)."""
    args = [*launch, *FAST, *overrides, "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2"]
    args += ["DATASETS.TEST", "()"]
    full = str(tmp_path / "full")
    run_train_net(*args, "OUTPUT_DIR", full)
    reference = _final_weights(full)
    for checkpoint in checkpoints:
        resumed = tmp_path / f"from_{checkpoint}"
        resumed.mkdir()
        data = torch.load(os.path.join(full, checkpoint), weights_only=True)
        assert len(data["trainer"]["_trainer"]["optimizer"]["state"]) > 0  # the AdamW moments
        assert len(data["trainer"]["rng"]) == (2 if launch else 1)  # every process's
        torch.save(data, resumed / checkpoint)
        (resumed / "last_checkpoint").write_text(checkpoint)
        # The killed run had also logged the iterations after the checkpoint, the last line
        # cut short.
        logged = (Path(full) / "metrics.json").read_text()
        (resumed / "metrics.json").write_text(logged + '{"eta_seconds": 1, "iter')
        run_train_net("--resume", *args, "OUTPUT_DIR", str(resumed))
        iterations = [json.loads(line)["iteration"] for line in logged.splitlines()]
        resumed_log = (resumed / "metrics.json").read_text().splitlines()
        assert [json.loads(line)["iteration"] for line in resumed_log] == iterations
        weights = _final_weights(str(resumed))
        assert weights.keys() == reference.keys()
        different = [k for k in reference if not torch.equal(weights[k], reference[k])]
        assert not different, f"resumed from {checkpoint}: {len(different)} tensors differ"


@pytest.mark.slow
def test_checkpoint_without_optimizer_state_resumes_with_a_warning(tmp_path):
    args = [*FAST, "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "2", "DATASETS.TEST", "()"]
    full = str(tmp_path / "full")
    run_train_net(*args, "OUTPUT_DIR", full)
    old = tmp_path / "old"
    old.mkdir()
    data = torch.load(os.path.join(full, "model_0000001.pth"), weights_only=True)
    for key in ("_trainer", "rng", "data"):
        del data["trainer"][key]
    torch.save(data, old / "model_0000001.pth")
    (old / "last_checkpoint").write_text("model_0000001.pth")
    result = run_train_net("--resume", *args, "OUTPUT_DIR", str(old))
    assert "has no optimizer state" in result.stdout + result.stderr
    assert os.path.isfile(old / "model_final.pth")


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_to_the_launcher_stops_every_worker(tmp_path, signum):
    """Two CPU workers; the signal goes to the launcher alone (as `kill` or SLURM sends it):
    every worker is gone within seconds, the exit status is 130, the last checkpoint
    loads, and the launcher's temporary folder is gone."""
    out = tmp_path / "run"
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "ifr_launch_*")))
    command = [sys.executable, TRAIN_NET, "--config-file", TINY, "--num-gpus", "2", *FAST]
    command += ["SOLVER.MAX_ITER", "500", "SOLVER.CHECKPOINT_PERIOD", "2", "DATASETS.TEST", "()"]
    process = subprocess.Popen(
        command + ["OUTPUT_DIR", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not (out / "model_0000001.pth").exists() and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(0.2)
    workers = _children(process.pid)
    assert len(workers) >= 2
    process.send_signal(signum)
    assert process.wait(timeout=60) == 130
    assert "interrupted (stopped by" in process.stderr.read()
    time.sleep(1)
    assert not [pid for pid in workers if _alive(pid)]
    last = (out / "last_checkpoint").read_text().strip()
    data = torch.load(out / last, weights_only=True)
    assert "model" in data and "_trainer" in data["trainer"]
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "ifr_launch_*"))) == before


@pytest.mark.parametrize("finished", ["model_final.pth", "final_metrics.json"])
def test_new_training_into_a_finished_run_is_refused(tmp_path, finished):
    from argparse import Namespace

    from ifr.engine.defaults import ConfigError, check_run

    (tmp_path / finished).write_bytes(b"the finished run")
    args = Namespace(
        config_file=TINY,
        opts=["OUTPUT_DIR", str(tmp_path)],
        eval_only=False,
        num_gpus=1,
        num_machines=1,
    )
    with pytest.raises(ConfigError, match=f"holds a finished run \\({finished}\\).*--resume"):
        check_run(Namespace(**vars(args), resume=False))
    check_run(Namespace(**vars(args), resume=True))  # continuing or re-evaluating it is fine
    assert (tmp_path / finished).read_bytes() == b"the finished run"


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_gives_the_uninterrupted_weights(tmp_path):
    """A real SIGKILL once the checkpoint of iteration 10 is on disk (the next one is 10
    iterations away), then --resume: the final weights equal the uninterrupted run's."""
    args = [*FAST, "SOLVER.MAX_ITER", "30", "SOLVER.CHECKPOINT_PERIOD", "10", "DATASETS.TEST", "()"]
    full = str(tmp_path / "full")
    run_train_net(*args, "OUTPUT_DIR", full)
    killed = tmp_path / "killed"
    command = [sys.executable, TRAIN_NET, "--config-file", TINY, *args, "OUTPUT_DIR", str(killed)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    while not (killed / "last_checkpoint").exists() and time.monotonic() < deadline:
        assert process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert (killed / "last_checkpoint").read_text().strip() == "model_0000009.pth"
    assert not (killed / "model_final.pth").exists()
    run_train_net("--resume", *args, "OUTPUT_DIR", str(killed))
    reference, weights = _final_weights(full), _final_weights(str(killed))
    assert [k for k in reference if not torch.equal(weights[k], reference[k])] == []
