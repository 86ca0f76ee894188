"""A 2 x 2 sweep of the tiny config through the real train_net, on CPU,
interrupted, resumed and aggregated; a run repeated with the same seed gives the same metrics."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml")
FAST = [
    "SOLVER.MAX_ITER",
    "2",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "MODEL.VIS.NUM_QUERIES",
    "5",
    "MODEL.VIS.TRAIN_NUM_POINTS",
    "64",
]


def _tool(name, *args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def _sweep(out):
    return _tool(
        "sweep.py",
        "--config-file",
        TINY,
        "--param",
        "MODEL.IFR.LAMBDA_E=0,0.3",
        "--seeds",
        "2",
        "--output-dir",
        out,
        *FAST,
    )


@pytest.mark.slow
def test_sweep_of_two_values_and_two_seeds_resumes_and_aggregates(tmp_path):
    out = str(tmp_path / "sweep")
    first = _sweep(out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    runs = [
        os.path.join(out, f"MODEL.IFR.LAMBDA_E={v}", f"seed={s}")
        for v in ("0.0", "0.3")
        for s in (0, 1)
    ]
    for run in runs:
        assert os.path.exists(os.path.join(run, "final_metrics.json")), run

    # Interrupt one run after its checkpoint: it has last_checkpoint but no final metrics.
    interrupted = runs[3]
    os.remove(os.path.join(interrupted, "final_metrics.json"))
    finished_mtimes = [os.path.getmtime(os.path.join(r, "final_metrics.json")) for r in runs[:3]]
    second = _sweep(out)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    mtimes = [os.path.getmtime(os.path.join(r, "final_metrics.json")) for r in runs[:3]]
    assert mtimes == finished_mtimes
    console = open(os.path.join(interrupted, "console.txt")).read()
    assert "--resume" in console or "Loading from" in console
    assert os.path.exists(os.path.join(interrupted, "final_metrics.json"))

    agg = _tool("aggregate.py", out)
    assert agg.returncode == 0, agg.stderr[-3000:]
    table = open(os.path.join(out, "summary.md")).read()
    assert "0.0" in table and "0.3" in table and "AP" in table
    with open(os.path.join(out, "summary.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.exists(os.path.join(out, "summary.csv"))

    # Reproducibility: the same config and seed, trained again elsewhere, same metrics.
    again = str(tmp_path / "again")
    rerun = _tool(
        "train_net.py",
        "--config-file",
        TINY,
        *FAST,
        "MODEL.IFR.LAMBDA_E",
        "0.3",
        "SEED",
        "0",
        "OUTPUT_DIR",
        again,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    first_metrics = json.load(open(os.path.join(runs[2], "final_metrics.json")))
    assert json.load(open(os.path.join(again, "final_metrics.json"))) == first_metrics
