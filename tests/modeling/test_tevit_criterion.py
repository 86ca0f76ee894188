"""TeViT's matcher and losses: the focal cost, Dice and clip boxes by hand, matching over
the frames where an instance is present, and the loss of a perfect prediction."""

import math

import pytest
import torch

from ifr.modeling.criterion.tevit import TeViTCriterion, clip_boxes, mask_dice_loss
from ifr.modeling.matcher.tevit import TeViTMatcher, focal_class_cost


def test_focal_class_cost_by_hand():
    # p = 0.5: pos = ln2 * 0.25 * 0.25, neg = ln2 * 0.75 * 0.25
    cost = focal_class_cost(torch.zeros(1, 3), torch.tensor([2]))
    assert cost.item() == pytest.approx(math.log(2) * (0.0625 - 0.1875), rel=1e-5)
    # a confident right class costs less than a confident wrong one
    logits = torch.tensor([[5.0, -5.0]])
    assert focal_class_cost(logits, torch.tensor([0])) < focal_class_cost(logits, torch.tensor([1]))


def test_mask_dice_loss_by_hand():
    certain = torch.full((1, 4, 4), 30.0)
    full, half = torch.ones(1, 4, 4), torch.zeros(1, 4, 4)
    half[0, :2] = 1
    assert mask_dice_loss(certain, full).item() == pytest.approx(0.0, abs=1e-5)
    # p = 1 everywhere: 1 - 2 * 8 / (16 + 8)
    assert mask_dice_loss(certain, half).item() == pytest.approx(1 / 3, rel=1e-4)


def test_mask_targets_are_cut_from_the_box_clipped_to_the_image_with_the_class():
    # One positive: a box half outside a 16 x 16 frame whose mask is full. mmdetection clips
    # the box to the image before cutting the target, so the whole 28 x 28 target is 1
    # (unclipped, its outer half would be 0); the mask logits are read in the target class.
    seen = {}

    def roi_mask_logits(stage, frame_idx, boxes, queries, labels):
        seen.update(stage=stage, frame_idx=frame_idx, boxes=boxes, labels=labels)
        return torch.full((1, 28, 28), 30.0)  # certain everywhere

    stage = {
        "stage": 1,
        "pred_logits": torch.zeros(1, 1, 2, 3),
        "pred_boxes": torch.tensor([[[[0.0, 0.0, 1.0, 1.0], [0.5, 0.0, 1.5, 1.0]]]]),
        "attn_feats": torch.zeros(1, 1, 2, 4),
    }
    positives = (torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    loss = TeViTCriterion._mask_loss(
        stage,
        {"roi_mask_logits": roi_mask_logits},
        positives,
        torch.tensor([2]),
        torch.ones(1, 16, 16),
        num_pos=1.0,
    )
    assert loss.item() == pytest.approx(0.0, abs=1e-5)  # target all ones: clipped
    assert seen["labels"].tolist() == [2] and seen["frame_idx"].tolist() == [1]
    # the mask head itself sees the unclipped box, as mmdetection's
    assert torch.equal(seen["boxes"], torch.tensor([[0.5, 0.0, 1.5, 1.0]]))


def test_clip_boxes_by_hand():
    masks = torch.zeros(1, 2, 40, 80)
    masks[0, 0, 10:20, 30:50] = 1  # frame 1 empty: absent
    boxes, present = clip_boxes(masks)
    assert present.tolist() == [[True, False]]
    assert torch.allclose(boxes[0, 0], torch.tensor([30 / 80, 10 / 40, 50 / 80, 20 / 40]))


def test_matching_uses_only_the_frames_where_the_instance_is_present():
    matcher = TeViTMatcher(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0)
    target_box = torch.tensor([0.1, 0.1, 0.4, 0.4])
    elsewhere = torch.tensor([0.6, 0.6, 0.9, 0.9])
    # query 0 is right in frame 0 (present) and wrong in frame 1 (absent);
    # query 1 is wrong in frame 0 and right in frame 1.
    pred_boxes = torch.stack(
        [torch.stack([target_box, elsewhere]), torch.stack([elsewhere, target_box])]
    )[None]  # (1, 2, 2, 4)
    outputs = {"pred_logits": torch.zeros(1, 2, 2, 3), "pred_boxes": pred_boxes}
    target = {
        "labels": torch.tensor([1]),
        "boxes": target_box.expand(1, 2, 4).clone(),
        "present": torch.tensor([[True, False]]),
    }
    ((queries, instances),) = matcher(outputs, [target])
    assert queries.tolist() == [0] and instances.tolist() == [0]
    target["present"] = torch.tensor([[False, True]])
    ((queries, _),) = matcher(outputs, [target])
    assert queries.tolist() == [1]


def test_matching_cost_averages_over_present_frames():
    matcher = TeViTMatcher(cost_class=0.0, cost_bbox=1.0, cost_giou=0.0)
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5], [0.9, 0.9, 1.0, 1.0]]])
    tgt = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]]])
    present = torch.tensor([[True, True, False]])
    cost = matcher.cost(torch.zeros(1, 3, 2), boxes, torch.tensor([0]), tgt, present)
    assert cost.item() == pytest.approx((0.0 + 0.2) / 2)  # L1 summed over coordinates


def test_boxes_are_normalised_by_the_image_size_before_padding():
    masks = torch.zeros(1, 1, 40, 80)  # padded 40 x 80; the image is 30 x 60
    masks[0, 0, 10:20, 30:50] = 1
    boxes, _ = clip_boxes(masks, image_size=(30, 60))
    assert torch.allclose(boxes[0, 0], torch.tensor([30 / 60, 10 / 30, 50 / 60, 20 / 30]))
