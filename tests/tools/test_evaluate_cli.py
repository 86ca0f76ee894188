"""tools/evaluate.py, run as a user runs it (a subprocess) on hand-made files."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from pycocotools import mask as mask_util

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H, W = 8, 8


def _rle(y0, y1, x0, x1):
    mask = np.zeros((H, W), np.uint8, order="F")
    mask[y0:y1, x0:x1] = 1
    encoded = mask_util.encode(mask)
    return {"size": [H, W], "counts": encoded["counts"].decode("ascii")}


@pytest.fixture
def files(tmp_path):
    """One video of 2 frames, one GT track; a perfect prediction and a false positive
    scored above it: AP 50, AR1 0, AR10 100 (hand-computed)."""
    track = [_rle(0, 4, 0, 4), _rle(1, 5, 1, 5)]
    gt = {
        "videos": [{"id": 1, "height": H, "width": W, "length": 2,
                    "file_names": ["a/0.jpg", "a/1.jpg"]}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                         "segmentations": track, "areas": [16, 16], "bboxes": [None, None]}],
    }
    results = [
        {"video_id": 1, "category_id": 1, "score": 0.4, "segmentations": track},
        {"video_id": 1, "category_id": 1, "score": 0.9,
         "segmentations": [_rle(6, 8, 6, 8), None]},
    ]
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    results_path.write_text(json.dumps(results))
    return gt_path, results_path, results


def _run(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "evaluate.py"), *map(str, args)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )


@pytest.mark.slow
def test_cli_prints_and_writes_flat_metrics(files, tmp_path):
    gt_path, results_path, results = files
    zip_path = tmp_path / "results.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("results.json", json.dumps(results))
    out = tmp_path / "metrics.json"
    proc = _run("--annotations", gt_path, "--results", zip_path, "--tracking", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert "AP50" in proc.stdout and "IDF1" in proc.stdout
    metrics = json.loads(out.read_text())
    assert list(metrics) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10",
                             "IDF1", "MOTA", "IDP", "IDR", "IDs"]
    assert metrics["AP"] == pytest.approx(50.0)
    assert metrics["AR1"] == 0.0 and metrics["AR10"] == pytest.approx(100.0)
    assert metrics["APm"] == -1.0  # no medium ground truth
    # Tracking keeps scores >= 0.5: only the false positive (1 FP box, 2 missed boxes).
    assert metrics["MOTA"] == pytest.approx((1 - 3 / 2) * 100)
    assert metrics["IDs"] == 0


def test_cli_without_tracking_has_only_ap_keys(files, tmp_path, capsys, load_tool):
    gt_path, results_path, _ = files
    out = tmp_path / "metrics.json"
    assert load_tool("evaluate").main(["--annotations", str(gt_path), "--results", str(results_path),
                             "--output", str(out)]) == 0
    assert "AR10" in capsys.readouterr().out
    assert set(json.loads(out.read_text())) == {"AP", "AP50", "AP75", "APs", "APm", "APl",
                                                "AR1", "AR10"}


@pytest.mark.slow
def test_cli_exits_nonzero_on_unknown_video(files, tmp_path):
    gt_path, _, results = files
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([dict(results[0], video_id=42)]))
    proc = _run("--annotations", gt_path, "--results", bad)
    assert proc.returncode != 0
    assert "bad.json" in proc.stderr and "video id 42 is not in the ground truth" in proc.stderr


def test_cli_rejects_malformed_entry_and_missing_file(files, tmp_path, capsys, load_tool):
    gt_path, _, results = files
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{k: v for k, v in results[0].items() if k != "score"}]))
    cli = load_tool("evaluate")
    assert cli.main(["--annotations", str(gt_path), "--results", str(bad)]) == 1
    assert "entry 0 (video 1): missing key(s) ['score']" in capsys.readouterr().err
    assert cli.main(["--annotations", str(tmp_path / "none.json"), "--results", str(bad)]) == 1
    assert "ground-truth file not found" in capsys.readouterr().err
