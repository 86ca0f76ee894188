"""Tests of ifr/modeling/transformer_decoder.py: shapes, the order of the frame recurrence
(docs/method.md, Eq. 2-3), masked attention (Eq. 1), weight sharing of A and B, and gradients."""

import pytest
import torch
from model_test_utils import (
    CLASSES,
    HEADS,
    HIDDEN,
    LAYERS,
    LEVEL_SIZES,
    MASK_DIM,
    MASK_SIZE,
    QUERIES,
    decoder_inputs,
    decoder_kwargs,
)

from ifr.modeling.registry import build_transformer_decoder
from ifr.modeling.transformer_decoder.ifr import (
    IFRTransformerDecoder,
    cross_attend_pair,
    frame_step_attention_mask,
)


def _cross_attend(decoder, layer, prev_frame_queries, clip_queries, source, source_pos, mask):
    """A = Attn(Q_i^{t-1}, F_t), B = Attn(Q_i, F_t) of layer ``layer`` (Eq. 1-2), as the
    frame step computes them (``cross_attend_pair``); (N, B, d) each."""
    num_queries, batch_size = clip_queries.shape[:2]
    attended = cross_attend_pair(
        decoder.transformer_cross_attention_layers[layer],
        prev_frame_queries,
        clip_queries,
        source,
        source_pos,
        mask,
        decoder._query_pos(batch_size).repeat(2, 1, 1),
    )
    return attended[:num_queries], attended[num_queries:]


def make_decoder(**overrides):
    # Training mode (dropout is 0, so outputs are deterministic) keeps the aux outputs.
    return IFRTransformerDecoder(**decoder_kwargs(**overrides)).train()


def clip_queries_for(decoder, batch):
    return torch.randn(QUERIES, batch, HIDDEN)


def half_plane_masks(batch, frames, visible_left):
    """Mask features and embeds whose masks are the left (or right) half of each frame.

    visible_left[t] says which half frame t's mask covers: channel 0 of the mask features
    is +10 on that half and -10 on the other, every query's embedding is e_0.
    """
    mask_features = torch.zeros(batch, frames, MASK_DIM, *MASK_SIZE)
    half = MASK_SIZE[1] // 2
    for t, left in enumerate(visible_left):
        mask_features[:, t, 0, :, :half] = 10.0 if left else -10.0
        mask_features[:, t, 0, :, half:] = -10.0 if left else 10.0
    embeds = torch.zeros(batch, QUERIES, frames, MASK_DIM)
    embeds[..., 0] = 1.0
    return mask_features, embeds


def test_output_shapes_aux_count_and_masks_are_embeds_dot_features():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    with torch.no_grad():
        out = decoder(features, mask_features, return_masks=True)
    assert out["pred_logits"].shape == (2, QUERIES, CLASSES)
    assert out["pred_mask_embeds"].shape == (2, QUERIES, 3, MASK_DIM)
    assert out["pred_masks"].shape == (2, QUERIES, 3, *MASK_SIZE)
    assert len(out["aux_outputs"]) == LAYERS
    for prediction in [out] + out["aux_outputs"]:
        expected = torch.einsum("bntc,btchw->bnthw", prediction["pred_mask_embeds"], mask_features)
        torch.testing.assert_close(prediction["pred_masks"], expected)
        assert prediction["pred_logits"].shape == (2, QUERIES, CLASSES)
    assert all("aux_outputs" not in aux for aux in out["aux_outputs"])


def test_initial_prediction_uses_initial_queries_for_every_frame():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    with torch.no_grad():
        initial = decoder(features, mask_features)["aux_outputs"][0]
        expected_embeds = decoder.mask_embed(decoder.decoder_norm(decoder.query_feat.weight))
        expected_logits = decoder.class_embed(decoder.decoder_norm(decoder.query_feat.weight))
    for t in range(3):
        for b in range(2):
            torch.testing.assert_close(initial["pred_mask_embeds"][b, :, t], expected_embeds)
            torch.testing.assert_close(initial["pred_logits"][b], expected_logits)


def test_return_masks_false_gives_same_logits_and_embeds():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    with torch.no_grad():
        with_masks = decoder(features, mask_features, return_masks=True)
        without = decoder(features, mask_features, return_masks=False)
    assert "pred_masks" not in without
    assert all("pred_masks" not in aux for aux in without["aux_outputs"])
    for a, b in zip([with_masks] + with_masks["aux_outputs"], [without] + without["aux_outputs"]):
        torch.testing.assert_close(a["pred_logits"], b["pred_logits"], rtol=0, atol=0)
        torch.testing.assert_close(a["pred_mask_embeds"], b["pred_mask_embeds"], rtol=0, atol=0)


def test_single_frame_video():
    decoder = make_decoder()
    features, mask_features = decoder_inputs(batch=1, frames=1)
    with torch.no_grad():
        out = decoder(features, mask_features)
    assert out["pred_mask_embeds"].shape == (1, QUERIES, 1, MASK_DIM)
    assert out["pred_masks"].shape == (1, QUERIES, 1, *MASK_SIZE)
    assert torch.isfinite(out["pred_logits"]).all()


@pytest.mark.parametrize("layer", [0, 2])
def test_frame_t_depends_on_earlier_frames_only(layer):
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    clip_queries = clip_queries_for(decoder, 2)
    embeds = torch.randn(2, QUERIES, 3, MASK_DIM)
    level = layer % 3

    def recurrence(feats):
        with torch.no_grad():
            return decoder._frame_recurrence(layer, clip_queries, feats, mask_features, embeds)

    base = recurrence(features)
    assert base.shape == (2, QUERIES, 3, HIDDEN)

    later_changed = [f.clone() for f in features]
    later_changed[level][:, 2] += 1.0
    out = recurrence(later_changed)
    torch.testing.assert_close(out[:, :, :2], base[:, :, :2], rtol=0, atol=0)
    assert not torch.allclose(out[:, :, 2], base[:, :, 2])

    earlier_changed = [f.clone() for f in features]
    earlier_changed[level][:, 0] += 1.0
    out = recurrence(earlier_changed)
    for t in range(3):  # frame 0 through its features, frames 1, 2 through Q^{t-1}
        assert not torch.allclose(out[:, :, t], base[:, :, t])

    other_level = [f.clone() for f in features]
    other_level[(level + 1) % 3] += 1.0
    torch.testing.assert_close(recurrence(other_level), base, rtol=0, atol=0)


@pytest.mark.parametrize("test_recurrence", [True, False])
def test_recurrence_off_makes_frames_independent_in_eval_mode(test_recurrence):
    """MODEL.IFR.TEST.RECURRENCE False: frame t's queries are those of frame 0's step
    from Q_i with frame t's features, so changing frame t-1's features changes nothing."""
    decoder = make_decoder(test_recurrence=test_recurrence).eval()
    features, mask_features = decoder_inputs()
    clip_queries = clip_queries_for(decoder, 2)
    embeds = torch.randn(2, QUERIES, 3, MASK_DIM)

    def recurrence(feats):
        with torch.no_grad():
            return decoder._frame_recurrence(0, clip_queries, feats, mask_features, embeds)

    base = recurrence(features)
    changed = [f.clone() for f in features]
    changed[0][:, 1] += 1.0  # frame 1 of the level layer 0 reads
    out = recurrence(changed)
    assert not torch.allclose(out[:, :, 1], base[:, :, 1])  # frame 1 itself
    torch.testing.assert_close(out[:, :, 0], base[:, :, 0], rtol=0, atol=0)
    if test_recurrence:
        assert not torch.allclose(out[:, :, 2], base[:, :, 2])  # through Q^{1}
    else:
        torch.testing.assert_close(out[:, :, 2], base[:, :, 2], rtol=0, atol=0)
        # Each frame equals a one-frame run on that frame alone.
        alone = [f[:, 2:3] for f in features]
        with torch.no_grad():
            single = decoder._frame_recurrence(
                0, clip_queries, alone, mask_features[:, 2:3], embeds[:, :, 2:3]
            )
        torch.testing.assert_close(base[:, :, 2:3], single)


def test_training_always_recurs():
    decoder = make_decoder(test_recurrence=False).train()
    features, mask_features = decoder_inputs()
    clip_queries = clip_queries_for(decoder, 2)
    embeds = torch.randn(2, QUERIES, 3, MASK_DIM)
    with torch.no_grad():
        base = decoder._frame_recurrence(0, clip_queries, features, mask_features, embeds)
        changed = [f.clone() for f in features]
        changed[0][:, 1] += 1.0
        out = decoder._frame_recurrence(0, clip_queries, changed, mask_features, embeds)
    assert not torch.allclose(out[:, :, 2], base[:, :, 2])


def test_recurrence_key_reaches_the_decoder(make_cfg):
    cfg = make_cfg()
    assert cfg.MODEL.IFR.TEST.RECURRENCE is True
    cfg.MODEL.IFR.TEST.RECURRENCE = False
    cfg.MODEL.VIS.NUM_QUERIES, cfg.MODEL.VIS.HIDDEN_DIM, cfg.MODEL.VIS.NHEADS = 4, 32, 4
    cfg.MODEL.VIS.DIM_FEEDFORWARD, cfg.MODEL.VIS.DEC_LAYERS = 64, 1
    decoder = build_transformer_decoder(cfg, in_channels=32, mask_dim=16)
    assert decoder.test_recurrence is False


def test_frame_recurrence_follows_eq_2_and_3():
    """The recurrence written out from Eq. (2)-(3) of docs/method.md with the decoder's own
    modules."""
    decoder = make_decoder()
    with torch.no_grad():
        decoder.pair_group_embed.weight.normal_()  # make the two groups distinguishable
    layer, level = 1, 1
    features, mask_features = decoder_inputs()
    clip_queries = clip_queries_for(decoder, 2)
    embeds = torch.randn(2, QUERIES, 3, MASK_DIM)
    cross = decoder.transformer_cross_attention_layers[layer]
    self_attn = decoder.transformer_self_attention_layers[layer]
    ffn = decoder.transformer_ffn_layers[layer]
    query_pos = decoder.query_embed.weight.unsqueeze(1).repeat(1, 2, 1)
    pair_pos = torch.cat(
        [
            query_pos + decoder.pair_group_embed.weight[0],
            query_pos + decoder.pair_group_embed.weight[1],
        ]
    )

    with torch.no_grad():
        previous, expected = clip_queries, []
        for t in range(3):
            frame_map = features[level][:, t]
            source = (
                (frame_map + decoder.level_embed.weight[level][:, None, None])
                .flatten(2)
                .permute(2, 0, 1)
            )
            pos = decoder.pe_layer(frame_map).flatten(2).permute(2, 0, 1)
            mask = frame_step_attention_mask(
                embeds[:, :, t], mask_features[:, t], LEVEL_SIZES[level], decoder.num_heads
            )
            a = cross(previous, source, mask, pos=pos, query_pos=query_pos)
            b = cross(clip_queries, source, mask, pos=pos, query_pos=query_pos)
            pair = self_attn(torch.cat([a, b]), query_pos=pair_pos)
            previous = ffn(pair[:QUERIES])
            expected.append(previous.transpose(0, 1))
        actual = decoder._frame_recurrence(layer, clip_queries, features, mask_features, embeds)
    torch.testing.assert_close(actual, torch.stack(expected, dim=2))


def test_first_frame_attends_with_clip_queries_then_previous_frame_queries():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    clip_queries = clip_queries_for(decoder, 2)
    embeds = torch.randn(2, QUERIES, 3, MASK_DIM)
    seen = []
    hook = decoder.transformer_cross_attention_layers[1].register_forward_hook(
        lambda module, args, output: seen.append(args[0].clone())
    )
    with torch.no_grad():
        frame_queries = decoder._frame_recurrence(1, clip_queries, features, mask_features, embeds)
    hook.remove()
    assert len(seen) == 3  # one call per frame computes A and B together
    for t, queries in enumerate(seen):
        prev_frame, clip = queries[:QUERIES], queries[QUERIES:]
        torch.testing.assert_close(clip, clip_queries, rtol=0, atol=0)
        expected_prev = clip_queries if t == 0 else frame_queries[:, :, t - 1].transpose(0, 1)
        torch.testing.assert_close(prev_frame, expected_prev, rtol=0, atol=0)  # Q_i^0 = Q_i


def test_a_and_b_use_the_same_cross_attention_module():
    decoder = make_decoder()
    layer = 1
    module = decoder.transformer_cross_attention_layers[layer]
    prev_frame, clip = torch.randn(QUERIES, 2, HIDDEN), torch.randn(QUERIES, 2, HIDDEN)
    source, pos = torch.randn(16, 2, HIDDEN), torch.randn(16, 2, HIDDEN)
    attn_mask = torch.rand(2 * HEADS, QUERIES, 16) < 0.3
    query_pos = decoder.query_embed.weight.unsqueeze(1).repeat(1, 2, 1)

    with torch.no_grad():
        a, b = _cross_attend(decoder, layer, prev_frame, clip, source, pos, attn_mask)
        expected_a = module(prev_frame, source, attn_mask, pos=pos, query_pos=query_pos)
        expected_b = module(clip, source, attn_mask, pos=pos, query_pos=query_pos)
        torch.testing.assert_close(a, expected_a)
        torch.testing.assert_close(b, expected_b)

        module.multihead_attn.in_proj_weight.mul_(2.0)
        a2, b2 = _cross_attend(decoder, layer, prev_frame, clip, source, pos, attn_mask)
    assert not torch.allclose(a2, a) and not torch.allclose(b2, b)
    names = [
        n for n, _ in decoder.named_parameters() if n.startswith("transformer_cross_attention")
    ]
    assert len(names) == LAYERS * 6  # one module per layer, no second copy for B


def test_attention_mask_from_hand_made_logits():
    decoder = make_decoder()
    logits_b0 = torch.tensor([[1.0, -1.0], [2.0, -0.5]])
    mask_features = torch.zeros(2, MASK_DIM, 2, 2)
    mask_features[0, 0], mask_features[1, 0] = logits_b0, -logits_b0
    mask_features[:, 1] = 1.0
    embeds = torch.zeros(2, QUERIES, MASK_DIM)
    embeds[:, 0, 0] = 1.0  # logits of channel 0
    embeds[:, 1, 1] = -1.0  # -1 everywhere: empty mask, the row is unmasked
    embeds[:, 2, 1] = 1.0  # +1 everywhere: visible
    # query 3: logit 0, sigmoid 0.5 is not < 0.5: visible
    embeds[:, 4, 0] = -1.0  # minus the logits of channel 0
    mask = frame_step_attention_mask(embeds, mask_features, (2, 2), decoder.num_heads)
    assert mask.shape == (2 * HEADS, QUERIES, 4) and mask.dtype == torch.bool
    masks_right_column = [False, True, False, True]
    masks_left_column = [True, False, True, False]
    expected_b0 = torch.zeros(QUERIES, 4, dtype=torch.bool)
    expected_b0[0] = torch.tensor(masks_right_column)
    expected_b0[4] = torch.tensor(masks_left_column)
    expected_b1 = torch.zeros(QUERIES, 4, dtype=torch.bool)
    expected_b1[0] = torch.tensor(masks_left_column)
    expected_b1[4] = torch.tensor(masks_right_column)
    for head in range(HEADS):  # batch-major, as nn.MultiheadAttention reads it
        torch.testing.assert_close(mask[head], expected_b0)
        torch.testing.assert_close(mask[HEADS + head], expected_b1)


def test_attention_mask_is_resized_bilinearly_to_the_level():
    decoder = make_decoder()
    mask_features, embeds = half_plane_masks(1, 1, visible_left=[True])
    mask = frame_step_attention_mask(
        embeds[:, :, 0], mask_features[:, 0], (8, 8), decoder.num_heads
    )
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[:, 4:] = True
    torch.testing.assert_close(mask[0, 0], expected.flatten())


def test_keys_outside_the_frame_mask_have_no_influence():
    decoder = make_decoder()
    layer, level = 2, 2  # level 2: 8x8 features
    features, _ = decoder_inputs()
    mask_features, embeds = half_plane_masks(2, 3, visible_left=[True, False, True])
    clip_queries = clip_queries_for(decoder, 2)

    def recurrence(feats):
        with torch.no_grad():
            return decoder._frame_recurrence(layer, clip_queries, feats, mask_features, embeds)

    base = recurrence(features)
    outside = [f.clone() for f in features]
    outside[level][:, 0, :, :, 4:] += 5.0  # frame 0 sees the left half
    outside[level][:, 1, :, :, :4] += 5.0  # frame 1 sees the right half
    outside[level][:, 2, :, :, 4:] += 5.0
    torch.testing.assert_close(recurrence(outside), base)

    inside = [f.clone() for f in features]
    inside[level][:, 1, :, :, 4:] += 5.0
    out = recurrence(inside)
    torch.testing.assert_close(out[:, :, 0], base[:, :, 0])
    assert not torch.allclose(out[:, :, 1], base[:, :, 1])


def test_fully_masked_query_attends_everywhere():
    decoder = make_decoder()
    features, _ = decoder_inputs()
    mask_features, embeds = half_plane_masks(2, 3, visible_left=[True, True, True])
    mask_features[:, :, 1] = 10.0
    clip_queries = clip_queries_for(decoder, 2)

    def recurrence(sign):
        query_embeds = embeds.clone()
        query_embeds[:, 0, :, 0] = 0.0
        query_embeds[:, 0, :, 1] = sign  # logit -10 (empty mask) or +10 (full mask)
        with torch.no_grad():
            return decoder._frame_recurrence(2, clip_queries, features, mask_features, query_embeds)

    fully_masked = recurrence(-1.0)
    assert torch.isfinite(fully_masked).all()
    torch.testing.assert_close(fully_masked, recurrence(+1.0))


def test_clip_update_sees_every_frame():
    decoder = make_decoder()
    clip_queries = clip_queries_for(decoder, 2)
    frame_queries = torch.randn(2, QUERIES, 3, HIDDEN)
    with torch.no_grad():
        base = decoder._clip_update(0, clip_queries, frame_queries)
        assert base.shape == (QUERIES, 2, HIDDEN)
        for t in range(3):
            changed = frame_queries.clone()
            changed[:, :, t] += 1.0
            assert not torch.allclose(decoder._clip_update(0, clip_queries, changed), base)


def test_last_frame_reaches_class_logits():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    with torch.no_grad():
        base = decoder(features, mask_features, return_masks=False)
        changed = [f.clone() for f in features]
        changed[0][:, -1] += 1.0  # level 0 is read by layer 0
        out = decoder(changed, mask_features, return_masks=False)
    torch.testing.assert_close(
        out["aux_outputs"][0]["pred_logits"], base["aux_outputs"][0]["pred_logits"]
    )
    assert not torch.allclose(
        out["aux_outputs"][1]["pred_logits"], base["aux_outputs"][1]["pred_logits"]
    )
    assert not torch.allclose(out["pred_mask_embeds"][:, :, 0], base["pred_mask_embeds"][:, :, 0])


def test_gradients_reach_every_parameter():
    decoder = make_decoder(in_channels=24).train()  # 1x1 conv input projections
    features, mask_features = decoder_inputs(in_channels=24)
    out = decoder(features, mask_features, return_masks=True)
    generator = torch.Generator().manual_seed(1)
    loss = 0.0
    for prediction in [out] + out["aux_outputs"]:
        for key in ("pred_logits", "pred_masks"):
            # random weights: a plain sum through a LayerNorm has zero gradient
            loss = (
                loss
                + (prediction[key] * torch.randn(prediction[key].shape, generator=generator)).sum()
            )
    loss.backward()
    for name, parameter in decoder.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_mask2former_parameter_names():
    names = set(make_decoder(in_channels=24).state_dict())
    for expected in [
        "query_feat.weight",
        "query_embed.weight",
        "level_embed.weight",
        "input_proj.2.weight",
        "transformer_cross_attention_layers.2.multihead_attn.in_proj_weight",
        "transformer_self_attention_layers.0.self_attn.out_proj.bias",
        "transformer_ffn_layers.1.linear2.weight",
        "decoder_norm.weight",
        "class_embed.weight",
        "mask_embed.layers.2.bias",
    ]:
        assert expected in names, expected
    assert not any(n.startswith("input_proj") for n in make_decoder().state_dict())


def test_built_from_config_through_the_registry(make_cfg):
    cfg = make_cfg()
    cfg.MODEL.VIS.NUM_CLASSES = CLASSES
    cfg.MODEL.VIS.NUM_QUERIES = QUERIES
    cfg.MODEL.VIS.HIDDEN_DIM = HIDDEN
    cfg.MODEL.VIS.NHEADS = HEADS
    cfg.MODEL.VIS.DIM_FEEDFORWARD = 64
    cfg.MODEL.VIS.DEC_LAYERS = 2
    cfg.MODEL.VIS.ENFORCE_INPUT_PROJ = True
    decoder = build_transformer_decoder(cfg, in_channels=HIDDEN, mask_dim=MASK_DIM)
    assert isinstance(decoder, IFRTransformerDecoder)
    assert len(decoder.transformer_cross_attention_layers) == 2
    assert isinstance(decoder.input_proj[0], torch.nn.Conv2d)
    assert decoder.class_embed.out_features == CLASSES
    features, mask_features = decoder_inputs(batch=1, frames=2)
    with torch.no_grad():
        assert len(decoder.train()(features, mask_features)["aux_outputs"]) == 2
    cfg.MODEL.IFR.SHARED_CLASS_HEAD, cfg.MODEL.IFR.TEMPORAL_SLOT_BIAS = False, 2.5
    decoder = build_transformer_decoder(cfg, in_channels=HIDDEN, mask_dim=MASK_DIM)
    assert len(decoder.class_embed) == 3 and decoder.temporal_slot_bias == 2.5


def test_bad_inputs_name_the_fault():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    with pytest.raises(ValueError, match="3 feature levels"):
        decoder(features[:2], mask_features)
    with pytest.raises(ValueError, match=r"multi_scale_features\[1\]"):
        decoder([features[0], features[1][:, :2], features[2]], mask_features)
    with pytest.raises(ValueError, match="mask_features"):
        decoder(features, mask_features[:, :, :4])
    with pytest.raises(ValueError, match="DEC_LAYERS"):
        make_decoder(dec_layers=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_features_on_cpu_with_parameters_on_gpu():
    decoder = make_decoder()
    features, mask_features = decoder_inputs()
    with torch.no_grad():
        expected = decoder(features, mask_features)
        out = decoder.cuda()(features, mask_features)
    for key in ("pred_logits", "pred_mask_embeds", "pred_masks"):
        assert out[key].device.type == "cuda"
        torch.testing.assert_close(out[key].cpu(), expected[key], rtol=1e-4, atol=1e-4)


def test_eval_mode_keeps_no_aux_outputs_and_the_same_final_prediction():
    decoder = make_decoder()
    features, mask_features = decoder_inputs(batch=1, frames=3)
    with torch.no_grad():
        train_out = decoder.train()(features, mask_features)
        eval_out = decoder.eval()(features, mask_features)
    assert eval_out["aux_outputs"] == []
    assert torch.equal(train_out["pred_logits"], eval_out["pred_logits"])
    assert torch.equal(train_out["pred_mask_embeds"], eval_out["pred_mask_embeds"])


def test_one_class_head_per_prediction_when_not_shared(make_cfg):
    """SHARED_CLASS_HEAD False: L + 1 heads; changing head j changes prediction j only."""
    decoder = make_decoder(shared_class_head=False)
    assert len(decoder.class_embed) == decoder.num_layers + 1
    features, mask_features = decoder_inputs()

    def logits():
        with torch.no_grad():
            out = decoder(features, mask_features, return_masks=False)
        return [aux["pred_logits"] for aux in out["aux_outputs"]] + [out["pred_logits"]]

    before = logits()
    with torch.no_grad():
        decoder.class_embed[1].bias += 1.0
    after = logits()
    changed = [j for j, (a, b) in enumerate(zip(before, after)) if not torch.equal(a, b)]
    assert changed == [1]
    assert torch.allclose(after[1], before[1] + 1.0)
    key = make_cfg(overrides={"MODEL.IFR.SHARED_CLASS_HEAD": False}).MODEL.IFR.SHARED_CLASS_HEAD
    assert key is False and make_decoder().class_embed.out_features == CLASSES  # default


def test_temporal_slot_prior_by_hand():
    decoder = make_decoder(temporal_slot_bias=2.0)
    prior = decoder._temporal_slot_prior(2, torch.float32, torch.device("cpu"))
    eye = torch.eye(QUERIES)
    assert torch.equal(prior, torch.cat([eye, eye], dim=1) * 2.0)  # memory index t * N + n
    assert make_decoder()._temporal_slot_prior(2, torch.float32, torch.device("cpu")) is None


@pytest.mark.parametrize("bias, independent", [(0.0, False), (1e4, True)])
def test_temporal_slot_bias_routes_a_clip_query_to_its_own_slot(bias, independent):
    """With a huge bias, clip query 0's update no longer depends on other slots' frame
    queries; without one it does."""
    decoder = make_decoder(temporal_slot_bias=bias).eval()
    clip = torch.randn(QUERIES, 1, HIDDEN)
    frames = torch.randn(1, QUERIES, 3, HIDDEN)
    others = frames.clone()
    others[:, 1:] += torch.randn_like(others[:, 1:])
    with torch.no_grad():
        a = decoder._clip_update(0, clip, frames)[0]
        b = decoder._clip_update(0, clip, others)[0]
    # Query 0 also sees the others through the clip self-attention after the temporal
    # cross-attention, so compare the temporal cross-attention alone.
    layer = decoder.temporal_cross_attention_layers[0]
    pos = decoder._query_pos(1)

    def temporal(frame_queries):
        memory = frame_queries.permute(2, 1, 0, 3).reshape(-1, 1, HIDDEN)
        mask = decoder._temporal_slot_prior(3, memory.dtype, memory.device)
        return layer(clip, memory, memory_mask=mask, pos=pos.repeat(3, 1, 1), query_pos=pos)[0]

    with torch.no_grad():
        same = torch.allclose(temporal(frames), temporal(others), atol=1e-5)
    assert same == independent
    assert not torch.equal(a, b)  # the whole update mixes slots either way


@pytest.mark.parametrize("clip_mask_weight", [0.0, 1.0])
def test_clip_mask_loss_gives_the_last_clip_update_mask_gradient(clip_mask_weight):
    """The last layer's clip update feeds the class head only; the clip mask loss
    (MODEL.IFR.CLIP_MASK_WEIGHT) is what gives it gradient from the mask terms."""
    from ifr.modeling.criterion import IFRCriterion, build_weight_dict
    from ifr.modeling.matcher import VideoHungarianMatcher

    torch.manual_seed(0)
    decoder = make_decoder(clip_mask_embeds=clip_mask_weight > 0)
    features, mask_features = decoder_inputs(batch=1, frames=2)
    outputs = decoder(features, mask_features)
    for prediction in [outputs] + outputs["aux_outputs"]:
        prediction["mask_features"] = mask_features
    assert ("pred_clip_mask_embeds" in outputs) == (clip_mask_weight > 0)
    criterion = IFRCriterion(
        num_classes=CLASSES,
        matcher=VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=16),
        weight_dict=build_weight_dict(2.0, 5.0, 5.0, 0.3, LAYERS, clip_mask_weight),
        lambda_e=0.3,
        clip_mask_weight=clip_mask_weight,
        num_points=16,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
    )
    size = (MASK_SIZE[0] * 4, MASK_SIZE[1] * 4)
    masks = torch.zeros(2, 2, *size)
    masks[0, :, : size[0] // 2], masks[1, :, size[0] // 2 :] = 1.0, 1.0
    losses = criterion(outputs, [{"labels": torch.tensor([0, 1]), "masks": masks}])
    mask_terms = sum(v for k, v in losses.items() if not k.startswith("loss_ce"))
    mask_terms.backward()
    last_clip_ffn = list(decoder.clip_ffn_layers[-1].parameters())
    gradient = sum(float(p.grad.abs().sum()) for p in last_clip_ffn if p.grad is not None)
    assert (gradient > 0) == (clip_mask_weight > 0)


def test_clip_mask_weight_reaches_decoder_and_criterion(make_cfg):
    from ifr.modeling.criterion import IFRCriterion

    cfg = make_cfg()
    cfg.MODEL.IFR.CLIP_MASK_WEIGHT = 0.5
    decoder = build_transformer_decoder(cfg, in_channels=HIDDEN, mask_dim=MASK_DIM)
    assert decoder.clip_mask_embeds
    criterion = IFRCriterion(cfg)
    assert criterion.clip_mask_weight == 0.5
    assert criterion.weight_dict["loss_mask_clip"] == 0.5 * cfg.MODEL.VIS.MASK_WEIGHT
