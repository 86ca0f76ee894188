import pytest

from ifr.evaluation.tracking import evaluate_tracking
from ytvis_factory import box, make_gt, make_result

H, W, T = 40, 40, 4
A = box(H, W, 0, 10, 0, 10)  # top-left object
B = box(H, W, 20, 30, 20, 30)  # bottom-right object, far from A


def _gt(*tracks):
    return make_gt([(1, H, W, T)], [(1, 1, track) for track in tracks])


def test_identical_tracks_are_perfect():
    gt = _gt([A] * T, [None, B, B, B])
    results = [make_result(1, 1, 0.9, [A] * T), make_result(1, 2, 0.8, [None, B, B, B])]
    metrics = evaluate_tracking(gt, results)
    assert metrics == {"IDF1": 100.0, "MOTA": 100.0, "IDP": 100.0, "IDR": 100.0, "IDs": 0}


def test_identity_swap_mid_video():
    gt = _gt([A] * T, [B] * T)
    # Each prediction follows one object for two frames, then the other.
    results = [make_result(1, 1, 0.9, [A, A, B, B]), make_result(1, 1, 0.9, [B, B, A, A])]
    metrics = evaluate_tracking(gt, results)
    assert metrics["IDs"] == 2  # both objects change hypothesis at frame 2
    assert metrics["MOTA"] == pytest.approx((1 - 2 / 8) * 100)
    # Best global assignment keeps 2 of 4 frames of each object: IDTP = 4 of 8.
    assert metrics["IDF1"] == pytest.approx(50.0)
    assert metrics["IDP"] == pytest.approx(50.0) and metrics["IDR"] == pytest.approx(50.0)


def test_misses_and_false_positive():
    gt = _gt([A] * T)
    results = [
        make_result(1, 1, 0.9, [A, A, None, None]),  # misses frames 2 and 3
        make_result(1, 1, 0.9, [None, None, None, B]),  # false positive in frame 3
    ]
    metrics = evaluate_tracking(gt, results)
    assert metrics["MOTA"] == pytest.approx((1 - (2 + 1) / 4) * 100)  # FN 2, FP 1, 4 GT
    assert metrics["IDR"] == pytest.approx(2 / 4 * 100)  # IDTP 2 of 4 GT boxes
    assert metrics["IDP"] == pytest.approx(2 / 3 * 100)  # IDTP 2 of 3 predicted boxes
    assert metrics["IDF1"] == pytest.approx(2 * 2 / (4 + 3) * 100)
    assert metrics["IDs"] == 0


def test_box_iou_below_half_is_no_match_and_low_scores_are_dropped():
    gt = _gt([A] * T)
    shifted = box(H, W, 0, 10, 6, 16)  # box IoU 40 / 160 = 0.25
    metrics = evaluate_tracking(gt, [make_result(1, 1, 0.9, [shifted] * T)])
    assert metrics["MOTA"] == pytest.approx((1 - 8 / 4) * 100)  # 4 FN + 4 FP
    metrics = evaluate_tracking(gt, [make_result(1, 1, 0.3, [A] * T)])
    assert metrics["MOTA"] == pytest.approx(0.0) and metrics["IDP"] == -1.0  # nothing kept
    metrics = evaluate_tracking(gt, [make_result(1, 1, 0.3, [A] * T)], score_threshold=0.2)
    assert metrics["MOTA"] == pytest.approx(100.0)


def test_metrics_accumulate_over_videos():
    gt = make_gt([(1, H, W, 2), (2, H, W, 2)], [(1, 1, [A, A]), (2, 1, [B, B])])
    # Video 1 perfect; video 2 missed entirely: MOTA = 1 - 2 / 4 over both.
    metrics = evaluate_tracking(gt, [make_result(1, 1, 0.9, [A, A])])
    assert metrics["MOTA"] == pytest.approx(50.0)
    assert metrics["IDR"] == pytest.approx(50.0) and metrics["IDP"] == pytest.approx(100.0)
