"""tools/compare.py end to end: two configs x two seeds through the real train_net.py on a
tiny budget, interrupted (Ctrl-C) during a run after its first checkpoint, then resumed;
the table's statistics recomputed from the runs' final_metrics.json."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ifr.experiments.manifest import INTERRUPTED, load_manifest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml")
TINY_LAMBDA0 = os.path.join(ROOT, "tests", "tools", "ifr_tiny_lambda0.yaml")
FAST = [
    "SOLVER.MAX_ITER",
    "4",
    "SOLVER.CHECKPOINT_PERIOD",
    "2",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "MODEL.VIS.NUM_QUERIES",
    "5",
    "MODEL.VIS.TRAIN_NUM_POINTS",
    "64",
]
SEEDS = (0, 1)


def compare_command(output_dir):
    return [
        sys.executable,
        os.path.join(ROOT, "tools", "compare.py"),
        "--configs",
        TINY,
        TINY_LAMBDA0,
        "--seeds",
        str(len(SEEDS)),
        "--output-dir",
        output_dir,
        *FAST,
    ]


def interrupt_after_first_checkpoint(command, run_dir):
    """Starts ``command`` and sends it SIGINT (Ctrl-C) once ``run_dir`` holds a checkpoint;
    returns (exit code, output)."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # as launched from a terminal: a test suite run in the background (``make test &``)
        # passes SIGINT on ignored, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    checkpoint = os.path.join(run_dir, "model_0000001.pth")
    deadline = time.monotonic() + 900
    while not os.path.exists(checkpoint):
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


def table_values(metrics_files, metric):
    values = []
    for path in metrics_files:
        with open(path) as f:
            value = json.load(f)[metric]
        if value != -1 or metric == "MOTA":  # -1: nothing to measure, left out
            values.append(value)
    return values


@pytest.mark.slow
def test_compare_two_configs_two_seeds_interrupted_and_resumed(tmp_path):
    output_dir = str(tmp_path / "cmp")
    runs = {
        label: [os.path.join(output_dir, label, f"seed={s}") for s in SEEDS]
        for label in ("ifr_tiny", "ifr_tiny_lambda0")
    }
    interrupted = runs["ifr_tiny_lambda0"][0]

    code, output = interrupt_after_first_checkpoint(compare_command(output_dir), interrupted)
    assert code == 130, output
    assert "re-run the same command to resume" in output
    # Seed by seed across the configs: ifr_tiny seed 0 ran before, seed 1 comes after.
    assert os.path.isfile(os.path.join(runs["ifr_tiny"][0], "final_metrics.json")), output
    assert not os.path.exists(runs["ifr_tiny"][1])
    assert os.path.isfile(os.path.join(interrupted, "last_checkpoint"))
    assert not os.path.exists(os.path.join(interrupted, "final_metrics.json"))
    manifest = load_manifest(os.path.join(output_dir, "ifr_tiny_lambda0"))
    assert manifest.runs["seed=0"].state == INTERRUPTED
    assert not os.path.exists(os.path.join(output_dir, "table.md"))
    finished_mtime = os.path.getmtime(os.path.join(runs["ifr_tiny"][0], "final_metrics.json"))

    resumed = subprocess.run(
        compare_command(output_dir), cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "ifr_tiny: 2 runs in " in resumed.stdout and "1 finished, 1 to run" in resumed.stdout
    assert "[1/4] ifr_tiny seed=0: done (finished earlier, skipped)" in resumed.stdout
    assert os.path.getmtime(os.path.join(runs["ifr_tiny"][0], "final_metrics.json")) == (
        finished_mtime
    )  # not trained again
    with open(os.path.join(interrupted, "log.txt")) as f:
        assert re.search(r"Starting training from iteration [1-9]", f.read())  # --resume

    table = open(os.path.join(output_dir, "table.md")).read()
    header = "| config | runs | AP | AP50 | AP75 | AR1 | AR10 | IDF1 | MOTA | IDP | IDR | IDs |"
    assert table.splitlines()[2].startswith(header)
    assert "| ifr_tiny | 2/2 |" in table and "| ifr_tiny_lambda0 | 2/2 |" in table
    with open(os.path.join(output_dir, "table.csv")) as f:
        rows = {row["config"]: row for row in csv.DictReader(f)}
    for label, run_dirs in runs.items():
        files = [os.path.join(r, "final_metrics.json") for r in run_dirs]
        for metric in ("AP", "AP50", "AR10", "IDF1", "MOTA", "IDs"):
            values = table_values(files, metric)
            row = rows[label]
            assert int(row[f"{metric}_n"]) == len(values)
            if values:
                assert float(row[f"{metric}_mean"]) == pytest.approx(np.mean(values))
            if len(values) > 1:
                assert float(row[f"{metric}_std"]) == pytest.approx(np.std(values, ddof=1))
    with open(os.path.join(output_dir, "table.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
