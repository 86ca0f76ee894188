import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ifr.experiments.manifest import DONE, FAILED, INTERRUPTED, load_manifest
from ifr.experiments.sweep import REPO_ROOT, build_train_command, prepare_sweep, run_sweep_locally

LAMBDA = "MODEL.IFR.LAMBDA_E"
CRASHING = f"{LAMBDA}=0.5/seed=1"


def sweep_argv(config_file, param, seeds, output_dir, train_script, *rest):
    """``tools/sweep.py``'s arguments: the ``--param`` value, ``seeds`` (e.g.
    ``("--seeds", "2")``), the output folder and train script, then ``rest``."""
    return [
        "--config-file",
        config_file,
        "--param",
        param,
        *seeds,
        "--output-dir",
        str(output_dir),
        "--train-script",
        train_script,
        *rest,
    ]


def calls(sweep_dir, name):
    with open(os.path.join(sweep_dir, name, "calls.txt")) as f:
        return f.read().splitlines()


def test_train_command(tmp_path, config_file, fake_train_script):
    manifest = prepare_sweep(
        str(tmp_path / "s"),
        config_file,
        [f"{LAMBDA}=0,0.5"],
        1,
        overrides=["SOLVER.MAX_ITER", "5"],
        train_script=fake_train_script,
    )
    record = manifest.runs[f"{LAMBDA}=0.0/seed=0"]
    command = build_train_command(manifest, record, str(tmp_path / "s"), ["--num-gpus", "2"])
    assert command == [
        sys.executable,
        fake_train_script,
        "--config-file",
        config_file,
        "--num-gpus",
        "2",
        "--resume",
        "SOLVER.MAX_ITER",
        "5",
        LAMBDA,
        "0.0",
        "SEED",
        "0",
        "OUTPUT_DIR",
        str(tmp_path / "s" / LAMBDA) + "=0.0/seed=0",
    ]


def test_validation_fails_before_any_run(tmp_path, config_file, fake_train_script):
    sweep_dir = tmp_path / "s"
    with pytest.raises(ValueError, match="MODEL.IFR.NOPE"):
        prepare_sweep(
            str(sweep_dir),
            config_file,
            [f"{LAMBDA}=0,0.5", "MODEL.IFR.NOPE=1"],
            2,
            train_script=fake_train_script,
        )
    assert not sweep_dir.exists()
    with pytest.raises(FileNotFoundError, match="--train-script"):
        prepare_sweep(str(sweep_dir), config_file, [], 1, train_script=str(tmp_path / "no.py"))


def test_dry_run_writes_nothing(tmp_path, config_file, fake_train_script, capsys, load_tool):
    sweep = load_tool("sweep")
    argv = sweep_argv(
        config_file, f"{LAMBDA}=0,0.5", ("--seeds", "2"), tmp_path / "s", fake_train_script
    )
    argv.append("--dry-run")
    assert sweep.main(argv) == 0
    assert not (tmp_path / "s").exists()
    assert capsys.readouterr().out.count(fake_train_script) == 4
    assert sweep.main(argv[:-1] + ["--param", "oops", "--dry-run"]) == 1
    assert "no '=' found" in capsys.readouterr().err


def test_sweep_end_to_end_with_failure_and_rerun(
    tmp_path, config_file, fake_train_script, fake_metrics, monkeypatch, capsys, load_tool
):
    """2 values x 2 seeds; one run crashes after its first checkpoint. The re-run skips the
    finished runs and resumes the crashed one."""
    sweep = load_tool("sweep")
    sweep_dir = str(tmp_path / "sweep")
    argv = sweep_argv(
        config_file,
        f"{LAMBDA}=0,0.5",
        ("--seeds", "2"),
        sweep_dir,
        fake_train_script,
        "SOLVER.MAX_ITER",
        "5",
    )
    monkeypatch.setenv("FAKE_CRASH_RUN", "0.5/1")
    assert sweep.main(argv) == 1
    out = capsys.readouterr().out
    assert f"[4/4] {LAMBDA}=0.5 seed=1: FAILED (exit code 3, log: " in out
    assert f"[1/4] {LAMBDA}=0.0 seed=0: done" in out
    crashed_log = os.path.join(sweep_dir, CRASHING, "console.txt")
    assert crashed_log in out.split("FAILED")[-1]  # the end report names the log
    assert "fake crash in run 0.5/1" in open(crashed_log).read()

    manifest = load_manifest(sweep_dir)
    assert [r.state for r in manifest.runs.values()] == [DONE, DONE, DONE, FAILED]
    assert manifest.runs[CRASHING].exit_code == 3
    assert manifest.seeds == [0, 1] and manifest.params[0].values == ("0.0", "0.5")
    assert manifest.overrides == [("SOLVER.MAX_ITER", "5")]
    finished = [n for n in manifest.runs if n != CRASHING]

    def metrics_mtime(name):
        return os.path.getmtime(os.path.join(sweep_dir, name, "final_metrics.json"))

    mtimes = {n: metrics_mtime(n) for n in finished}
    for name in finished:
        lam, seed = float(name.split("=")[1].split("/")[0]), int(name[-1])
        with open(os.path.join(sweep_dir, name, "final_metrics.json")) as f:
            assert json.load(f) == pytest.approx(fake_metrics(lam, seed))

    monkeypatch.delenv("FAKE_CRASH_RUN")
    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    assert "3 finished, 1 to run" in out and "4/4 runs finished, 0 failed" in out
    for name in finished:  # skipped: not called again, metrics untouched
        assert calls(sweep_dir, name) == ["resume=True had_checkpoint=False"]
        assert metrics_mtime(name) == mtimes[name]
    assert calls(sweep_dir, CRASHING) == [
        "resume=True had_checkpoint=False",
        "resume=True had_checkpoint=True",
    ]
    record = load_manifest(sweep_dir).runs[CRASHING]
    assert (record.state, record.attempts, record.exit_code) == (DONE, 2, 0)


def test_exit_zero_without_metrics_is_a_failure(tmp_path, config_file):
    script = tmp_path / "silent.py"
    script.write_text("import sys\n")
    manifest = prepare_sweep(str(tmp_path / "s"), config_file, [], 1, train_script=str(script))
    lines = []
    result = run_sweep_locally(manifest, str(tmp_path / "s"), echo=lines.append)
    assert [r.name for r in result.failed] == ["seed=0"]
    assert any("exit code 0 but no final_metrics.json" in line for line in lines)


@pytest.mark.slow
def test_sigterm_leaves_a_consistent_manifest(tmp_path, config_file, fake_train_script):
    """SIGTERM during a run: the run's process group is stopped, the manifest records it
    as interrupted, and the next sweep resumes it."""
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        os.path.join(REPO_ROOT, "tools", "sweep.py"),
        *sweep_argv(config_file, f"{LAMBDA}=0.5", ("--seeds", "1"), sweep_dir, fake_train_script),
    ]
    env = dict(os.environ, FAKE_SLEEP_RUN="0.5/0")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sleeping = sweep_dir / f"{LAMBDA}=0.5" / "seed=0" / "sleeping"
    deadline = time.monotonic() + 60
    while not sleeping.exists():
        assert time.monotonic() < deadline and process.poll() is None, process.stdout.read()
        time.sleep(0.1)
    child_pid = int(sleeping.read_text())
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert process.returncode == 130
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)  # the training process was stopped with the sweep
    record = load_manifest(str(sweep_dir)).runs[f"{LAMBDA}=0.5/seed=0"]
    assert record.state == INTERRUPTED

    manifest = prepare_sweep(
        str(sweep_dir), config_file, [f"{LAMBDA}=0.5"], 1, train_script=fake_train_script
    )
    assert not run_sweep_locally(manifest, str(sweep_dir), echo=lambda line: None).failed
    assert calls(str(sweep_dir), f"{LAMBDA}=0.5/seed=0")[-1] == "resume=True had_checkpoint=True"


def test_sweep_then_aggregate_tool(
    tmp_path, config_file, fake_train_script, fake_metrics, capsys, load_tool
):
    sweep_dir = str(tmp_path / "sweep")
    argv = sweep_argv(
        config_file, f"{LAMBDA}=0,0.5", ("--seed-list", "1,4"), sweep_dir, fake_train_script
    )
    assert load_tool("sweep").main(argv) == 0
    assert load_tool("aggregate").main([sweep_dir, "--metrics", "AP,AR10"]) == 0
    with open(os.path.join(sweep_dir, "summary.csv")) as f:
        rows = list(csv.DictReader(f))
    for row, lam in zip(rows, (0.0, 0.5)):
        for metric in ("AP", "AR10"):
            values = [fake_metrics(lam, seed)[metric] for seed in (1, 4)]
            assert float(row[f"{metric}_mean"]) == pytest.approx(np.mean(values))
            assert float(row[f"{metric}_std"]) == pytest.approx(np.std(values, ddof=1))
    assert load_tool("aggregate").main([str(tmp_path / "nowhere")]) == 1
    assert "no sweep manifest" in capsys.readouterr().err
