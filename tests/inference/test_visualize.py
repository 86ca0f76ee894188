import numpy as np
import pycocotools.mask as mask_util
import torch

from ifr.inference.visualize import draw_video, instance_color, kept_instances, track_color


def rle_masks(masks):
    return [mask_util.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]


def moving_masks(num_frames=3, size=(40, 60)):
    masks = np.zeros((num_frames, *size), bool)
    for t in range(num_frames):
        masks[t, 10:30, 5 + 10 * t : 25 + 10 * t] = True
    return masks


def test_track_colors_are_deterministic_and_distinct():
    assert track_color(3) == track_color(3)
    assert len({track_color(i) for i in range(10)}) == 10


def test_each_instance_keeps_one_color_over_the_video():
    masks = moving_masks()
    output = {
        "pred_scores": [0.9, 0.2],
        "pred_labels": [1, 0],
        "pred_masks": [rle_masks(masks), torch.from_numpy(masks)],
    }
    frames = [np.zeros((40, 60, 3), np.uint8) for _ in range(3)]
    drawn = list(draw_video(frames, output, confidence=0.5, class_names=["cat", "dog"]))
    expected = np.asarray(track_color(0)) * 0.5
    for t, image in enumerate(drawn):
        inside = image[15, 12 + 10 * t]  # inside the mask, away from outline and text
        assert np.abs(inside.astype(float) - expected).max() <= 1
        outside = image[35, 55]
        assert not outside.any()
    assert not frames[0].any()  # inputs untouched


def test_class_colors_are_rgb_per_class_and_drawn_in_bgr():
    assert instance_color(4, 1, [[10, 20, 30], [200, 100, 0]]) == (0, 100, 200)
    assert instance_color(4, 7, [[10, 20, 30]]) == track_color(4)  # no colour for class 7
    assert instance_color(4, 0, None) == track_color(4)
    masks = moving_masks()
    output = {"pred_scores": [0.9], "pred_labels": [1], "pred_masks": [rle_masks(masks)]}
    frames = [np.zeros((40, 60, 3), np.uint8) for _ in range(3)]
    drawn = list(draw_video(frames, output, class_colors=[[0, 0, 0], [200, 100, 0]]))
    assert np.abs(drawn[2][15, 32].astype(float) - np.array([0, 50, 100])).max() <= 1


def test_low_scores_are_not_drawn():
    output = {"pred_scores": [0.3, 0.7], "pred_labels": [0, 0], "pred_masks": [None, None]}
    assert kept_instances(output, 0.5) == [1]
    assert kept_instances(output, 0.0) == [1, 0]
