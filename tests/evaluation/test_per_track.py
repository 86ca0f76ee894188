"""ifr/evaluation/per_track.py: the best-overlapping prediction of each ground-truth track,
checked against track IoUs computed by hand."""

import csv
import os

import pytest
from ytvis_factory import box, make_gt, make_result

from ifr.evaluation import parse_ground_truth, parse_results
from ifr.evaluation.per_track import (
    PER_TRACK_FIELDS,
    format_summary,
    per_track_overlaps,
    summarize_overlaps,
    write_per_track_csv,
)

H, W = 4, 4


def _box(y0, y1, x0, x1):
    return box(H, W, y0, y1, x0, x1)


# Video 1, 2 frames of 4x4 pixels:
#   GT A (cat 1): the 2x2 box rows 0-1, cols 0-1 in both frames (8 pixels in all).
#   GT B (cat 2): the 2x2 box rows 2-3, cols 2-3 in frame 0, absent in frame 1 (4 pixels).
#   P_exact (cat 1, score 0.9): A's box in frame 0, the box shifted one column right in
#     frame 1 (2 of its 4 pixels on A).
#       IoU(P_exact, A) = (4 + 2) / (8 + 8 - 6) = 6 / 10 = 0.6;  IoU(P_exact, B) = 0.
#   P_all (cat 2, score 0.5): the whole 16-pixel frame 0 (over A and B), empty frame 1.
#       IoU(P_all, A) = 4 / (16 + 8 - 4) = 0.2;  IoU(P_all, B) = 4 / (16 + 4 - 4) = 0.25.
#   So A's best is P_exact (IoU 0.6, areas 4 vs 4), B's is P_all (IoU 0.25, 16 vs 4: too big).
# Video 2: GT D, no prediction at all.
# Video 3: GT C in the top-left corner; one prediction in the bottom-right corner (IoU 0).
VIDEOS = [(1, H, W, 2), (2, H, W, 2), (3, H, W, 2)]
A = [_box(0, 2, 0, 2), _box(0, 2, 0, 2)]
B = [_box(2, 4, 2, 4), None]
D = [_box(0, 1, 0, 1), _box(0, 1, 0, 3)]  # 1 and 3 pixels: mean area 2
C = [_box(0, 1, 0, 1), None]
P_EXACT = [_box(0, 2, 0, 2), _box(0, 2, 1, 3)]
P_ALL = [_box(0, 4, 0, 4), None]
P_ELSEWHERE = [_box(3, 4, 3, 4), _box(3, 4, 3, 4)]


@pytest.fixture
def rows():
    gt = parse_ground_truth(
        make_gt(VIDEOS, [(1, 1, A), (1, 2, B), (2, 1, D), (3, 2, C)]), "gt.json"
    )
    # Video 3's prediction first: best_pred is the index in the whole file.
    results = [
        make_result(3, 1, 0.7, P_ELSEWHERE),
        make_result(1, 1, 0.9, P_EXACT),
        make_result(1, 2, 0.5, P_ALL),
    ]
    return per_track_overlaps(gt, parse_results(results, gt, "results.json"))


def test_best_prediction_of_each_track_with_hand_computed_iou(rows):
    assert [(r["video_id"], r["gt_id"]) for r in rows] == [(1, 1), (1, 2), (2, 3), (3, 4)]
    assert all(list(r) == list(PER_TRACK_FIELDS) for r in rows)
    a, b = rows[0], rows[1]
    assert (a["category"], a["gt_frames"], a["gt_area"]) == (1, 2, 4.0)
    assert (a["best_pred"], a["best_score"], a["best_category"]) == (1, 0.9, 1)
    assert a["best_iou"] == pytest.approx(0.6) and a["pred_area"] == 4.0
    assert (b["category"], b["gt_frames"], b["gt_area"]) == (2, 1, 4.0)
    assert (b["best_pred"], b["best_score"], b["best_category"]) == (2, 0.5, 2)
    assert b["best_iou"] == pytest.approx(0.25)
    assert b["pred_area"] / b["gt_area"] == 4.0  # one prediction over two objects


def test_video_without_prediction_and_prediction_without_overlap(rows):
    d, c = rows[2], rows[3]
    assert (d["gt_frames"], d["gt_area"]) == (2, 2.0)
    assert all(d[k] is None for k in PER_TRACK_FIELDS[5:])
    # Predictions exist in video 3 but none touches C: IoU 0, no "best" one.
    assert c["best_iou"] == 0.0
    assert all(c[k] is None for k in ("best_pred", "best_score", "best_category", "pred_area"))


def test_summary(rows):
    summary = summarize_overlaps(rows)
    assert summary["tracks"] == 4 and summary["without_prediction"] == 1
    assert summary["mean_best_iou"] == pytest.approx((0.6 + 0.25 + 0 + 0) / 4)
    assert summary["max_best_iou"] == pytest.approx(0.6)
    assert summary["matched"] == 1  # only A reaches 0.5
    assert summary["mean_area_ratio"] == pytest.approx((4 / 4 + 16 / 4) / 2)
    assert summary["right_category"] == 2  # A's best is cat 1, B's cat 2; D has none
    assert summary["mean_best_score"] == pytest.approx((0.9 + 0.5) / 2)
    text = format_summary(summary)
    assert "ground-truth tracks: 4 (1 in videos without predictions)" in text
    assert "mean 0.212, max 0.600; 1 reach IoU 0.5" in text
    assert "mean 2.50" in text
    assert "best predictions: 2 of the track's category, mean score 0.700" in text


def test_summary_counts_a_wrong_category(rows):
    wrong = [dict(rows[0], best_category=2), *rows[1:]]  # A (cat 1) best matched by a cat 2
    assert summarize_overlaps(wrong)["right_category"] == 1


def test_summary_of_no_track():
    summary = summarize_overlaps([])
    assert summary["tracks"] == 0 and summary["mean_best_iou"] is None
    assert "mean -, max -" in format_summary(summary)


def test_equal_ious_pick_the_higher_score_then_the_first():
    gt = parse_ground_truth(make_gt([(1, H, W, 2)], [(1, 1, A)]))
    results = [make_result(1, 1, s, A) for s in (0.3, 0.8, 0.8)]
    (row,) = per_track_overlaps(gt, parse_results(results, gt))
    assert (row["best_pred"], row["best_iou"], row["best_score"]) == (1, 1.0, 0.8)


def test_csv_round_trip_with_empty_fields(rows, tmp_path):
    path = tmp_path / "per_track.csv"
    write_per_track_csv(str(path), rows)
    assert os.listdir(tmp_path) == ["per_track.csv"]  # no temporary file left
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == list(PER_TRACK_FIELDS)
    assert read[0]["best_iou"] == "0.6" and read[0]["best_pred"] == "1"
    assert read[1]["pred_area"] == "16" and read[1]["gt_area"] == "4"
    assert [read[2][k] for k in PER_TRACK_FIELDS[5:]] == [""] * 5
    assert read[3]["best_iou"] == "0" and read[3]["best_pred"] == ""
