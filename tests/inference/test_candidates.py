import numpy as np
import pycocotools.mask as mask_util
import torch

from ifr.inference.candidates import SegmentPrediction, VideoCandidates, candidates_to_output
from ifr.inference.postprocess import masks_to_rle


def constant_segment(probs_per_query, num_frames, frame_offset=0, size=(4, 4)):
    """Segment whose query q has mask probability ``probs_per_query[q]`` everywhere."""
    num_queries = len(probs_per_query)
    features = torch.zeros(num_frames, 1, *size)
    features[:, 0] = 1.0
    embeds = torch.logit(torch.tensor(probs_per_query))[:, None, None].expand(
        num_queries, num_frames, 1
    )
    return SegmentPrediction(
        class_probs=torch.full((num_queries, 2), 0.5),
        mask_embeds=embeds.contiguous(),
        mask_features=features,
        padded_size=(16, 16),
        image_size=(16, 16),
        frame_offset=frame_offset,
    )


def test_members_are_averaged_where_they_overlap():
    first = constant_segment([0.2], num_frames=3, frame_offset=0)
    second = constant_segment([0.8], num_frames=3, frame_offset=2)
    candidates = VideoCandidates(
        torch.tensor([[0.9, 0.1]]), [[(0, 0), (1, 0)]], [first, second], num_frames=6
    )
    probs = candidates.mask_probs([0], 0, 6, (5, 5))
    per_frame = probs[0].mean(dim=(1, 2))
    expected = torch.tensor([0.2, 0.2, 0.5, 0.8, 0.8, 0.0])  # frame 5: no member -> 0
    assert torch.allclose(per_frame, expected, atol=1e-5)


def test_flipped_segment_is_flipped_back():
    features = torch.zeros(1, 1, 4, 4)
    features[0, 0, :, :2] = 1.0  # left half in the flipped input = right half originally
    features[0, 0, :, 2:] = -1.0
    segment = SegmentPrediction(
        torch.ones(1, 1), torch.full((1, 1, 1), 10.0), features, (16, 16), (16, 16), flipped=True
    )
    mask = segment.mask_probs(torch.tensor([0]), 0, 1, (4, 8))[0, 0] > 0.5
    assert mask[:, 4:].all() and not mask[:, :4].any()


def test_single_segment_output_matches_masks_to_rle():
    torch.manual_seed(0)
    segment = SegmentPrediction(
        class_probs=torch.rand(4, 3),
        mask_embeds=torch.randn(4, 5, 6),
        mask_features=torch.randn(5, 6, 8, 8),
        padded_size=(32, 32),
        image_size=(27, 30),
    )
    output = candidates_to_output(
        VideoCandidates.from_segment(segment), 3, (20, 23), chunk=2, threshold=0.5
    )
    assert output["image_size"] == (20, 23)
    scores, flat = segment.class_probs.flatten().topk(3)
    assert np.allclose(output["pred_scores"], scores.numpy())
    assert output["pred_labels"] == (flat % 3).tolist()
    queries = flat // 3
    expected = masks_to_rle(
        segment.mask_embeds[queries], segment.mask_features, (32, 32), (27, 30), (20, 23), 5
    )
    for got, want in zip(output["pred_masks"], expected):
        assert len(got) == 5
        for got_rle, want_rle in zip(got, want):
            assert np.array_equal(mask_util.decode(got_rle), mask_util.decode(want_rle))
