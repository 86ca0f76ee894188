import subprocess
import sys

import numpy as np
import pytest
from ytvis_factory import PERFECT_TRACKING, box, make_gt, make_result

from ifr.evaluation.tracking import TRACKING_METRIC_NAMES, evaluate_tracking

H, W, T = 40, 40, 4
A = box(H, W, 0, 10, 0, 10)  # top-left object
B = box(H, W, 20, 30, 20, 30)  # bottom-right object, far from A


def _gt(*tracks):
    return make_gt([(1, H, W, T)], [(1, 1, track) for track in tracks])


def test_identical_tracks_are_perfect():
    gt = _gt([A] * T, [None, B, B, B])
    results = [make_result(1, 1, 0.9, [A] * T), make_result(1, 2, 0.8, [None, B, B, B])]
    metrics = evaluate_tracking(gt, results, 0.5)
    assert metrics == PERFECT_TRACKING
    assert tuple(metrics) == TRACKING_METRIC_NAMES


def test_identity_swap_mid_video():
    gt = _gt([A] * T, [B] * T)
    # Each prediction follows one object for two frames, then the other.
    results = [make_result(1, 1, 0.9, [A, A, B, B]), make_result(1, 1, 0.9, [B, B, A, A])]
    metrics = evaluate_tracking(gt, results, 0.5)
    assert metrics["IDs"] == 2  # both objects change hypothesis at frame 2
    assert metrics["MOTA"] == pytest.approx((1 - 2 / 8) * 100)
    # Best global assignment keeps 2 of 4 frames of each object: IDTP = 4 of 8.
    assert metrics["IDF1"] == pytest.approx(50.0)
    assert metrics["IDP"] == pytest.approx(50.0) and metrics["IDR"] == pytest.approx(50.0)
    # HOTA: every mask detected exactly (DetA 1); each (object, prediction) pair matches in
    # 2 frames of the 4 + 4 they have: AssA = sum over the 8 matches of 2 / (4 + 4 - 2) / 8.
    assert metrics["DetA"] == pytest.approx(100.0)
    assert metrics["AssA"] == pytest.approx(100 / 3)
    assert metrics["HOTA"] == pytest.approx(100 * (1 / 3) ** 0.5)
    # Each object is covered by both predictions.
    assert metrics["OneQuery"] == 0.0 and metrics["QueriesPerTrack"] == 2.0


def test_misses_and_false_positive():
    gt = _gt([A] * T)
    results = [
        make_result(1, 1, 0.9, [A, A, None, None]),  # misses frames 2 and 3
        make_result(1, 1, 0.9, [None, None, None, B]),  # false positive in frame 3
    ]
    metrics = evaluate_tracking(gt, results, 0.5)
    assert metrics["MOTA"] == pytest.approx((1 - (2 + 1) / 4) * 100)  # FN 2, FP 1, 4 GT
    assert metrics["IDR"] == pytest.approx(2 / 4 * 100)  # IDTP 2 of 4 GT boxes
    assert metrics["IDP"] == pytest.approx(2 / 3 * 100)  # IDTP 2 of 3 predicted boxes
    assert metrics["IDF1"] == pytest.approx(2 * 2 / (4 + 3) * 100)
    assert metrics["IDs"] == 0


def test_box_iou_below_half_is_no_match_and_low_scores_are_dropped():
    gt = _gt([A] * T)
    shifted = box(H, W, 0, 10, 6, 16)  # box IoU 40 / 160 = 0.25
    metrics = evaluate_tracking(gt, [make_result(1, 1, 0.9, [shifted] * T)], 0.5)
    assert metrics["MOTA"] == pytest.approx((1 - 8 / 4) * 100)  # 4 FN + 4 FP
    metrics = evaluate_tracking(gt, [make_result(1, 1, 0.3, [A] * T)], 0.5)
    assert metrics["MOTA"] == pytest.approx(0.0) and metrics["IDP"] == -1.0  # nothing kept
    metrics = evaluate_tracking(gt, [make_result(1, 1, 0.3, [A] * T)], score_threshold=0.2)
    assert metrics["MOTA"] == pytest.approx(100.0)


def test_metrics_accumulate_over_videos():
    gt = make_gt([(1, H, W, 2), (2, H, W, 2)], [(1, 1, [A, A]), (2, 1, [B, B])])
    # Video 1 perfect; video 2 missed entirely: MOTA = 1 - 2 / 4 over both.
    metrics = evaluate_tracking(gt, [make_result(1, 1, 0.9, [A, A])], 0.5)
    assert metrics["MOTA"] == pytest.approx(50.0)
    assert metrics["IDR"] == pytest.approx(50.0) and metrics["IDP"] == pytest.approx(100.0)


def test_single_identity_switch():
    gt = _gt([A] * T, [B] * T)
    # Object A: one prediction for frames 0-1, another for frames 2-3; B tracked perfectly.
    results = [
        make_result(1, 1, 0.9, [A, A, None, None]),
        make_result(1, 1, 0.9, [None, None, A, A]),
        make_result(1, 1, 0.9, [B] * T),
    ]
    metrics = evaluate_tracking(gt, results, 0.5)
    assert metrics["IDs"] == 1 and metrics["MOTA"] == pytest.approx((1 - 1 / 8) * 100)
    # DetA 1. AssA over the 8 matches: A's 4 with 2 / (4 + 2 - 2) = 1/2 each, B's 4 with 1.
    assert metrics["DetA"] == pytest.approx(100.0)
    assert metrics["AssA"] == pytest.approx((4 * 0.5 + 4 * 1.0) / 8 * 100)
    assert metrics["HOTA"] == pytest.approx(100 * 0.75**0.5)
    # A is covered by 2 predictions, B by 1.
    assert metrics["OneQuery"] == pytest.approx(50.0)
    assert metrics["QueriesPerTrack"] == pytest.approx(1.5)


def test_hota_averages_over_its_iou_thresholds():
    gt = _gt([A] * T)
    wider = box(H, W, 0, 10, 0, 11)  # mask IoU 100 / 110 = 0.909
    metrics = evaluate_tracking(gt, [make_result(1, 1, 0.9, [wider] * T)], 0.5)
    # Matched at the 18 thresholds .05 .. .90 of the 19, missed (and a false positive) at .95.
    for name in ("HOTA", "DetA", "AssA"):
        assert metrics[name] == pytest.approx(18 / 19 * 100)
    assert metrics["QueriesPerTrack"] == 1.0


def test_covering_counts_one_to_one_matches_at_half_iou():
    gt = _gt([A] * T)
    duplicate = box(H, W, 0, 10, 0, 9)  # IoU 0.9 with A, lower than the exact prediction
    half = box(H, W, 0, 10, 0, 4)  # IoU 0.4: never covers A
    results = [
        make_result(1, 1, 0.9, [A] * T),
        make_result(1, 1, 0.8, [duplicate] * T),
        make_result(1, 1, 0.7, [None, None, half, half]),
    ]
    metrics = evaluate_tracking(gt, results, 0.5)
    # The duplicate loses every frame's one-to-one matching to the exact prediction.
    assert metrics["OneQuery"] == 100.0 and metrics["QueriesPerTrack"] == 1.0
    # Without the exact prediction, the duplicate covers A; the IoU-0.4 one does not.
    metrics = evaluate_tracking(gt, results[1:], 0.5)
    assert metrics["OneQuery"] == 100.0 and metrics["QueriesPerTrack"] == 1.0
    # Nothing covered: undefined.
    metrics = evaluate_tracking(gt, results[2:], 0.5)
    assert metrics["OneQuery"] == -1.0 and metrics["QueriesPerTrack"] == -1.0


def test_no_ground_truth_is_undefined():
    gt = make_gt([(1, H, W, T)], [])
    metrics = evaluate_tracking(gt, [make_result(1, 1, 0.9, [A] * T)], 0.5)
    assert metrics["HOTA"] == -1.0 and metrics["QueriesPerTrack"] == -1.0


@pytest.mark.slow
def test_numpy_shim_comes_with_the_tracking_module_not_with_import_ifr():
    code = (
        "import numpy, ifr; before = hasattr(numpy, 'asfarray'); "
        "import ifr.evaluation.tracking; print(before, hasattr(numpy, 'asfarray'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":  # asfarray was removed in NumPy 2
        assert proc.stdout.split() == ["False", "True"]
    else:
        assert proc.stdout.split() == ["True", "True"]


def test_per_video_sums_equal_motmetrics_overall_assignment():
    """The per-video counts summed (bounded memory) give py-motmetrics' OVERALL figures,
    whose identity assignment spans every video at once."""
    import motmetrics as mm

    from ifr.evaluation.tracking import summarize_accumulators

    rng = np.random.default_rng(0)
    accumulators = []
    for _ in range(4):
        accumulator = mm.MOTAccumulator(auto_id=False)
        for frame in range(6):
            gt_ids = list(rng.choice(5, size=rng.integers(0, 5), replace=False))
            dt_ids = list(rng.choice(7, size=rng.integers(0, 6), replace=False))
            distances = rng.random((len(gt_ids), len(dt_ids)))
            distances[distances > 0.6] = np.nan
            accumulator.update(gt_ids, dt_ids, distances, frameid=frame)
        accumulators.append(accumulator)
    overall = (
        mm.metrics.create()
        .compute_many(
            accumulators,
            metrics=["idf1", "mota", "idp", "idr", "num_switches"],
            names=[str(i) for i in range(len(accumulators))],
            generate_overall=True,
        )
        .loc["OVERALL"]
    )
    ours = summarize_accumulators(accumulators)
    for name, theirs in (("IDF1", "idf1"), ("MOTA", "mota"), ("IDP", "idp"), ("IDR", "idr")):
        assert ours[name] == pytest.approx(100 * float(overall[theirs]), abs=1e-9), name
    assert ours["IDs"] == int(overall["num_switches"])
