import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from ifr.inference import run_inference
from ifr.inference.candidates import SegmentPrediction, VideoCandidates
from ifr.inference.tta import (
    augmentations,
    default_cost_fn,
    fuse_to_pivot,
    match_to_pivot,
    resize_frames,
)


def decoded(output):
    return [np.stack([mask_util.decode(r) for r in rles]) for rles in output["pred_masks"]]


def test_resize_frames_keeps_aspect_and_skips_same_size():
    frames = [torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)]
    assert resize_frames(frames, 40)[0] is frames[0]
    resized = resize_frames(frames, 20)[0]
    assert resized.shape == (3, 20, 30) and resized.dtype == torch.uint8


def test_augmentations_put_the_pivot_first():
    assert augmentations([360, 480, 600], flip=False, pivot=1) == [
        (480, False),
        (360, False),
        (600, False),
    ]
    assert augmentations([360, 480], flip=True, pivot=0) == [
        (360, False),
        (480, False),
        (360, True),
        (480, True),
    ]
    with pytest.raises(ValueError, match="PIVOT"):
        augmentations([360], flip=False, pivot=1)


def test_matching_recovers_a_known_permutation():
    torch.manual_seed(0)
    num_queries, num_frames = 5, 3
    pivot_masks = (torch.rand(num_queries, num_frames, 6, 6) > 0.5).float() * 0.9 + 0.05
    pivot_probs = torch.softmax(torch.randn(num_queries, 4) * 3, dim=1)
    permutation = torch.tensor([3, 0, 4, 1, 2])  # other query i shows pivot query permutation[i]
    other_masks = pivot_masks[permutation]
    other_probs = pivot_probs[permutation]
    match = match_to_pivot(pivot_probs, pivot_masks, other_probs, other_masks, default_cost_fn())
    for other_idx, pivot_idx in enumerate(permutation.tolist()):
        assert match[pivot_idx] == other_idx


def test_fusion_averages_matched_class_probabilities():
    def segment(num_queries):
        return SegmentPrediction(
            torch.zeros(num_queries, 2),
            torch.zeros(num_queries, 1, 1),
            torch.zeros(1, 1, 2, 2),
            (8, 8),
            (8, 8),
        )

    pivot = VideoCandidates(
        torch.tensor([[0.8, 0.2], [0.1, 0.5]]), [[(0, 0)], [(0, 1)]], [segment(2)], 1
    )
    other = VideoCandidates(
        torch.tensor([[0.3, 0.7], [0.4, 0.0]]), [[(0, 0)], [(0, 1)]], [segment(2)], 1
    )
    fused = fuse_to_pivot(pivot, [other], [{0: 1, 1: 0}])
    assert torch.allclose(fused.class_probs, torch.tensor([[0.6, 0.1], [0.2, 0.6]]))
    assert fused.members == [[(0, 0), (1, 1)], [(0, 1), (1, 0)]]


@pytest.mark.parametrize("mode", ["video", "clip"])
def test_identical_runs_reproduce_the_single_pass(toy_model, make_video, mode):
    video = make_video(3)  # frames 40 x 56: shorter side 40
    single = run_inference(toy_model(mode=mode, clip_length=2, top_k=4), video)
    tta = run_inference(
        toy_model(mode=mode, clip_length=2, top_k=4, tta_enabled=True, tta_min_sizes=[40, 40, 40]),
        video,
    )
    assert np.allclose(tta["pred_scores"], single["pred_scores"], atol=1e-5)
    assert tta["pred_labels"] == single["pred_labels"]
    for a, b in zip(decoded(tta), decoded(single)):
        assert (a != b).mean() < 1e-3  # float rounding at the threshold only


@pytest.mark.parametrize("mode", ["video", "clip"])
def test_rescaled_and_flipped_runs_give_masks_at_the_original_size(toy_model, make_video, mode):
    video = make_video(3)
    model = toy_model(
        mode=mode,
        clip_length=2,
        top_k=3,
        tta_enabled=True,
        tta_min_sizes=[40, 24, 64],
        tta_flip=True,
    )
    output = run_inference(model, video)
    assert model.encode_calls  # every run went through the model
    assert len(output["pred_masks"]) == 3
    for masks in decoded(output):
        assert masks.shape == (3, 60, 84)
