"""The operating point: IDF1 at each threshold of a grid (by hand, and equal to
py-motmetrics' IDF1 of ``tracking_metrics`` on random tracks), and the threshold of best
IDF1 (ties to the lowest)."""

import numpy as np
import pytest
from ytvis_factory import box, make_gt, make_result

from ifr.evaluation.operating_point import THRESHOLDS, choose_threshold, idf1_curve
from ifr.evaluation.results_io import parse_results
from ifr.evaluation.tracking import tracking_metrics
from ifr.evaluation.tracks import parse_ground_truth

H, W, T = 40, 40, 4
A = box(H, W, 0, 10, 0, 10)
B = box(H, W, 20, 30, 20, 30)


def _parsed(gt, results):
    gt = parse_ground_truth(gt)
    return gt, parse_results(results, gt)


def _one_object_case():
    # One object. The right track scores 0.6, a false positive elsewhere 0.3.
    gt = make_gt([(1, H, W, T)], [(1, 1, [A] * T)])
    return _parsed(gt, [make_result(1, 1, 0.6, [A] * T), make_result(1, 1, 0.3, [B] * T)])


def test_curve_holds_every_threshold_of_the_grid():
    assert THRESHOLDS[:3] == (0.05, 0.1, 0.15) and THRESHOLDS[18:] == (0.95, 0.96, 0.97, 0.98, 0.99)
    assert list(THRESHOLDS) == sorted(THRESHOLDS) and len(THRESHOLDS) == 23
    assert list(idf1_curve(*_one_object_case())) == list(THRESHOLDS)


def test_curve_values_by_hand():
    curve = idf1_curve(*_one_object_case(), thresholds=(0.3, 0.35, 0.6, 0.65))
    # Both tracks: IDTP 4 of 4 GT and 8 predicted boxes: IDF1 = 2 * 4 / (4 + 8).
    assert curve[0.3] == pytest.approx(100 * 8 / 12)
    # The false positive (0.3) is cut from 0.35 on: perfect; above 0.6 nothing is left.
    assert curve[0.35] == pytest.approx(100.0) and curve[0.6] == pytest.approx(100.0)
    assert curve[0.65] == 0.0


def test_identity_switch_counts_the_larger_part():
    # A prediction follows the object for 3 frames, another for 1: IDTP 3 of 4 + 4 boxes.
    gt = make_gt([(1, H, W, T)], [(1, 1, [A] * T)])
    results = [make_result(1, 1, 0.9, [A, A, A, None]), make_result(1, 1, 0.9, [None] * 3 + [A])]
    assert idf1_curve(*_parsed(gt, results), thresholds=(0.5,))[0.5] == pytest.approx(75.0)


def _random_box(rng):
    y, x = rng.integers(0, 30, size=2)
    h, w = rng.integers(4, 12, size=2)
    return box(H, W, y, min(y + h, H), x, min(x + w, W))


def _random_track(rng, jitter_of=None):
    track = []
    for t in range(T):
        if rng.random() < 0.2:
            track.append(None)
        elif jitter_of is not None and jitter_of[t] is not None and rng.random() < 0.7:
            track.append(np.roll(jitter_of[t], tuple(rng.integers(-2, 3, size=2)), axis=(0, 1)))
        else:
            track.append(_random_box(rng))
    return track


@pytest.mark.parametrize("seed", range(4))
def test_curve_equals_motmetrics_idf1_on_random_tracks(seed):
    rng = np.random.default_rng(seed)
    videos = [(v, H, W, T) for v in (1, 2, 3)]
    gt_tracks = [(v, 1, _random_track(rng)) for v in (1, 2, 3) for _ in range(3)]
    results = []
    for video_id, _, track in gt_tracks:
        for _ in range(2):  # predictions near the objects, some far, random scores
            results.append(make_result(video_id, 1, float(rng.random()), _random_track(rng, track)))
    gt, predictions = _parsed(make_gt(videos, gt_tracks), results)
    curve = idf1_curve(gt, predictions)
    for threshold, value in curve.items():
        assert value == pytest.approx(tracking_metrics(gt, predictions, threshold)["IDF1"])


def test_choose_threshold_takes_the_best_and_the_lowest_among_equals():
    # IDF1 is 100 from 0.35 to 0.6: the lowest of them.
    assert choose_threshold(idf1_curve(*_one_object_case())) == 0.35
    assert choose_threshold({0.1: 50.0, 0.2: 70.0, 0.3: 70.0, 0.4: 10.0}) == 0.2


def test_choose_threshold_skips_undefined_values_and_refuses_an_empty_curve():
    assert choose_threshold({0.1: -1.0, 0.9: 0.0}) == 0.9
    with pytest.raises(ValueError, match="empty"):
        choose_threshold({})
