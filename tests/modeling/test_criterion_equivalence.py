"""The criterion's and matcher's batched code paths (written for training speed) against the
straightforward video-by-video computations they replaced: the same numbers, bit for bit,
and the same gradients."""

import pytest
import torch

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
    outputs = {"pred_mask_embeds": embeds, "mask_features": features}
    fast = _criterion()._cross_frame_logits(outputs, batch_idx, query_idx, coords)
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
    outputs = {"pred_mask_embeds": embeds, "mask_features": features}
    with pytest.raises(ValueError, match="video by video"):
        _criterion()._cross_frame_logits(
            outputs, torch.tensor([1, 0]), torch.tensor([0, 0]), torch.rand(2, 3, 7, 2)
        )
