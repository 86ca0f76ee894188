import numpy as np
import pytest
from ytvis_factory import make_gt, make_result, random_masks, rle

from ifr.evaluation.tracks import (
    average_area,
    gt_tracks,
    parse_ground_truth,
    result_tracks,
    track_iou_matrix,
    video_infos,
)


def _dense_track_iou(pred, gt):
    inter = union = 0
    for p, g in zip(pred, gt):
        p = np.zeros((0,), bool) if p is None else p
        g = np.zeros((0,), bool) if g is None else g
        if p.size and g.size:
            inter += np.logical_and(p, g).sum()
            union += np.logical_or(p, g).sum()
        else:
            union += p.sum() + g.sum()
    return inter / union if union else 0.0


def test_track_iou_matrix_matches_dense_computation():
    rng = np.random.default_rng(0)
    h, w, length = 24, 30, 4

    def random_track():
        masks = random_masks(rng, length, h, w)
        return [m if rng.random() < 0.7 else None for m in masks]

    gt_tracks_np = [random_track() for _ in range(3)] + [[None] * length]
    pred_tracks_np = [random_track() for _ in range(5)]
    gt = make_gt([(1, h, w, length)], [(1, 1, t) for t in gt_tracks_np])
    results = [make_result(1, 1, 0.5, t) for t in pred_tracks_np]
    gts = gt_tracks(gt, video_infos(gt))
    dts = result_tracks(results)
    ious = track_iou_matrix(dts, gts)
    expected = [[_dense_track_iou(p, g) for g in gt_tracks_np] for p in pred_tracks_np]
    np.testing.assert_allclose(ious, expected, rtol=0, atol=1e-12)
    assert (ious[:, 3] == 0).all()  # an all-empty GT track


def test_average_area_skips_absent_and_empty_frames():
    assert average_area([None, 10, 0, 30]) == 20.0
    assert average_area([None, 0]) == 0.0


def _two_annotation_gt():
    masks = random_masks(np.random.default_rng(1), 4, 4, 4)
    return make_gt(
        [(1, 4, 4, 2), (2, 4, 4, 2)],
        [(1, 1, masks[:2]), (2, 2, [masks[2], None]), (2, 1, [None, masks[3]])],
    )


def _set_segmentation(ann_index, frame, value):
    return lambda gt: gt["annotations"][ann_index]["segmentations"].__setitem__(frame, value)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda gt: gt["annotations"][2].update(id=1),
            "gt.json: video 2, annotation 1: annotation id 1 appears twice \\(also in video 1\\)",
        ),
        # A ground-truth RLE of another size than the video's (it changed AP silently).
        (
            _set_segmentation(1, 0, rle(np.ones((3, 4), bool))),
            r"gt.json: video 2, annotation 2, frame 0: RLE size \[3, 4\], the video is \[4, 4\]",
        ),
        (
            _set_segmentation(2, 1, {"size": [4, 4], "counts": "@@@@garbage!!"}),
            r"gt.json: video 2, annotation 3, frame 1: 'counts' has a character",
        ),
        (
            _set_segmentation(0, 1, {"size": [4, 4], "counts": [3, 4]}),
            r"gt.json: video 1, annotation 1, frame 1: RLE 'counts' cover 7 pixels",
        ),
        (
            lambda gt: gt["annotations"][0]["segmentations"].pop(),
            "gt.json: video 1, annotation 1: 1 segmentations for a video of 2 frames",
        ),
        (
            lambda gt: gt["annotations"][0].update(video_id=9),
            "gt.json: video 9, annotation 1: video id 9 not in 'videos'",
        ),
        (
            lambda gt: gt["annotations"][0].update(category_id=7),
            "gt.json: video 1, annotation 1: category id 7 not in 'categories'",
        ),
        (
            lambda gt: gt["annotations"][0].update(areas=[1]),
            "gt.json: video 1, annotation 1: 'areas' must be 2 numbers",
        ),
        (
            lambda gt: gt["annotations"][0].pop("segmentations"),
            "gt.json: video 1, annotation 1: missing key 'segmentations'",
        ),
        # A video whose length disagrees with its frames is the ground truth's fault.
        (
            lambda gt: gt["videos"][1].update(length=3),
            "gt.json: video 2: 'length' is 3 but it has 2 file_names",
        ),
        (lambda gt: gt["videos"][1].update(id=1), "gt.json: video 1: video id 1 appears twice"),
        (lambda gt: gt["videos"][0].update(height=0), "gt.json: video 1: 'height' must be"),
        (lambda gt: gt["categories"].append({"id": 1}), r"category id\(s\) \[1\] appear"),
        (lambda gt: gt.pop("videos"), "gt.json: no 'videos' list"),
    ],
)
def test_malformed_ground_truth_is_named(change, message):
    gt = _two_annotation_gt()
    parsed = parse_ground_truth(gt, "gt.json")
    assert [t.id for t in parsed.tracks] == [1, 2, 3] and parsed.categories == [1, 2]
    change(gt)
    with pytest.raises(ValueError, match=message):
        parse_ground_truth(gt, "gt.json")


def test_ground_truth_restrict_keeps_the_videos_tracks():
    parsed = parse_ground_truth(_two_annotation_gt())
    subset = parsed.restrict([2])
    assert list(subset.videos) == [2] and [t.id for t in subset.tracks] == [2, 3]
