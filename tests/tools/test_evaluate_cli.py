"""tools/evaluate.py, run as a user runs it (a subprocess) on hand-made files."""

import csv
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from pycocotools import mask as mask_util

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The keys the CLI writes, in order: the YouTube-VIS AP/AR, then (with --tracking) the
# tracking metrics.
AP_KEYS = "AP AP50 AP75 APs APm APl AR1 AR10".split()
TRACKING_KEYS = "IDF1 MOTA IDP IDR IDs HOTA DetA AssA OneQuery QueriesPerTrack".split()
H, W = 96, 128


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
        "videos": [
            {"id": 1, "height": H, "width": W, "length": 2, "file_names": ["a/0.jpg", "a/1.jpg"]}
        ],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {
                "id": 1,
                "video_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentations": track,
                "areas": [16, 16],
                "bboxes": [None, None],
            }
        ],
    }
    results = [
        {"video_id": 1, "category_id": 1, "score": 0.4, "segmentations": track},
        {"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [_rle(6, 8, 6, 8), None]},
    ]
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    results_path.write_text(json.dumps(results))
    return gt_path, results_path, results


def _run(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "evaluate.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
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
    assert list(metrics) == AP_KEYS + TRACKING_KEYS
    assert metrics["AP"] == pytest.approx(50.0)
    assert metrics["AR1"] == 0.0 and metrics["AR10"] == pytest.approx(100.0)
    assert metrics["APm"] == -1.0  # no medium ground truth
    # Tracking keeps scores >= 0.5: only the false positive (1 FP box, 2 missed boxes).
    assert metrics["MOTA"] == pytest.approx((1 - 3 / 2) * 100)
    assert metrics["IDs"] == 0
    assert metrics["HOTA"] == 0.0 and metrics["QueriesPerTrack"] == -1.0  # nothing covered
    assert "predictions with score >= 0.5" in proc.stdout


def test_cli_without_tracking_has_only_ap_keys(files, tmp_path, capsys, load_tool):
    gt_path, results_path, _ = files
    out = tmp_path / "metrics.json"
    assert (
        load_tool("evaluate").main(
            ["--annotations", str(gt_path), "--results", str(results_path), "--output", str(out)]
        )
        == 0
    )
    assert "AR10" in capsys.readouterr().out
    assert set(json.loads(out.read_text())) == set(AP_KEYS)


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


def test_cli_threshold_flag_overrides_the_config_default(files, tmp_path, capsys, load_tool):
    gt_path, results_path, _ = files
    out = tmp_path / "metrics.json"
    cli = load_tool("evaluate")
    assert cli.default_tracking_score_threshold() == 0.5
    args = [
        "--annotations",
        str(gt_path),
        "--results",
        str(results_path),
        "--tracking",
        "--output",
        str(out),
    ]
    assert cli.main(args + ["--tracking-score-threshold", "0.3"]) == 0
    assert "predictions with score >= 0.3" in capsys.readouterr().out
    # Both predictions kept: the exact one covers the GT track in its 2 frames.
    metrics = json.loads(out.read_text())
    assert metrics["QueriesPerTrack"] == 1.0 and metrics["DetA"] > 0


def test_cli_per_track_writes_one_row_per_gt_track(files, tmp_path, capsys, load_tool):
    gt_path, results_path, _ = files
    out = tmp_path / "per_track.csv"
    args = ["--annotations", str(gt_path), "--results", str(results_path)]
    assert load_tool("evaluate").main(args + ["--per-track", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "AR10" in stdout  # the AP table still printed
    with open(out, newline="") as f:
        (row,) = csv.DictReader(f)
    # The one GT track (4x4 = 16 pixels in both frames) is exactly result 0 (score 0.4);
    # result 1 (2x2 at rows/columns 6-7, frame 0 only) does not touch it.
    assert row == {
        "video_id": "1",
        "gt_id": "1",
        "category": "1",
        "gt_frames": "2",
        "gt_area": "16",
        "best_pred": "0",
        "best_iou": "1",
        "best_score": "0.4",
        "best_category": "1",
        "pred_area": "16",
    }
    assert "ground-truth tracks: 1 (0 in videos without predictions)" in stdout
    assert "mean 1.000, max 1.000; 1 reach IoU 0.5" in stdout
    assert "pred_area / gt_area of the best predictions: mean 1.00" in stdout


def test_cli_per_track_keeps_the_unknown_video_error(files, tmp_path, capsys, load_tool):
    gt_path, _, results = files
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([dict(results[0], video_id=42)]))
    out = tmp_path / "per_track.csv"
    args = ["--annotations", str(gt_path), "--results", str(bad), "--per-track", str(out)]
    assert load_tool("evaluate").main(args) == 1
    err = capsys.readouterr().err
    assert "bad.json" in err and "video id 42 is not in the ground truth" in err
    assert not out.exists()


def test_cli_per_track_folder_is_refused_before_any_work(files, tmp_path, capsys, load_tool):
    gt_path, results_path, _ = files
    args = ["--annotations", str(gt_path), "--results", str(results_path)]
    assert load_tool("evaluate").main(args + ["--per-track", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # no metrics computed
    example = os.path.join(str(tmp_path), "per_track.csv")
    assert f"error: --per-track {tmp_path}: is a folder; give a file name, e.g. {example}" in (
        captured.err
    )


# Malformed inputs, each expected to give one line naming the file and what is wrong.
# The RLE cases made the evaluation hang (pycocotools reading past the counts).
_SMALL = mask_util.encode(np.asfortranarray(np.ones((48, 64), np.uint8)))["counts"].decode()
_SHORT_COUNTS = {"size": [H, W], "counts": _SMALL}  # the counts of 48x64 in a 96x128 size
_GARBAGE = {"size": [H, W], "counts": "@@@@garbage!!"}
_SMALL_RLE = {"size": [48, 64], "counts": _SMALL}  # valid, but not the video's size


def _set_result_frame(value, frame=0):
    def change(gt, results):
        results[0]["segmentations"][frame] = value

    return change


def _set_gt_frame(value, frame=0):
    def change(gt, results):
        gt["annotations"][0]["segmentations"][frame] = value

    return change


def _duplicate_annotation(gt, results):
    gt["annotations"].append(dict(gt["annotations"][0]))


def _wrong_length(gt, results):
    gt["videos"][0]["length"] = 3


MALFORMED = {
    "results_short_counts": (
        _set_result_frame(_SHORT_COUNTS),
        "results.json",
        "entry 0 (video 1), frame 0: RLE 'counts' cover 3072 pixels, its size [96, 128] has 12288",
    ),
    "results_garbage_counts": (
        _set_result_frame(_GARBAGE, 1),
        "results.json",
        "entry 0 (video 1), frame 1: 'counts' has a character 'r'",
    ),
    "gt_short_counts": (
        _set_gt_frame(_SHORT_COUNTS),
        "gt.json",
        "video 1, annotation 1, frame 0: RLE 'counts' cover 3072 pixels",
    ),
    "gt_garbage_counts": (
        _set_gt_frame(_GARBAGE, 1),
        "gt.json",
        "video 1, annotation 1, frame 1: 'counts' has a character",
    ),
    "gt_rle_of_another_size": (
        _set_gt_frame(_SMALL_RLE),
        "gt.json",
        "video 1, annotation 1, frame 0: RLE size [48, 64], the video is [96, 128]",
    ),
    "gt_duplicate_annotation_id": (
        _duplicate_annotation,
        "gt.json",
        "video 1, annotation 1: annotation id 1 appears twice",
    ),
    "gt_wrong_length": (_wrong_length, "gt.json", "video 1: 'length' is 3 but it has 2 file_names"),
}


def _write_case(tmp_path, name, files):
    """The command-line arguments of one malformed case, its files written."""
    gt_path, results_path, results = files
    gt = json.loads(gt_path.read_text())
    results = json.loads(json.dumps(results))
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    gt_file, results_file = folder / "gt.json", folder / "results.json"
    args = ["--annotations", str(gt_file), "--results", str(results_file)]
    if name in MALFORMED:
        MALFORMED[name][0](gt, results)
    gt_file.write_text(json.dumps(gt))
    results_file.write_text(json.dumps(results))
    if name == "random_bytes_zip":
        zip_file = folder / "results.zip"
        zip_file.write_bytes(np.random.default_rng(0).bytes(2000))
        args[3] = str(zip_file)
    elif name == "truncated_zip":
        zip_file = folder / "results.zip"
        with zipfile.ZipFile(zip_file, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("results.json", json.dumps(results * 50))
        zip_file.write_bytes(zip_file.read_bytes()[:300])
        args[3] = str(zip_file)
    elif name == "output_is_a_folder":
        args += ["--output", str(folder)]
    elif name == "per_track_is_a_folder":
        args += ["--per-track", str(folder)]
    return args


OTHER_CASES = {
    "random_bytes_zip": ("results.zip", "results file is not UTF-8 text"),
    "truncated_zip": ("results.zip", "not a readable zip file, truncated or corrupt?"),
    "output_is_a_folder": ("output_is_a_folder", "is a folder; give a file name"),
    "per_track_is_a_folder": (
        "per_track_is_a_folder",
        "is a folder; give a file name, e.g.",
    ),
}
EXPECTED = {name: (file, message) for name, (_, file, message) in MALFORMED.items()}
EXPECTED.update(OTHER_CASES)


def _check_one_line_error(name, returncode, stderr, args):
    file, message = EXPECTED[name]
    lines = stderr.strip().splitlines()
    assert returncode == 1, (name, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), (name, stderr)
    assert message in lines[0] and file in lines[0], (name, lines[0])
    named = [a for a in args if a.endswith(file)] or [file]
    assert named[0] in lines[0], (name, lines[0])  # the full path, not only its name


@pytest.mark.parametrize("tracking", [False, True])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_input_gives_one_line_naming_the_file(
    name, tracking, files, tmp_path, capsys, load_tool
):
    args = _write_case(tmp_path, name, files) + (["--tracking"] if tracking else [])
    returncode = load_tool("evaluate").main(args)
    _check_one_line_error(name, returncode, capsys.readouterr().err, args)


_DRIVER = """
import contextlib, importlib.util, io, json, sys
spec = importlib.util.spec_from_file_location("evaluate_tool", sys.argv[1])
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
outcomes = []
for args in json.loads(sys.argv[2]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        outcomes.append((tool.main(args), err.getvalue()))
print(json.dumps(outcomes))
"""


@pytest.mark.slow
def test_malformed_rle_cases_finish_fast_in_a_process(files, tmp_path):
    """The cases that hung (60-600 s, no output) run as a user runs them, under a timeout."""
    names = [n for n in MALFORMED if "counts" in n or "size" in n]
    cases = [
        (n, _write_case(tmp_path, n, files) + extra)
        for n in names
        for extra in ([], ["--tracking"])
    ]
    # One interpreter for all cases (importing torch and detectron2 is most of the time).
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _DRIVER,
            os.path.join(REPO, "tools", "evaluate.py"),
            json.dumps([args for _, args in cases]),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    for (name, args), (returncode, stderr) in zip(cases, outcomes):
        _check_one_line_error(name, returncode, stderr, args)


def test_videos_restricts_ground_truth_and_results(files, tmp_path, load_tool):
    """Video 2 has a missed track: AP over both videos is below 100, over video 1 alone
    it is that video's AP (50, see ``files``), over video 2 alone 0."""
    gt_path, _, results = files
    gt = json.loads(gt_path.read_text())
    gt["videos"].append(dict(gt["videos"][0], id=2))
    gt["annotations"].append(dict(gt["annotations"][0], id=2, video_id=2))
    gt_path.write_text(json.dumps(gt))
    results_path = tmp_path / "results2.json"
    results_path.write_text(json.dumps(results))
    cli = load_tool("evaluate")

    def ap(*videos):
        out = tmp_path / "m.json"
        args = ["--annotations", str(gt_path), "--results", str(results_path), "--output", str(out)]
        assert cli.main(args + list(videos)) == 0
        return json.loads(out.read_text())["AP"]

    assert ap("--videos", "1") == pytest.approx(50.0)
    assert ap("--videos", "2") == 0.0
    assert 0.0 < ap() < 50.0
    assert ap("--videos", "1-2") == ap()


@pytest.mark.parametrize(
    "spec, message",
    [("1-x", "expected ids and ranges"), ("3-1", "expected ids and ranges"), ("1,7", "[7]")],
)
def test_videos_refuses_malformed_specs_and_unknown_ids(files, capsys, load_tool, spec, message):
    gt_path, results_path, _ = files
    cli = load_tool("evaluate")
    args = ["--annotations", str(gt_path), "--results", str(results_path), "--videos", spec]
    assert cli.main(args) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--output", "--per-track"])
@pytest.mark.parametrize("target", ["annotations", "results"])
def test_outputs_that_are_inputs_are_refused_and_inputs_kept(
    files, capsys, load_tool, flag, target
):
    gt_path, results_path, _ = files
    victim = gt_path if target == "annotations" else results_path
    before = victim.read_bytes()
    args = ["--annotations", str(gt_path), "--results", str(results_path), "--tracking"]
    assert load_tool("evaluate").main(args + [flag, str(victim)]) == 1
    assert f"it is --{target}" in capsys.readouterr().err
    assert victim.read_bytes() == before


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "1.5"])
def test_threshold_outside_zero_one_is_refused(files, capsys, load_tool, value):
    gt_path, results_path, _ = files
    args = ["--annotations", str(gt_path), "--results", str(results_path), "--tracking"]
    assert load_tool("evaluate").main(args + ["--tracking-score-threshold", value]) == 1
    assert "not in [0, 1]" in capsys.readouterr().err
