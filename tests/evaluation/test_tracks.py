import numpy as np
import pytest

from ifr.evaluation.tracks import (
    average_area,
    gt_tracks,
    result_tracks,
    segmentation_to_rle,
    track_iou_matrix,
    video_infos,
)
from ytvis_factory import make_gt, make_result, random_masks


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


def test_gt_errors_name_the_annotation():
    gt = make_gt([(1, 4, 4, 2)], [(1, 1, [None, None])])
    gt["annotations"][0]["segmentations"] = [None]
    with pytest.raises(ValueError, match="annotation 1 .*1 segmentations for a video of 2"):
        gt_tracks(gt, video_infos(gt))
    gt["annotations"][0]["video_id"] = 9
    with pytest.raises(ValueError, match="annotation 1: video id 9"):
        gt_tracks(gt, video_infos(gt))


def test_segmentation_to_rle_rejects_unknown_format():
    assert segmentation_to_rle(None, 4, 4) is None
    assert segmentation_to_rle([], 4, 4) is None
    with pytest.raises(ValueError, match="unknown segmentation format"):
        segmentation_to_rle("abc", 4, 4)
