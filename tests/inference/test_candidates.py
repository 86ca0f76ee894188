import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from ifr.inference.candidates import (
    RenderedCandidates,
    SegmentPrediction,
    VideoCandidates,
    candidates_to_output,
)


def decode(rles):
    """List of T RLE dicts -> bool (T, H, W) array."""
    return np.stack([mask_util.decode(r).astype(bool) for r in rles])


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
        torch.ones(1, 1),
        torch.full((1, 1, 1), 10.0),
        features,
        padded_size=(16, 16),
        image_size=(16, 16),
        flipped=True,
    )
    mask = segment.mask_probs(torch.tensor([0]), 0, 1, (4, 8))[0, 0] > 0.5
    assert mask[:, 4:].all() and not mask[:, :4].any()


def _left_right_segment(num_frames):
    """Channel 0 of the features is +1 on the left half and -1 on the right half, channel 1
    the reverse. Query 0 picks the left half in every frame; query 1 the right half in
    even frames and the left half in odd frames. Class scores rank query 0 first."""
    left = torch.ones(4, 4)
    left[:, 2:] = -1
    features = torch.stack([left, -left])[None].repeat(num_frames, 1, 1, 1)
    embeds = torch.zeros(2, num_frames, 2)
    embeds[0, :, 0] = 10.0
    embeds[1, 0::2, 1] = 10.0
    embeds[1, 1::2, 0] = 10.0
    return SegmentPrediction(
        torch.tensor([[0.9, 0.1], [0.1, 0.8]]),
        embeds,
        features,
        padded_size=(16, 16),
        image_size=(16, 16),
    )


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_output_gives_the_known_masks_for_any_chunk(chunk):
    num_frames = 5
    candidates = VideoCandidates.from_segment(_left_right_segment(num_frames))
    output = candidates_to_output(candidates, 2, (8, 10), chunk=chunk, threshold=0.5)
    assert output["pred_labels"] == [0, 1]
    left = np.zeros((8, 10), bool)
    left[:, :5] = True
    masks0, masks1 = (decode(rles) for rles in output["pred_masks"])
    assert masks0.shape == (num_frames, 8, 10)
    assert all(np.array_equal(m, left) for m in masks0)
    for t, mask in enumerate(masks1):
        assert np.array_equal(mask, left if t % 2 else ~left)
    json.dumps(output)  # RLE counts are str


def _random_segment(generator, num_queries, num_frames, frame_offset=0, flipped=False):
    return SegmentPrediction(
        class_probs=torch.rand(num_queries, 3, generator=generator),
        mask_embeds=torch.randn(num_queries, num_frames, 6, generator=generator),
        mask_features=torch.randn(num_frames, 6, 8, 8, generator=generator),
        padded_size=(32, 32),
        image_size=(27, 30),
        frame_offset=frame_offset,
        flipped=flipped,
    )


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_rendering_frame_by_frame_is_bit_identical_to_thresholding_the_volume(chunk):
    """Tracks over overlapping clips, a flipped TTA-like segment, a frame a candidate does
    not cover: the per-frame, per-candidate rendering gives exactly the masks of
    thresholding the (k, T, H0, W0) mean probabilities at once (the former path)."""
    generator = torch.Generator().manual_seed(0)
    segments = [
        _random_segment(generator, 4, 4, frame_offset=0),
        _random_segment(generator, 4, 4, frame_offset=3),
        _random_segment(generator, 4, 7, frame_offset=0, flipped=True),
    ]
    members = [[(0, 0), (1, 2)], [(0, 1), (2, 3)], [(1, 0), (2, 0)], [(0, 3)], [(2, 1)]]
    candidates = VideoCandidates(torch.rand(5, 3, generator=generator), members, segments, 7)
    order = [4, 0, 3, 1, 2]
    volume = candidates.mask_probs(order, 0, 7, (23, 29)) > 0.5
    expected = [
        [mask_util.encode(np.asfortranarray(m.numpy().astype(np.uint8))) for m in inst]
        for inst in volume
    ]
    got = candidates.render_rles(order, (23, 29), chunk=chunk, threshold=0.5)
    assert volume[order.index(3), 4:].sum() == 0  # candidate 3: no member after frame 3
    for got_instance, want_instance in zip(got, expected):
        assert [r["counts"] for r in got_instance] == [
            r["counts"].decode("ascii") for r in want_instance
        ]


def test_rendered_candidates_fill_uncovered_frames_and_copy_repeats():
    """Candidate 0 is picked for both classes: the same masks, as separate dicts; frames
    it does not cover are empty masks."""
    full = np.ones((3, 4), dtype=np.uint8)
    rle = mask_util.encode(np.asfortranarray(full))
    candidates = RenderedCandidates(torch.tensor([[0.9, 0.8]]), [{1: rle}], 3, (3, 4), 0.5)
    output = candidates_to_output(candidates, 2, (3, 4), chunk=1, threshold=0.5)
    assert output["pred_labels"] == [0, 1]
    first, second = output["pred_masks"]
    assert [int(mask_util.area(r)) for r in first] == [0, 12, 0]
    assert second == first and all(a is not b for a, b in zip(first, second))


def test_drop_empty_leaves_out_pairs_whose_mask_is_empty_in_every_frame():
    """Three candidates over 2 frames of 3 x 4: one with a pixel in frame 1, one empty
    everywhere, one full; ``drop_empty`` keeps the first and the last, in score order."""
    from ifr.utils.rle import mask_to_rle

    def rle(mask):
        return mask_to_rle(np.asarray(mask, dtype=bool))

    empty, full = np.zeros((3, 4)), np.ones((3, 4))
    pixel = empty.copy()
    pixel[1, 2] = 1
    candidates = RenderedCandidates(
        class_probs=torch.tensor([[0.9, 0.0], [0.0, 0.8], [0.0, 0.7]]),
        rles=[{0: rle(empty), 1: rle(pixel)}, {0: rle(empty), 1: rle(empty)}, {0: rle(full)}],
        num_frames=2,
        output_size=(3, 4),
        threshold=0.5,
    )
    kept = candidates_to_output(candidates, 3, (3, 4), chunk=1, threshold=0.5, drop_empty=True)
    assert kept["pred_scores"] == pytest.approx([0.9, 0.7])
    assert kept["pred_labels"] == [0, 1]
    assert [decode(masks).sum() for masks in kept["pred_masks"]] == [1, 12]
    every = candidates_to_output(candidates, 3, (3, 4), chunk=1, threshold=0.5)
    assert len(every["pred_scores"]) == 3


def test_box_masks_are_pasted_at_the_output_size():
    """A box mask certain in its left half, in the box (0.25, 0, 0.75, 0.5) of the image:
    at an 8 x 16 output the box spans x 4..12, y 0..4; pixel centres 4.5..7.5 are in its
    left half, 8.5..11.5 in its right. Flipped inputs are flipped back."""
    from ifr.inference.candidates import BoxMaskPrediction

    box_mask = torch.full((1, 1, 28, 28), -30.0)
    box_mask[..., :14] = 30.0

    def prediction(flipped):
        return BoxMaskPrediction(
            class_probs=torch.tensor([[0.9]]),
            mask_embeds=torch.zeros(1, 1, 1),
            mask_features=torch.zeros(1, 1, 2, 4),
            padded_size=(8, 16),
            image_size=(8, 16),
            flipped=flipped,
            box_masks=box_mask,
            boxes=torch.tensor([[[0.25, 0.0, 0.75, 0.5]]]),
        )

    probs = prediction(False).mask_probs(torch.tensor([0]), 0, 1, (8, 16))[0, 0]
    expected = torch.zeros(8, 16, dtype=torch.bool)
    expected[:4, 4:8] = True
    assert torch.equal(probs > 0.5, expected)
    flipped = prediction(True).mask_probs(torch.tensor([0]), 0, 1, (8, 16))[0, 0]
    assert torch.equal(flipped > 0.5, expected.flip(-1))
    # the RLEs the shared rendering writes are the same masks
    rles = VideoCandidates.from_segment(prediction(False)).render_rles([0], (8, 16), 1, 0.5)
    assert np.array_equal(decode(rles[0])[0], expected.numpy())


def test_objects_only_and_score_threshold_select_as_ifc():
    """IFC's inference by hand: a query is kept where its most likely of the K + 1 classes
    is an object (no-object = 1 - sum); of the kept, every pair above 0.01, no cap."""
    from ifr.inference.postprocess import object_queries, select_topk_probs

    probs = torch.tensor(
        [
            [0.50, 0.20, 0.005],  # no-object 0.295: kept
            [0.30, 0.05, 0.05],  # no-object 0.60: dropped
            [0.02, 0.45, 0.009],  # no-object 0.521 > 0.45: dropped
            [0.40, 0.35, 0.02],  # no-object 0.23: kept
        ]
    )
    assert object_queries(probs).tolist() == [True, False, False, True]
    scores, labels, queries = select_topk_probs(probs[[0, 3]], 0, score_threshold=0.01)
    assert scores.tolist() == pytest.approx([0.5, 0.4, 0.35, 0.2, 0.02])
    assert list(zip(queries.tolist(), labels.tolist())) == [(0, 0), (1, 0), (1, 1), (0, 1), (1, 2)]
    # without a threshold TOP_K 0 keeps all N * K pairs
    assert len(select_topk_probs(probs, 0)[0]) == 12
