import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from ifr.inference.postprocess import (
    encode_rle,
    masks_to_rle,
    select_topk,
    upsample_mask_logits,
)


def decode(rles):
    """List of T RLE dicts -> bool (T, H, W) array."""
    return np.stack([mask_util.decode(r).astype(bool) for r in rles])


def test_select_topk_over_query_class_pairs():
    probs = torch.tensor([[0.1, 0.9, 0.2], [0.8, 0.05, 0.95]])
    scores, labels, query_idx = select_topk(torch.logit(probs), 3)
    assert torch.allclose(scores, torch.tensor([0.95, 0.9, 0.8]))
    assert labels.tolist() == [2, 1, 0]
    assert query_idx.tolist() == [1, 0, 1]


def test_select_topk_clamps_k_to_the_number_of_pairs():
    scores, labels, query_idx = select_topk(torch.zeros(2, 2), 10)
    assert len(scores) == len(labels) == len(query_idx) == 4


def test_upsample_crops_the_padding_before_resizing():
    # Mask-feature grid 2x2 over a padded 8x8 input; the image is the top half (4x8),
    # the bottom row is padding with a negative logit that must not leak in.
    logits = torch.tensor([[10.0, 10.0], [-10.0, -10.0]])[None, None]
    out = upsample_mask_logits(logits, padded_size=(8, 8), image_size=(4, 8), output_size=(6, 12))
    assert out.shape == (1, 1, 6, 12)
    # After the crop the image rows hold logits interpolated between the two feature
    # rows; without the crop the lower half of the output would be negative.
    assert (out > 0).all()


def test_upsample_of_a_constant_is_constant():
    logits = torch.full((3, 2, 4, 5), 1.5)
    out = upsample_mask_logits(logits, (16, 20), (13, 17), (30, 41))
    assert out.shape == (3, 2, 30, 41)
    assert torch.allclose(out, torch.full_like(out, 1.5))


def test_encode_rle_round_trip_and_json():
    masks = torch.rand(2, 3, 7, 9) > 0.5
    rles = encode_rle(masks)
    assert len(rles) == 2 and all(len(r) == 3 for r in rles)
    for instance_rles, instance_masks in zip(rles, masks):
        assert np.array_equal(decode(instance_rles), instance_masks.numpy())
    json.dumps(rles)  # counts are str


def _left_right_features(num_frames, h=4, w=4):
    """Channel 0 is +1 on the left half and -1 on the right half; channel 1 the reverse."""
    left = torch.ones(h, w)
    left[:, w // 2 :] = -1
    feats = torch.stack([left, -left])  # (2, h, w)
    return feats[None].repeat(num_frames, 1, 1, 1)


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_masks_to_rle_gives_the_known_masks_for_any_chunk(chunk):
    num_frames = 5
    features = _left_right_features(num_frames)
    # Query 0 picks the left half in every frame; query 1 the right half in even frames
    # and the left half in odd frames.
    embeds = torch.zeros(2, num_frames, 2)
    embeds[0, :, 0] = 10.0
    embeds[1, 0::2, 1] = 10.0
    embeds[1, 1::2, 0] = 10.0
    rles = masks_to_rle(embeds, features, (16, 16), (16, 16), (8, 10), chunk=chunk, threshold=0.5)
    left = np.zeros((8, 10), bool)
    left[:, :5] = True
    masks0, masks1 = decode(rles[0]), decode(rles[1])
    assert masks0.shape == (num_frames, 8, 10)
    assert all(np.array_equal(m, left) for m in masks0)
    for t, mask in enumerate(masks1):
        assert np.array_equal(mask, left if t % 2 else ~left)


def test_masks_to_rle_rejects_frame_mismatch():
    with pytest.raises(ValueError, match="frames"):
        masks_to_rle(
            torch.zeros(1, 3, 2), torch.zeros(4, 2, 4, 4), (16, 16), (16, 16), (8, 8), chunk=2
        )
