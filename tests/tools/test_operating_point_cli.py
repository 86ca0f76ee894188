"""tools/operating_point.py on a real comparison (two tiny configs, 4 iterations): the
chosen thresholds and the reported metrics recomputed from the results files it wrote, and
equal to those of the trainings' own final evaluation (TEST.TRACKING_TUNE_DATASET); a
repeated command reuses the runs; overrides get their own folder and are not mixed."""

import json
import os
import subprocess
import sys

import pytest

from ifr.evaluation.offline import evaluate_tracks, load_files
from ifr.evaluation.operating_point import choose_threshold, idf1_curve
from ifr.evaluation.tracking import tracking_metrics
from ifr.experiments.operating_point import dataset_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml")
TINY_LAMBDA0 = os.path.join(ROOT, "tests", "tools", "ifr_tiny_lambda0.yaml")
FAST = ["SOLVER.MAX_ITER", "4", "SOLVER.IMS_PER_BATCH", "2", "MODEL.VIS.NUM_QUERIES", "5"]
FAST += ["MODEL.VIS.TRAIN_NUM_POINTS", "64", "DATASETS.TEST", '("ytvis_tiny_hard_val",)']
FAST += ["TEST.TRACKING_TUNE_DATASET", "ytvis_tiny_hard_tune"]  # the trainer's own choice too
TUNE = "ytvis_tiny_hard_tune"


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("op") / "compare")
    command = [sys.executable, os.path.join(ROOT, "tools", "compare.py"), "--configs"]
    command += [TINY, TINY_LAMBDA0, "--seeds", "1", "--output-dir", out, *FAST]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_thresholds_and_metrics_recomputed_from_the_files(
    comparison, load_tool, restore_loggers, capsys
):
    tool = load_tool("operating_point")
    assert tool.main(["--comparison", comparison, "--tune-dataset", TUNE]) == 0
    table = open(os.path.join(comparison, "operating_point.md")).read()
    assert "| ifr_tiny | 1 | fixed 0.50 |" in table and "| ifr_tiny_lambda0 | 1 | own " in table
    with open(os.path.join(comparison, "operating_point.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    for label in ("ifr_tiny", "ifr_tiny_lambda0"):
        run = os.path.join(comparison, label, "seed=0")
        point = json.load(open(os.path.join(run, "operating_point", "operating_point.json")))
        tune = os.path.join(run, "operating_point", "inference", TUNE, "results.json")
        gt, predictions = load_files(dataset_json(TUNE), tune)
        assert point["threshold"] == choose_threshold(idf1_curve(gt, predictions))
        # No overrides: the test split's results are the run's own final evaluation.
        test = os.path.join(run, "inference", "ytvis_tiny_hard_val", "results.json")
        assert not os.path.exists(test.replace("inference", "operating_point/inference"))
        gt, predictions = load_files(dataset_json("ytvis_tiny_hard_val"), test)
        assert point["own"] == tracking_metrics(gt, predictions, point["threshold"])
        own_on_curve = point["test_curve"][str(point["threshold"])]
        assert own_on_curve == pytest.approx(point["own"]["IDF1"])
        assert point["fixed"] == dict(evaluate_tracks(gt, predictions, True, 0.5))
        final = json.load(open(os.path.join(run, "final_metrics.json")))
        assert point["fixed"]["AP"] == pytest.approx(final["AP"])
        # The training's final evaluation chose the same threshold (TRACKING_TUNE_DATASET).
        assert final["threshold_own"] == point["threshold"]
        assert final["IDF1_own"] == pytest.approx(point["own"]["IDF1"])


@pytest.mark.slow
def test_repeat_reuses_runs_and_overrides_are_kept_apart(comparison, load_tool, restore_loggers):
    tool = load_tool("operating_point")
    assert (
        tool.main(["--comparison", comparison, "--tune-dataset", TUNE, "--configs", "ifr_tiny"])
        == 0
    )
    done = os.path.join(comparison, "ifr_tiny", "seed=0", "operating_point", "operating_point.json")
    mtime = os.path.getmtime(done)
    assert (
        tool.main(["--comparison", comparison, "--tune-dataset", TUNE, "--configs", "ifr_tiny"])
        == 0
    )
    assert os.path.getmtime(done) == mtime
    args = [
        "--comparison",
        comparison,
        "--tune-dataset",
        TUNE,
        "--configs",
        "ifr_tiny",
        "--name",
        "top3",
    ]
    assert tool.main(args + ["MODEL.VIS.TEST.TOP_K", "3"]) == 0
    rerun = os.path.join(comparison, "ifr_tiny", "seed=0", "top3", "inference")
    results = json.load(open(os.path.join(rerun, "ytvis_tiny_hard_val", "results.json")))
    assert (
        max(sum(r["video_id"] == v for r in results) for v in {r["video_id"] for r in results}) <= 3
    )
    os.remove(os.path.join(rerun, "..", "operating_point.json"))
    assert tool.main(args + ["MODEL.VIS.TEST.TOP_K", "4"]) == 1  # other overrides, same folder


def test_unknown_config_and_tune_dataset_are_one_line_errors(tmp_path, load_tool, capsys):
    tool = load_tool("operating_point")
    assert tool.main(["--comparison", str(tmp_path), "--tune-dataset", TUNE]) == 1
    assert "no comparison here" in capsys.readouterr().err
    assert tool.main(["--comparison", str(tmp_path), "--tune-dataset", "no_such_dataset"]) == 1
    assert "no_such_dataset: not a registered dataset" in capsys.readouterr().err
