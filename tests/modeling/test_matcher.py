"""Tests of ifr/modeling/matcher/point_set.py: the Eq. (4) cost by hand, and the Hungarian
matcher."""

import math

import pytest
import torch

from ifr.layers.matching_cost import clip_matching_cost, focal_class_cost
from ifr.layers.point_sampling import sample_clip_points
from ifr.modeling.matcher import VideoHungarianMatcher

LN3 = math.log(3.0)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _eq4_cost_by_hand(prob_of_class: float, logits, targets, weights=(2.0, 5.0, 5.0)) -> float:
    """-lambda_c p + lambda_m mean BCE + lambda_d (1 - Dice), from scalars."""
    probs = [_sigmoid(x) for x in logits]
    bce = -sum(t * math.log(p) + (1 - t) * math.log(1 - p) for p, t in zip(probs, targets))
    bce /= len(logits)
    dice = (2 * sum(p * t for p, t in zip(probs, targets)) + 1) / (sum(probs) + sum(targets) + 1)
    class_w, mask_w, dice_w = weights
    return -class_w * prob_of_class + mask_w * bce + dice_w * (1 - dice)


def _two_by_two_case():
    """2 queries x 2 targets, T = 2 frames x P = 2 points; query 0 fits target 1 and
    query 1 fits target 0 in both class and mask."""
    pred_probs = torch.tensor([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]], dtype=torch.float64)
    pred_masks = torch.tensor(
        [[[-LN3, LN3], [LN3, -LN3]], [[LN3, LN3], [-LN3, 0.0]]], dtype=torch.float64
    )  # (N=2, T=2, P=2)
    tgt_labels = torch.tensor([0, 1])
    tgt_masks = torch.tensor(
        [[[1.0, 1.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64
    )
    return pred_probs, pred_masks, tgt_labels, tgt_masks


def test_clip_matching_cost_equals_eq4_by_hand():
    pred_probs, pred_masks, tgt_labels, tgt_masks = _two_by_two_case()
    cost = clip_matching_cost(pred_probs, pred_masks.flatten(1), tgt_labels, tgt_masks.flatten(1))
    assert cost.shape == (2, 2)
    for n in range(2):
        for m in range(2):
            expected = _eq4_cost_by_hand(
                pred_probs[n, tgt_labels[m]].item(),
                pred_masks[n].flatten().tolist(),
                tgt_masks[m].flatten().tolist(),
            )
            assert cost[n, m].item() == pytest.approx(expected, rel=1e-6)
    # The optimal assignment is the swap: cost(0->1) + cost(1->0) < cost(0->0) + cost(1->1).
    assert cost[0, 1] + cost[1, 0] < cost[0, 0] + cost[1, 1]


def test_clip_matching_cost_treats_clip_as_one_volume():
    pred_probs, pred_masks, tgt_labels, tgt_masks = _two_by_two_case()
    as_volumes = clip_matching_cost(pred_probs, pred_masks, tgt_labels, tgt_masks)
    flattened = clip_matching_cost(
        pred_probs, pred_masks.flatten(1), tgt_labels, tgt_masks.flatten(1)
    )
    torch.testing.assert_close(as_volumes, flattened)
    # Dice over the volume differs from the mean of per-frame Dice: the frames are pooled.
    per_frame = torch.stack(
        [
            clip_matching_cost(pred_probs, pred_masks[:, t], tgt_labels, tgt_masks[:, t])
            for t in range(2)
        ]
    ).mean(0)
    assert not torch.allclose(as_volumes, per_frame)


def test_clip_matching_cost_weights_and_soft_targets():
    pred_probs = torch.tensor([[0.3, 0.6]], dtype=torch.float64)
    pred_masks = torch.tensor([[[0.0, LN3]]], dtype=torch.float64)  # (1, T=1, P=2)
    tgt_masks = torch.tensor([[[0.25, 0.5]]], dtype=torch.float64)  # probabilities
    cost = clip_matching_cost(
        pred_probs,
        pred_masks,
        torch.tensor([1]),
        tgt_masks,
        cost_class=1.0,
        cost_mask=3.0,
        cost_dice=0.5,
    )
    expected = _eq4_cost_by_hand(0.6, [0.0, LN3], [0.25, 0.5], weights=(1.0, 3.0, 0.5))
    assert cost.item() == pytest.approx(expected, rel=1e-6)


def test_clip_matching_cost_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="same size"):
        clip_matching_cost(
            torch.rand(2, 3), torch.randn(2, 2, 4, 4), torch.tensor([0]), torch.rand(1, 2, 8, 8)
        )


def test_sample_clip_points_uses_the_same_points_in_every_frame():
    masks = torch.randn(3, 2, 5, 5)
    frame_one_is_a_copy = torch.stack([masks[:, 0], masks[:, 0]], dim=1)
    points = sample_clip_points(frame_one_is_a_copy, torch.rand(1, 7, 2))
    assert points.shape == (3, 14)
    torch.testing.assert_close(points[:, :7], points[:, 7:])


def _shuffled_perfect_predictions(num_queries: int, num_classes: int, tgt_labels, tgt_masks, perm):
    """Query perm[j] predicts target j (confident class, mask logits of the right sign);
    other queries predict no class and noise masks."""
    num_frames, height, width = tgt_masks.shape[1:]
    pred_logits = torch.full((num_queries, num_classes), -6.0)
    pred_masks = torch.randn(num_queries, num_frames, height, width)
    for j, query in enumerate(perm):
        pred_logits[query, tgt_labels[j]] = 6.0
        pred_masks[query] = 5.0 * (2 * tgt_masks[j] - 1)
    return pred_logits, pred_masks


def _random_box_masks(num_instances: int, num_frames: int, size: int) -> torch.Tensor:
    """(M, T, size, size) masks of random boxes; instance 0 is absent from frame 1."""
    masks = torch.zeros(num_instances, num_frames, size, size)
    for m in range(num_instances):
        for t in range(num_frames):
            y0, x0 = torch.randint(0, size // 2, (2,)).tolist()
            y1, x1 = torch.randint(size // 2 + 1, size + 1, (2,)).tolist()
            masks[m, t, y0:y1, x0:x1] = 1
    masks[0, 1] = 0
    return masks


def test_matcher_recovers_the_permutation_of_shuffled_targets():
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=64)
    num_queries, num_classes = 6, 4
    tgt_labels = [torch.tensor([2, 0, 3]), torch.tensor([1, 1])]
    tgt_masks = [_random_box_masks(3, 2, 12), _random_box_masks(2, 2, 12)]
    perms = [[4, 0, 2], [5, 3]]
    predictions = [
        _shuffled_perfect_predictions(num_queries, num_classes, labels, masks, perm)
        for labels, masks, perm in zip(tgt_labels, tgt_masks, perms)
    ]
    outputs = {
        "pred_logits": torch.stack([logits for logits, _ in predictions]),
        "pred_masks": torch.stack([masks for _, masks in predictions]),
    }
    targets = [{"labels": labels, "masks": masks} for labels, masks in zip(tgt_labels, tgt_masks)]

    indices = matcher(outputs, targets)

    for (pred_idx, tgt_idx), perm in zip(indices, perms):
        assert pred_idx.dtype == tgt_idx.dtype == torch.int64
        assert dict(zip(tgt_idx.tolist(), pred_idx.tolist())) == dict(enumerate(perm))


def test_matcher_with_no_instances():
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=16)
    outputs = {"pred_logits": torch.randn(2, 5, 3), "pred_masks": torch.randn(2, 5, 2, 4, 4)}
    targets = [
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 2, 16, 16)},
        {"labels": torch.tensor([1]), "masks": torch.ones(1, 2, 16, 16)},
    ]
    (pred_empty, tgt_empty), (pred_one, tgt_one) = matcher(outputs, targets)
    assert pred_empty.shape == tgt_empty.shape == (0,)
    assert pred_empty.dtype == torch.int64
    assert tgt_one.tolist() == [0] and len(pred_one) == 1


def test_matcher_does_not_track_gradients():
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=8)
    outputs = {
        "pred_logits": torch.randn(1, 3, 2, requires_grad=True),
        "pred_masks": torch.randn(1, 3, 1, 4, 4, requires_grad=True),
    }
    targets = [{"labels": torch.tensor([0]), "masks": torch.ones(1, 1, 16, 16)}]
    ((pred_idx, _),) = matcher(outputs, targets)
    assert not pred_idx.requires_grad


def test_matcher_names_the_video_with_a_frame_mismatch():
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=8)
    outputs = {"pred_logits": torch.randn(2, 3, 2), "pred_masks": torch.randn(2, 3, 2, 4, 4)}
    targets = [
        {"labels": torch.tensor([0]), "masks": torch.ones(1, 2, 16, 16)},
        {"labels": torch.tensor([0]), "masks": torch.ones(1, 3, 16, 16)},
    ]
    with pytest.raises(ValueError, match="video 1"):
        matcher(outputs, targets)


def test_matcher_reports_non_finite_costs():
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=8)
    pred_logits = torch.randn(1, 3, 2)
    pred_logits[0, 1, 0] = float("nan")
    outputs = {"pred_logits": pred_logits, "pred_masks": torch.randn(1, 3, 1, 4, 4)}
    targets = [{"labels": torch.tensor([0]), "masks": torch.ones(1, 1, 16, 16)}]
    with pytest.raises(FloatingPointError, match="video 0"):
        matcher(outputs, targets)


def test_matcher_from_config(make_cfg):
    cfg = make_cfg()
    cfg.MODEL.VIS.TRAIN_NUM_POINTS = 99
    matcher = VideoHungarianMatcher(cfg)
    assert (matcher.cost_class, matcher.cost_mask, matcher.cost_dice) == (2.0, 5.0, 5.0)
    assert matcher.num_points == 99


def _focal_cost_by_hand(p: float, alpha: float = 0.25, gamma: float = 2.0) -> float:
    positive = alpha * (1 - p) ** gamma * -math.log(p + 1e-8)
    negative = (1 - alpha) * p**gamma * -math.log(1 - p + 1e-8)
    return positive - negative


def test_focal_class_cost_by_hand():
    probs = torch.tensor([[0.5, 0.9], [0.05, 0.3]], dtype=torch.float64)
    cost = focal_class_cost(probs, torch.tensor([1, 0, 1]), 0.25, 2.0)
    assert cost.shape == (2, 3)
    for n, m, label in [(0, 0, 1), (0, 1, 0), (1, 2, 1), (1, 1, 0)]:
        assert cost[n, m].item() == pytest.approx(_focal_cost_by_hand(probs[n, label].item()))
    # p = 0.5: 0.25 * 0.25 * ln 2 - 0.75 * 0.25 * ln 2
    assert cost[0, 1].item() == pytest.approx(-0.125 * math.log(2))


def _class_or_mask_case():
    """One target (class 0, a full mask), two queries: query 0 is likelier of the class
    (p = 0.3) but has the worse mask (logit 0), query 1 the better mask (logit 0.2) but
    p = 0.05. The mask terms favour query 1 by about 0.69: more than -2p separates them
    (0.5), less than the focal cost does (about 1.1)."""
    logits = torch.tensor([[math.log(0.3 / 0.7), 0.0], [math.log(0.05 / 0.95), 0.0]])
    masks = torch.stack([torch.zeros(2, 8, 8), torch.full((2, 8, 8), 0.2)])[None]
    outputs = {"pred_logits": logits[None], "pred_masks": masks}  # (1, 2, K=2), (1, 2, T=2, 8, 8)
    targets = [{"labels": torch.tensor([0]), "masks": torch.ones(1, 2, 8, 8)}]
    return outputs, targets


@pytest.mark.parametrize("class_cost, chosen", [("probability", 1), ("focal", 0)])
def test_class_cost_decides_between_class_and_mask(make_cfg, class_cost, chosen):
    cfg = make_cfg(overrides={"MODEL.VIS.CLASS_COST": class_cost, "MODEL.VIS.TRAIN_NUM_POINTS": 64})
    matcher = VideoHungarianMatcher(cfg)
    outputs, targets = _class_or_mask_case()
    ((pred_idx, tgt_idx),) = matcher(outputs, targets)
    assert pred_idx.tolist() == [chosen] and tgt_idx.tolist() == [0]


def test_class_cost_refuses_unknown_values_and_softmax_scores(make_cfg):
    with pytest.raises(ValueError, match="MODEL.VIS.CLASS_COST must be one of"):
        VideoHungarianMatcher(make_cfg(overrides={"MODEL.VIS.CLASS_COST": "prob"}))
    cfg = make_cfg(overrides={"MODEL.VIS.CLASS_COST": "focal"})
    with pytest.raises(ValueError, match="needs sigmoid class scores"):
        VideoHungarianMatcher(cfg, class_activation="softmax")
