"""Tests of the Mask2Former-VIS decoder (transformer_decoder/m2f_vis.py) and its 3-D sine
embedding: shapes, deep supervision, masked attention over the whole clip."""

import math

import pytest
import torch
from model_test_utils import (
    CLASSES,
    HEADS,
    LAYERS,
    MASK_DIM,
    MASK_SIZE,
    QUERIES,
    decoder_inputs,
    decoder_kwargs,
)

from ifr.modeling.position_encoding import PositionEmbeddingSine3D
from ifr.modeling.transformer_decoder.m2f_vis import VideoMultiScaleMaskedTransformerDecoder


def make_decoder(**overrides):
    torch.manual_seed(0)
    return VideoMultiScaleMaskedTransformerDecoder(**decoder_kwargs(**overrides)).train()


def test_shapes_no_object_column_and_deep_supervision():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    out = decoder(features, mask_features)
    assert out["pred_logits"].shape == (2, QUERIES, CLASSES + 1)
    assert out["pred_mask_embeds"].shape == (2, QUERIES, 3, MASK_DIM)
    assert out["pred_masks"].shape == (2, QUERIES, 3, *MASK_SIZE)
    assert len(out["aux_outputs"]) == LAYERS  # the initial prediction + layers 1..L-1
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == (2, QUERIES, CLASSES + 1)
        assert aux["pred_masks"].shape == (2, QUERIES, 3, *MASK_SIZE)


def test_one_embedding_per_query_repeated_over_frames_and_masks_are_its_products():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    out = decoder(features, mask_features)
    embeds = out["pred_mask_embeds"]
    for t in range(3):
        torch.testing.assert_close(embeds[:, :, t], embeds[:, :, 0], rtol=0, atol=0)
    expected = torch.einsum("bqc,btchw->bqthw", embeds[:, :, 0], mask_features)
    torch.testing.assert_close(out["pred_masks"], expected)


def test_eval_mode_same_final_prediction_without_aux_or_masks():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    train_out = decoder(features, mask_features)
    decoder.eval()
    eval_out = decoder(features, mask_features, return_masks=False)
    assert eval_out["aux_outputs"] == [] and "pred_masks" not in eval_out
    torch.testing.assert_close(eval_out["pred_logits"], train_out["pred_logits"])
    torch.testing.assert_close(eval_out["pred_mask_embeds"], train_out["pred_mask_embeds"])


def test_initial_prediction_comes_from_the_query_features_alone():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    first = decoder(features, mask_features)["aux_outputs"][0]
    decoded = decoder.decoder_norm(decoder.query_feat.weight)
    torch.testing.assert_close(first["pred_logits"][0], decoder.class_embed(decoded))


def test_every_frame_reaches_the_class_logits():
    """Clip-level queries: the features of any frame change the prediction."""
    decoder = make_decoder(dec_layers=1).eval()
    features, mask_features = decoder_inputs(batch=1)
    with torch.no_grad():
        base = decoder(features, mask_features)["pred_logits"]
        for t in range(3):
            changed = [f.clone() for f in features]
            changed[0][:, t] += 1.0  # level 0 is what layer 0 reads
            assert not torch.allclose(decoder(changed, mask_features)["pred_logits"], base)


def _decoder_with_fixed_mask_embeds():
    """A 1-layer decoder whose mask embedding is e_0 for every query, whatever the query:
    the initial masks are channel 0 of the mask features."""
    decoder = make_decoder(dec_layers=1).eval()
    last = decoder.mask_embed.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[0] = 1.0
    return decoder


def _left_half_of_frame_0(batch=1, frames=2):
    """Mask features whose channel 0 is +10 on the left half of frame 0, -10 elsewhere."""
    mask_features = torch.randn(batch, frames, MASK_DIM, *MASK_SIZE)
    mask_features[:, :, 0] = -10.0
    mask_features[:, 0, 0, :, : MASK_SIZE[1] // 2] = 10.0
    return mask_features


def test_attention_mask_spans_the_clip_frame_major():
    decoder = make_decoder()
    embeds = torch.zeros(1, QUERIES, MASK_DIM)
    embeds[:, :, 0] = 1.0
    mask = decoder._attention_mask(embeds, _left_half_of_frame_0(), (2, 2))
    assert mask.shape == (HEADS, QUERIES, 2 * 2 * 2)
    # frame 0: left column visible, right column masked; frame 1: all masked.
    expected = torch.tensor([False, True, False, True, True, True, True, True])
    assert torch.equal(mask[0, 0], expected)
    assert torch.equal(mask, expected.expand(HEADS, QUERIES, -1))


def test_keys_outside_the_clip_mask_have_no_influence():
    """Masked attention over the clip: changing the attended level's features where the
    previous mask is off (right half of frame 0, all of frame 1) changes nothing; changing
    them on the mask (left half of frame 0) does."""
    decoder = _decoder_with_fixed_mask_embeds()
    features, _ = decoder_inputs(batch=1, frames=2)
    mask_features = _left_half_of_frame_0()
    with torch.no_grad():
        base = decoder(features, mask_features)["pred_logits"]

        def logits_after(change):
            changed = [f.clone() for f in features]
            change(changed[0])  # level 0 (2x2), read by layer 0
            return decoder(changed, mask_features)["pred_logits"]

        def masked_part(level):
            level[:, 1] += 5.0
            level[:, 0, :, :, 1] += 5.0

        def visible_part(level):
            level[:, 0, :, :, 0] += 5.0

        torch.testing.assert_close(logits_after(masked_part), base, rtol=0, atol=1e-6)
        assert not torch.allclose(logits_after(visible_part), base)


def test_query_masked_in_every_frame_attends_everywhere():
    decoder = make_decoder()
    embeds = torch.zeros(1, QUERIES, MASK_DIM)
    embeds[:, :, 0] = 1.0
    mask_features = torch.full((1, 2, MASK_DIM, *MASK_SIZE), 0.0)
    mask_features[:, :, 0] = -10.0
    assert not decoder._attention_mask(embeds, mask_features, (2, 2)).any()


def test_gradients_reach_every_parameter():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    out = decoder(features, mask_features)
    total = out["pred_logits"].sum() + out["pred_masks"].sum()
    total = total + sum(a["pred_logits"].sum() + a["pred_masks"].sum() for a in out["aux_outputs"])
    total.backward()
    no_grad = [n for n, p in decoder.named_parameters() if p.grad is None]
    assert no_grad == []


def test_bad_inputs_name_the_decoder():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    with pytest.raises(ValueError, match="VideoMultiScaleMaskedTransformerDecoder needs 3"):
        decoder(features[:2], mask_features)


def test_sine_3d_embedding_by_hand():
    """num_pos_feats F = 2, T = 2 frames of 1 x 2 pixels, normalised: z = (t+1)/T * 2pi,
    y = 2pi, x = (w+1)/2 * 2pi. Channels 0-1 embed y, 2-3 embed x (sin, cos at
    frequency 1), each plus the time embedding of width 4 (sin z, cos z,
    sin z/100, cos z/100: 10000^(2*1/4) = 100)."""
    pe = PositionEmbeddingSine3D(num_pos_feats=2, normalize=True)
    out = pe(torch.zeros(1, 2, 7, 1, 2))
    assert out.shape == (1, 2, 4, 1, 2)
    two_pi = 2 * math.pi
    for t in range(2):
        for w in range(2):
            z, y, x = (t + 1) / 2 * two_pi, two_pi, (w + 1) / 2 * two_pi
            time = [math.sin(z), math.cos(z), math.sin(z / 100), math.cos(z / 100)]
            space = [math.sin(y), math.cos(y), math.sin(x), math.cos(x)]
            expected = torch.tensor([s + e for s, e in zip(space, time)])
            torch.testing.assert_close(out[0, t, :, 0, w], expected, rtol=0, atol=1e-5)


def test_sine_3d_embedding_equals_2d_plus_time_and_refuses_4d_input():
    pe = PositionEmbeddingSine3D(num_pos_feats=8, normalize=True)
    out = pe(torch.zeros(2, 3, 5, 4, 6))
    # Frames differ only by the time embedding, which is constant over pixels.
    diff = out[:, 1] - out[:, 0]
    torch.testing.assert_close(diff, diff[..., :1, :1].expand_as(diff))
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        pe(torch.zeros(2, 5, 4, 6))
