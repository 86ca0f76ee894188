"""The criterion's and matcher's batched code paths (written for training speed) against the
straightforward video-by-video computations they replaced: the same numbers, bit for bit,
and the same gradients."""

import pytest
import torch
from torch.nn import functional as F

from ifr.layers import batch_dice_cost, batch_sigmoid_ce_cost, sample_clip_points
from ifr.layers.matching_cost import hungarian_match
from ifr.modeling.criterion import IFRCriterion, build_weight_dict
from ifr.modeling.criterion.ifr import cross_frame_point_logits
from ifr.modeling.matcher import VideoHungarianMatcher


def _criterion():
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=16)
    return IFRCriterion(
        num_classes=3,
        matcher=matcher,
        weight_dict=build_weight_dict(2.0, 5.0, 5.0, 0.3, 0),
        lambda_e=0.3,
        num_points=12,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
    )


def _cross_frame_logits_video_by_video(mask_embeds, mask_features, batch_idx, query_idx, coords):
    """The reference: one select of each video's features and embeddings."""
    logits = []
    for b in batch_idx.unique(sorted=True).tolist():
        in_video = batch_idx == b
        logits.append(
            cross_frame_point_logits(
                mask_embeds[b, query_idx[in_video]], mask_features[b], coords[in_video]
            )
        )
    return torch.cat(logits)


def _leaves(batch=4, queries=5, frames=3, channels=8, size=6):
    torch.manual_seed(0)
    embeds = torch.randn(batch, queries, frames, channels, requires_grad=True)
    features = torch.randn(batch, frames, channels, size, size, requires_grad=True)
    return embeds, features


def test_cross_frame_logits_equal_the_video_by_video_computation_bit_for_bit():
    # Video 1 has no match; queries within a video in any order; 3 frames, 7 points.
    batch_idx = torch.tensor([0, 0, 2, 2, 2, 3])
    query_idx = torch.tensor([4, 1, 0, 3, 2, 1])
    coords = torch.rand(len(batch_idx), 3, 7, 2)
    upstream = torch.randn(len(batch_idx), 3, 3, 7)

    embeds, features = _leaves()
    fast = _criterion()._matched_point_logits(embeds, features, batch_idx, query_idx, coords)
    (fast * upstream).sum().backward()
    fast_grads = embeds.grad.clone(), features.grad.clone()

    embeds.grad, features.grad = None, None
    slow = _cross_frame_logits_video_by_video(embeds, features, batch_idx, query_idx, coords)
    (slow * upstream).sum().backward()

    assert torch.equal(fast, slow)
    assert torch.equal(fast_grads[0], embeds.grad)
    assert torch.equal(fast_grads[1], features.grad)


def test_cross_frame_logits_need_matches_listed_video_by_video():
    embeds, features = _leaves()
    with pytest.raises(ValueError, match="video by video"):
        _criterion()._matched_point_logits(
            embeds, features, torch.tensor([1, 0]), torch.tensor([0, 0]), torch.rand(2, 3, 7, 2)
        )


# ---------------------------------------------------------------- matcher


def _costs_video_by_video(matcher, logits, masks, targets):
    """The reference: per video with instances, its points, both samplings and the Eq. (4)
    cost with the mask BCE written as PyTorch's BCE with all-one and all-zero targets."""
    costs = []
    for b, target in enumerate(targets):
        if len(target["labels"]) == 0:
            continue
        coords = torch.rand(1, matcher.num_points, 2)
        pred = sample_clip_points(masks[b], coords)
        tgt = sample_clip_points(target["masks"], coords)
        positive = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred), reduction="none")
        negative = F.binary_cross_entropy_with_logits(
            pred, torch.zeros_like(pred), reduction="none"
        )
        bce = (positive @ tgt.T + negative @ (1 - tgt).T) / pred.shape[1]
        dice = batch_dice_cost(pred, tgt)
        class_cost = -logits[b].sigmoid()[:, target["labels"]]
        costs.append(2.0 * class_cost + 5.0 * bce + 5.0 * dice)
    return costs


def _match_inputs():
    torch.manual_seed(1)
    logits = torch.randn(4, 6, 3)
    masks = torch.randn(4, 6, 2, 5, 7) * 4
    counts = [3, 0, 1, 6]  # a video without instances; one with as many as queries
    targets = [
        {
            "labels": torch.randint(0, 3, (m,)),
            "masks": (torch.rand(m, 2, 20, 28) > 0.6).float(),
        }
        for m in counts
    ]
    return logits, masks, targets


def test_matcher_costs_and_indices_equal_the_video_by_video_computation():
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=32)
    logits, masks, targets = _match_inputs()

    torch.manual_seed(7)
    indices = matcher({"pred_logits": logits, "pred_masks": masks}, targets)
    torch.manual_seed(7)
    with_instances = [b for b, t in enumerate(targets) if len(t["labels"])]
    costs = matcher._costs(
        logits[with_instances], masks[with_instances], [targets[b] for b in with_instances]
    )
    torch.manual_seed(7)
    reference = _costs_video_by_video(matcher, logits, masks, targets)

    assert len(costs) == len(reference) == 3
    for cost, expected in zip(costs, reference):
        assert torch.equal(cost, expected)  # same random points, same values
    for b, (pred_idx, tgt_idx) in enumerate(indices):
        if b in with_instances:
            expected = hungarian_match(reference[with_instances.index(b)])
            assert torch.equal(pred_idx, expected[0]) and torch.equal(tgt_idx, expected[1])
        else:
            assert len(pred_idx) == len(tgt_idx) == 0


def test_matcher_draws_the_random_points_of_a_video_by_video_loop():
    """What the criterion draws next (its point sampling) must not move: the matcher draws
    exactly num_points x 2 numbers per video with instances."""
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=32)
    logits, masks, targets = _match_inputs()
    torch.manual_seed(3)
    matcher({"pred_logits": logits, "pred_masks": masks}, targets)
    after_matching = torch.rand(5)
    torch.manual_seed(3)
    torch.rand(3, 1, 32, 2)  # 3 videos with instances
    assert torch.equal(after_matching, torch.rand(5))


def test_one_log_sigmoid_gives_the_bce_of_all_one_and_all_zero_targets():
    """batch_sigmoid_ce_cost writes BCE(x, 1) = -log sigmoid(x), BCE(x, 0) = x + BCE(x, 1);
    equal to PyTorch's BCE to float rounding (and bit for bit with PyTorch 2.x, whose BCE
    is written this way), including saturated logits."""
    x = torch.cat([torch.randn(50) * scale for scale in (0.01, 1.0, 30.0, 1e4)])
    ones, zeros = torch.ones_like(x), torch.zeros_like(x)
    positive = F.binary_cross_entropy_with_logits(x, ones, reduction="none")
    negative = F.binary_cross_entropy_with_logits(x, zeros, reduction="none")
    targets = (torch.rand(3, len(x)) > 0.5).float()
    expected = (positive @ targets.T + negative @ (1 - targets).T)[None] / len(x)
    torch.testing.assert_close(batch_sigmoid_ce_cost(x[None], targets), expected, rtol=1e-6, atol=0)
