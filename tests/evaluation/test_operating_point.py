"""The operating point: the tracking metrics at each threshold of a grid, and the
threshold of best IDF1 (ties to the lowest), on hand-made tracks."""

import pytest
from ytvis_factory import box, make_gt, make_result

from ifr.evaluation.operating_point import THRESHOLDS, choose_threshold, tracking_curve
from ifr.evaluation.results_io import parse_results
from ifr.evaluation.tracks import parse_ground_truth

H, W, T = 40, 40, 4
A = box(H, W, 0, 10, 0, 10)
B = box(H, W, 20, 30, 20, 30)


def _curve(thresholds=THRESHOLDS):
    # One object. The right track scores 0.6, a false positive elsewhere 0.3.
    gt = parse_ground_truth(make_gt([(1, H, W, T)], [(1, 1, [A] * T)]))
    results = [make_result(1, 1, 0.6, [A] * T), make_result(1, 1, 0.3, [B] * T)]
    return tracking_curve(gt, parse_results(results, gt), thresholds)


def test_curve_holds_every_threshold_of_the_grid():
    assert THRESHOLDS[0] == 0.05 and THRESHOLDS[-1] == 0.95 and len(THRESHOLDS) == 19
    assert list(_curve()) == list(THRESHOLDS)


def test_curve_values_by_hand():
    curve = _curve((0.3, 0.35, 0.6, 0.65))
    # Both tracks: IDTP 4 of 4 GT and 8 predicted boxes: IDF1 = 2 * 4 / (4 + 8).
    assert curve[0.3]["IDF1"] == pytest.approx(100 * 8 / 12)
    assert curve[0.3]["IDP"] == pytest.approx(50.0)
    # The false positive (0.3) is cut from 0.35 on: perfect.
    assert curve[0.35]["IDF1"] == pytest.approx(100.0)
    assert curve[0.6]["IDF1"] == pytest.approx(100.0)
    # Above 0.6 nothing is left: no recall.
    assert curve[0.65]["IDR"] == 0.0 and curve[0.65]["IDF1"] == 0.0


def test_choose_threshold_takes_the_best_and_the_lowest_among_equals():
    # IDF1 is 100 from 0.35 to 0.6: the lowest of them.
    assert choose_threshold(_curve()) == 0.35
    curve = {0.1: {"IDF1": 50.0}, 0.2: {"IDF1": 70.0}, 0.3: {"IDF1": 70.0}, 0.4: {"IDF1": 10.0}}
    assert choose_threshold(curve) == 0.2


def test_choose_threshold_by_another_metric_and_undefined_values():
    curve = {0.1: {"IDF1": 50.0, "HOTA": 40.0}, 0.5: {"IDF1": 20.0, "HOTA": 60.0}}
    assert choose_threshold(curve, "HOTA") == 0.5
    assert choose_threshold({0.1: {"IDP": -1.0}, 0.9: {"IDP": 0.0}}, "IDP") == 0.9


def test_choose_threshold_refuses_empty_curve_and_unknown_metric():
    with pytest.raises(ValueError, match="empty"):
        choose_threshold({})
    with pytest.raises(ValueError, match="'XYZ'"):
        choose_threshold({0.5: {"IDF1": 1.0}}, "XYZ")
