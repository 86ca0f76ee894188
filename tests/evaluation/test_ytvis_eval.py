import copy
import io
from contextlib import redirect_stdout

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from ytvis_factory import box, make_gt, make_result, random_masks

from ifr.evaluation.ytvis_eval import METRIC_NAMES, evaluate_ytvis, greedy_match

H, W = 20, 20


def _two_track_video():
    """One video (2 frames), two GT tracks of category 1 and two predictions.

    pred a vs GT A: frame 0 I=100 U=120, frame 1 I=100 U=100 -> IoU 200/220 = 0.909.
    pred b vs GT B: frame 0 I=56 U=64, frame 1 (GT absent) U=8 -> IoU 56/72 = 0.778.
    """
    gt_a = [box(H, W, 0, 10, 0, 10), box(H, W, 0, 10, 0, 10)]
    gt_b = [box(H, W, 12, 20, 12, 20), None]
    pred_a = [box(H, W, 0, 10, 0, 12), box(H, W, 0, 10, 0, 10)]
    pred_b = [box(H, W, 12, 20, 13, 20), box(H, W, 0, 2, 16, 20)]
    gt = make_gt([(1, H, W, 2)], [(1, 1, gt_a), (1, 1, gt_b)])
    results = [make_result(1, 1, 0.9, pred_a), make_result(1, 1, 0.8, pred_b)]
    return gt, results


def test_perfect_prediction_gives_100():
    gt = make_gt(
        [(1, H, W, 3), (2, H, W, 2)],
        [
            (1, 1, [box(H, W, 0, 5, 0, 5), None, box(H, W, 2, 9, 2, 9)]),
            (1, 2, [box(H, W, 10, 20, 10, 20)] * 3),
            (2, 1, [None, box(H, W, 0, 20, 0, 3)]),
        ],
    )
    results = [make_result(a["video_id"], a["category_id"], 0.5, []) for a in gt["annotations"]]
    for entry, ann in zip(results, gt["annotations"]):
        entry["segmentations"] = ann["segmentations"]
    metrics = evaluate_ytvis(gt, results)
    for name in ("AP", "AP50", "AP75", "APs", "AR1", "AR10"):
        assert metrics[name] == pytest.approx(100.0)
    assert metrics["APm"] == -1.0 and metrics["APl"] == -1.0  # no medium/large GT


def test_two_tracks_of_known_iou():
    gt, results = _two_track_video()
    metrics = evaluate_ytvis(gt, results)
    # Thresholds .50-.75: both true positives -> AP_t = 1. Thresholds .80-.90: only pred a
    # (the first) -> precision 1 up to recall .5, 51 of the 101 recall points. .95: 0.
    expected_ap = (6 * 1.0 + 3 * 51 / 101 + 0.0) / 10 * 100
    assert metrics["AP"] == pytest.approx(expected_ap)
    assert metrics["AP50"] == pytest.approx(100.0)
    assert metrics["AP75"] == pytest.approx(100.0)
    assert metrics["APs"] == pytest.approx(expected_ap)  # average areas 100 and 64: small
    # AR1: only pred a per video: recall .5 up to threshold .90, 0 at .95.
    assert metrics["AR1"] == pytest.approx(9 * 0.5 / 10 * 100)
    # AR10: recall 1 at 6 thresholds, .5 at 3, 0 at .95.
    assert metrics["AR10"] == pytest.approx((6 + 1.5) / 10 * 100)


def test_false_positive_ranked_between_true_positives():
    track1 = [box(H, W, 0, 10, 0, 10)]
    track2 = [box(H, W, 5, 15, 5, 15)]
    gt = make_gt([(1, H, W, 1), (2, H, W, 1)], [(1, 1, track1), (2, 1, track2)])
    results = [
        make_result(1, 1, 0.9, track1),  # TP
        make_result(2, 1, 0.8, [box(H, W, 16, 20, 16, 20)]),  # FP (disjoint)
        make_result(2, 1, 0.7, track2),  # TP
    ]
    metrics = evaluate_ytvis(gt, results)
    # precision [1, 1/2, 2/3] at recall [.5, .5, 1] -> interpolated [1, 2/3, 2/3]:
    # recall points 0..0.50 (51) read 1, points 0.51..1 (50) read 2/3.
    assert metrics["AP"] == pytest.approx((51 + 50 * 2 / 3) / 101 * 100)
    assert metrics["AR10"] == pytest.approx(100.0)
    # AR1 keeps the top prediction of each video: video 2's is the false positive.
    assert metrics["AR1"] == pytest.approx(50.0)


def test_false_positive_with_higher_score_than_true_positive():
    track = [box(H, W, 0, 10, 0, 10)]
    gt = make_gt([(1, H, W, 1)], [(1, 1, track)])
    results = [make_result(1, 1, 0.9, [box(H, W, 15, 20, 15, 20)]), make_result(1, 1, 0.8, track)]
    metrics = evaluate_ytvis(gt, results)
    # precision [0, 1/2] at recall [0, 1] -> interpolated [1/2, 1/2] at every recall point.
    assert metrics["AP"] == pytest.approx(50.0)
    assert metrics["AR1"] == pytest.approx(0.0)  # the cap keeps only the false positive
    assert metrics["AR10"] == pytest.approx(100.0)


def test_area_ranges_use_average_area_over_present_frames():
    size = 300
    small = [box(size, size, 0, 10, 0, 10)] * 2  # 100
    # Present in one frame of two with 150*150 = 22500 (medium); averaged over both frames
    # it would be 11250 (small).
    medium = [box(size, size, 20, 170, 20, 170), None]
    large = [box(size, size, 0, 270, 30, 300)] * 2  # 72900
    gt = make_gt([(1, size, size, 2)], [(1, 1, small), (1, 1, medium), (1, 1, large)])
    results = [
        make_result(1, 1, 0.95, [box(size, size, 280, 290, 0, 10)] * 2),  # small FP
        make_result(1, 1, 0.9, large),
        make_result(1, 1, 0.8, small),
    ]
    metrics = evaluate_ytvis(gt, results)
    # small: FP then TP on 1 GT -> 1/2 at every recall point.
    assert metrics["APs"] == pytest.approx(50.0)
    assert metrics["APm"] == pytest.approx(0.0)  # medium GT missed
    assert metrics["APl"] == pytest.approx(100.0)  # unmatched small predictions ignored
    # all: precision [0, 1/2, 2/3] at recall [0, 1/3, 2/3]: interpolated 2/3 up to 2/3.
    assert metrics["AP"] == pytest.approx(67 * (2 / 3) / 101 * 100)


def test_empty_frames_contribute_nothing_to_iou():
    # Present in frames 1 and 3 of 4; the prediction is empty (None) where the GT is.
    track = [None, box(H, W, 0, 4, 0, 4), None, box(H, W, 3, 9, 3, 9)]
    gt = make_gt([(1, H, W, 4)], [(1, 1, track)])
    assert evaluate_ytvis(gt, [make_result(1, 1, 0.5, track)])["AP"] == pytest.approx(100.0)
    # The prediction also covers frame 0 (where the GT is absent): I = 16 + 36, U = I + 9.
    with_extra = [box(H, W, 0, 3, 0, 3)] + track[1:]
    metrics = evaluate_ytvis(gt, [make_result(1, 1, 0.5, with_extra)])
    iou = 52 / 61  # 0.852: a true positive up to threshold .85
    assert iou > 0.85
    assert metrics["AP"] == pytest.approx(8 / 10 * 100)


def test_category_without_gt_is_ignored():
    track = [box(H, W, 0, 10, 0, 10)]
    gt = make_gt([(1, H, W, 1)], [(1, 1, track)], categories=(1, 2, 3))
    results = [make_result(1, 1, 0.5, track), make_result(1, 2, 0.9, track)]
    metrics = evaluate_ytvis(gt, results)
    assert metrics["AP"] == pytest.approx(100.0)
    assert metrics["AR1"] == pytest.approx(100.0)


def test_crowd_gt_is_neither_missed_nor_false_positive():
    track = [box(H, W, 0, 10, 0, 10)]
    crowd = [box(H, W, 10, 20, 10, 20)]
    gt = make_gt([(1, H, W, 1)], [(1, 1, track), (1, 1, crowd, 1)])
    # A prediction on the crowd region, scored above the true positive, is ignored.
    results = [make_result(1, 1, 0.9, crowd), make_result(1, 1, 0.8, track)]
    metrics = evaluate_ytvis(gt, results)
    assert metrics["AP"] == pytest.approx(100.0)


def test_no_results_gives_zero_and_no_gt_gives_minus_one():
    track = [box(H, W, 0, 10, 0, 10)]
    metrics = evaluate_ytvis(make_gt([(1, H, W, 1)], [(1, 1, track)]), [])
    assert metrics["AP"] == 0.0 and metrics["AR10"] == 0.0
    metrics = evaluate_ytvis(make_gt([(1, H, W, 1)], []), [make_result(1, 1, 0.5, track)])
    assert all(metrics[name] == -1.0 for name in METRIC_NAMES)


def test_gt_polygons_and_uncompressed_rle_are_read():
    gt = make_gt([(1, H, W, 2)], [])
    # Frame 0: a 10x10 square as a polygon; frame 1: uncompressed RLE of rows 0-1 of col 0.
    polygon = [[0, 0, 10, 0, 10, 10, 0, 10]]
    uncompressed = {"size": [H, W], "counts": [0, 2, H * W - 2]}
    gt["annotations"] = [
        {
            "id": 1,
            "video_id": 1,
            "category_id": 1,
            "iscrowd": 0,
            "areas": [100, 2],
            "segmentations": [polygon, uncompressed],
        }
    ]
    from pycocotools import mask as mask_util

    polygon_rle = mask_util.merge(mask_util.frPyObjects(polygon, H, W))
    frame1 = np.zeros((H, W), bool)
    frame1[0:2, 0] = True
    pred = [mask_util.decode(polygon_rle).astype(bool), frame1]
    assert evaluate_ytvis(gt, [make_result(1, 1, 0.5, pred)])["AP"] == pytest.approx(100.0)


def test_bad_results_raise_naming_the_entry():
    track = [box(H, W, 0, 10, 0, 10)]
    gt = make_gt([(1, H, W, 1)], [(1, 1, track)])
    with pytest.raises(ValueError, match="entry 0 .*video id 7 is not in the ground truth"):
        evaluate_ytvis(gt, [make_result(7, 1, 0.5, track)])
    with pytest.raises(ValueError, match="entry 1 .*2 frames, the ground truth.s video 1 has 1"):
        evaluate_ytvis(gt, [make_result(1, 1, 0.5, track), make_result(1, 1, 0.5, track * 2)])
    with pytest.raises(ValueError, match="'category_id' 0 is not a ground-truth category"):
        evaluate_ytvis(gt, [make_result(1, 0, 0.5, track)])


def test_greedy_match_prefers_highest_iou_and_regular_over_ignored_gt():
    ious = np.array([[0.6, 0.7, 0.9], [0.6, 0.7, 0.9]])
    gt_ignore = np.array([False, False, True])
    matched, ignored = greedy_match(ious, gt_ignore, np.zeros(3, bool), np.array([0.5, 0.65, 0.8]))
    # t=.5: d0 -> gt1 (best regular), d1 -> gt0. t=.65: d0 -> gt1, d1 -> ignored gt2.
    # t=.8: no regular gt above; d0 -> ignored gt2, d1 unmatched (gt2 taken, not crowd).
    assert matched.tolist() == [[True, True], [True, True], [True, False]]
    assert ignored.tolist() == [[False, False], [False, True], [True, False]]


def _to_coco(gt, results):
    """COCO image-level equivalents of single-frame YouTube-VIS ground truth and results."""
    images = [{"id": v["id"], "height": v["height"], "width": v["width"]} for v in gt["videos"]]
    annotations = [
        {
            "id": a["id"],
            "image_id": a["video_id"],
            "category_id": a["category_id"],
            "segmentation": a["segmentations"][0],
            "area": a["areas"][0],
            "bbox": [0, 0, 1, 1],
            "iscrowd": a["iscrowd"],
        }
        for a in gt["annotations"]
    ]
    coco_gt = COCO()
    coco_gt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": copy.deepcopy(gt["categories"]),
    }
    coco_gt.createIndex()
    detections = [
        {
            "image_id": r["video_id"],
            "category_id": r["category_id"],
            "score": r["score"],
            "segmentation": r["segmentations"][0],
        }
        for r in results
    ]
    return coco_gt, coco_gt.loadRes(detections)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_frame_videos_match_pycocotools_cocoeval(seed):
    rng = np.random.default_rng(seed)
    size = 300  # large enough for all three YouTube-VIS area ranges
    videos = [(v, size, size, 1) for v in range(1, 9)]
    annotations, results = [], []
    for video_id, *_ in videos:
        for mask in random_masks(rng, int(rng.integers(0, 4)), size, size):
            category = int(rng.integers(1, 4))
            annotations.append((video_id, category, [mask]))
            if rng.random() < 0.8:  # a perturbed detection of it, maybe of a wrong class
                pred = np.roll(mask, int(rng.integers(-40, 41)), axis=int(rng.integers(0, 2)))
                wrong = rng.random() < 0.15
                results.append(
                    make_result(
                        video_id,
                        1 + category % 3 if wrong else category,
                        float(rng.random()),
                        [pred],
                    )
                )
        for mask in random_masks(rng, int(rng.integers(0, 3)), size, size):  # false positives
            category = int(rng.integers(1, 4))
            results.append(make_result(video_id, category, float(rng.random()), [mask]))
    gt = make_gt(videos, annotations, categories=(1, 2, 3))

    coco_gt, coco_dt = _to_coco(gt, results)
    coco_eval = COCOeval(coco_gt, coco_dt, iouType="segm")
    coco_eval.params.areaRng = [[0, 1e5**2], [0, 128**2], [128**2, 256**2], [256**2, 1e5**2]]
    with redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    stats = coco_eval.stats
    reference = dict(zip(METRIC_NAMES, [stats[i] for i in (0, 1, 2, 3, 4, 5, 6, 7)]))

    metrics = evaluate_ytvis(gt, results)
    for name in METRIC_NAMES:
        expected = reference[name] * 100 if reference[name] >= 0 else -1.0
        assert metrics[name] == pytest.approx(expected, abs=1e-9), name
