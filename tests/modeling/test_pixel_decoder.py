import math

import pytest
import torch
from detectron2.layers import ShapeSpec

from ifr.modeling.pixel_decoder import MSDeformAttnPixelDecoder
from ifr.modeling.registry import PIXEL_DECODER_REGISTRY, build_pixel_decoder

CHANNELS = {"res2": 8, "res3": 16, "res4": 24, "res5": 40}
STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
INPUT_SHAPE = {k: ShapeSpec(channels=CHANNELS[k], stride=STRIDES[k]) for k in CHANNELS}


def _small_decoder(**overrides):
    kwargs = dict(
        input_shape=INPUT_SHAPE,
        transformer_dropout=0.0,
        transformer_nheads=2,
        transformer_dim_feedforward=16,
        transformer_enc_layers=2,
        transformer_n_points=2,
        conv_dim=32,
        mask_dim=16,
        norm="GN",
        transformer_in_features=["res3", "res4", "res5"],
        common_stride=4,
    )
    kwargs.update(overrides)
    return MSDeformAttnPixelDecoder(**kwargs)


def _features(batch, height, width, padded=True):
    """Backbone-like features of an image (height, width): exact strides when the image
    was padded to 32, ceil-divided sizes otherwise (as a conv backbone gives)."""
    feats = {}
    for name, stride in STRIDES.items():
        if padded:
            size = (height // stride, width // stride)
        else:
            size = (math.ceil(height / stride), math.ceil(width / stride))
        feats[name] = torch.randn(batch, CHANNELS[name], *size)
    return feats


def _expected_mask2former_keys(num_layers):
    """Mask2Former's MSDeformAttnPixelDecoder state-dict keys, written out by hand."""
    keys = {"transformer.level_embed", "mask_features.weight", "mask_features.bias"}
    for level in range(3):
        keys |= {f"input_proj.{level}.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}
    for i in range(num_layers):
        prefix = f"transformer.encoder.layers.{i}"
        for sub in ("sampling_offsets", "attention_weights", "value_proj", "output_proj"):
            keys |= {f"{prefix}.self_attn.{sub}.weight", f"{prefix}.self_attn.{sub}.bias"}
        for sub in ("norm1", "linear1", "linear2", "norm2"):
            keys |= {f"{prefix}.{sub}.weight", f"{prefix}.{sub}.bias"}
    # Detectron2 Conv2d with GN norm and no bias.
    keys |= {"adapter_1.weight", "adapter_1.norm.weight", "adapter_1.norm.bias"}
    keys |= {"layer_1.weight", "layer_1.norm.weight", "layer_1.norm.bias"}
    return keys


def test_registered_and_built_from_config_with_mask2former_names(make_cfg):
    assert PIXEL_DECODER_REGISTRY.get("MSDeformAttnPixelDecoder") is MSDeformAttnPixelDecoder
    cfg = make_cfg()
    decoder = build_pixel_decoder(cfg, INPUT_SHAPE)
    assert set(decoder.state_dict()) == _expected_mask2former_keys(num_layers=6)
    # input_proj runs from the lowest resolution (res5) to the highest (res3).
    assert [p[0].in_channels for p in decoder.input_proj] == [40, 24, 16]
    assert decoder.transformer.level_embed.shape == (3, 256)
    assert decoder.adapter_1.in_channels == CHANNELS["res2"]
    assert decoder.mask_features.out_channels == cfg.MODEL.PIXEL_DECODER.MASK_DIM


@pytest.mark.parametrize(
    "height,width,padded", [(64, 96, True), (128, 64, True), (100, 75, False), (33, 47, False)]
)
def test_output_shapes_and_strides(height, width, padded):
    decoder = _small_decoder().eval()
    feats = _features(2, height, width, padded)
    with torch.no_grad():
        mask_features, multi_scale = decoder.forward_features(feats)
    assert mask_features.shape == (2, 16, *feats["res2"].shape[-2:])
    assert len(multi_scale) == 3
    for out, name in zip(multi_scale, ("res5", "res4", "res3")):
        assert out.shape == (2, 32, *feats[name].shape[-2:])


def test_frames_are_encoded_independently():
    decoder = _small_decoder().eval()
    feats = _features(3, 64, 64)
    with torch.no_grad():
        batched_mask, batched_ms = decoder.forward_features(feats)
        single_mask, single_ms = decoder.forward_features({k: v[1:2] for k, v in feats.items()})
    torch.testing.assert_close(batched_mask[1:2], single_mask, atol=1e-5, rtol=1e-5)
    for batched, single in zip(batched_ms, single_ms):
        torch.testing.assert_close(batched[1:2], single, atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter():
    decoder = _small_decoder()
    # The zero-initialised offset/weight projections block gradient paths to the position
    # and level embeddings at initialisation; perturb them so that every path is live.
    with torch.no_grad():
        for layer in decoder.transformer.encoder.layers:
            layer.self_attn.sampling_offsets.weight.normal_(std=0.1)
            layer.self_attn.attention_weights.weight.normal_(std=0.1)
    mask_features, multi_scale = decoder.forward_features(_features(2, 64, 64))
    loss = mask_features.square().mean() + sum(f.square().mean() for f in multi_scale)
    loss.backward()
    for name, param in decoder.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_missing_backbone_feature_is_named():
    decoder = _small_decoder()
    feats = _features(1, 64, 64)
    del feats["res4"]
    with pytest.raises(KeyError, match="res4"):
        decoder.forward_features(feats)


def test_unknown_deformable_feature_is_named():
    with pytest.raises(ValueError, match="res6"):
        _small_decoder(transformer_in_features=["res4", "res5", "res6"])
