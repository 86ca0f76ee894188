import math

import pytest
import torch
from detectron2.modeling import build_backbone

from ifr.modeling.backbone.swin import (
    D2SwinTransformer,
    SwinTransformerBlock,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


@pytest.fixture
def swin_cfg(make_cfg):
    """``swin_cfg(depths, window)``: a small D2SwinTransformer config."""

    def build(depths=(1, 1, 1, 1), window=7):
        return make_cfg(
            overrides={
                "MODEL.BACKBONE.NAME": "D2SwinTransformer",
                "MODEL.SWIN.EMBED_DIM": 32,
                "MODEL.SWIN.DEPTHS": list(depths),
                "MODEL.SWIN.NUM_HEADS": [1, 2, 4, 8],
                "MODEL.SWIN.WINDOW_SIZE": window,
                "MODEL.SWIN.DROP_PATH_RATE": 0.0,
            }
        )

    return build


def test_builds_from_config_with_strides_and_channels(swin_cfg):
    backbone = build_backbone(swin_cfg())
    assert isinstance(backbone, D2SwinTransformer)
    assert backbone.size_divisibility == 32
    shapes = backbone.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res2": (32, 4),
        "res3": (64, 8),
        "res4": (128, 16),
        "res5": (256, 32),
    }


@pytest.mark.parametrize("height,width", [(64, 96), (67, 45), (33, 31)])
def test_output_sizes_for_any_input_size(height, width, swin_cfg):
    torch.set_num_threads(1)
    backbone = build_backbone(swin_cfg(depths=(2, 2, 2, 2), window=3)).eval()
    with torch.no_grad():
        outputs = backbone(torch.randn(2, 3, height, width))
    for name, spec in backbone.output_shape().items():
        expected = (
            2,
            spec.channels,
            math.ceil(height / spec.stride),
            math.ceil(width / spec.stride),
        )
        assert outputs[name].shape == expected, name
        assert torch.isfinite(outputs[name]).all()


def test_parameter_names_match_mask2former(swin_cfg):
    backbone = build_backbone(swin_cfg(depths=(2, 2, 2, 2)))
    keys = set(backbone.state_dict())
    expected = {
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "patch_embed.norm.weight",
        "patch_embed.norm.bias",
    }
    for i in range(4):
        expected |= {f"norm{i}.weight", f"norm{i}.bias"}
        for j in range(2):
            block = f"layers.{i}.blocks.{j}"
            expected |= {
                f"{block}.attn.relative_position_bias_table",
                f"{block}.attn.relative_position_index",
            }
            for sub in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
                expected |= {f"{block}.{sub}.weight", f"{block}.{sub}.bias"}
        if i < 3:
            expected |= {f"layers.{i}.downsample.reduction.weight"}
            expected |= {f"layers.{i}.downsample.norm.weight", f"layers.{i}.downsample.norm.bias"}
    assert keys == expected


def test_out_features_subset(swin_cfg):
    cfg = swin_cfg()
    cfg.MODEL.SWIN.OUT_FEATURES = ["res3", "res5"]
    backbone = build_backbone(cfg)
    assert set(backbone.output_shape()) == {"res3", "res5"}
    assert set(backbone(torch.randn(1, 3, 32, 32))) == {"res3", "res5"}
    cfg.MODEL.SWIN.OUT_FEATURES = ["res6"]
    with pytest.raises(ValueError, match="OUT_FEATURES"):
        build_backbone(cfg)


def test_relative_position_index_hand_computed():
    block = SwinTransformerBlock(dim=4, num_heads=1, window_size=2)
    # Positions (0,0),(0,1),(1,0),(1,1); index = (dr + 1) * 3 + (dc + 1).
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(block.attn.relative_position_index, expected)


def test_window_partition_round_trip():
    x = torch.randn(2, 6, 9, 5)
    windows = window_partition(x, 3)
    assert windows.shape == (2 * 2 * 3, 9, 5)
    torch.testing.assert_close(windows[1], x[0, 0:3, 3:6].reshape(9, 5))
    assert torch.equal(window_reverse(windows, 3, 6, 9), x)


def _block_output_change(block, mask, source, target, size=8):
    """Change of the output at pixel ``target`` when the input at ``source`` changes."""
    dim = block.norm1.normalized_shape[0]
    x = torch.randn(1, size * size, dim)
    y = x.clone()
    y[0, source[0] * size + source[1]] += torch.randn(dim)
    with torch.no_grad():
        out_x = block(x, size, size, mask)
        out_y = block(y, size, size, mask)
    return (out_x - out_y)[0, target[0] * size + target[1]].abs().max().item()


def _block(shift_size):
    block = SwinTransformerBlock(dim=8, num_heads=2, window_size=4, shift_size=shift_size).eval()
    # Large weights, so that every interaction shows clearly (the init uses std 0.02).
    with torch.no_grad():
        for param in block.attn.parameters():
            if param.is_floating_point():
                param.normal_(std=0.3)
    return block


def test_regular_windows_do_not_mix():
    block = _block(shift_size=0)
    assert _block_output_change(block, None, source=(0, 0), target=(0, 5)) == 0.0  # next window
    assert _block_output_change(block, None, source=(0, 0), target=(3, 3)) > 1e-3  # same window


def test_shifted_windows_mask_wrapped_regions():
    block = _block(shift_size=2)
    mask = shifted_window_mask(8, 8, window_size=4, shift_size=2)
    assert mask.shape == (4, 16, 16)
    # After the cyclic shift, pixels (7, 7) and (0, 0) share a window but are not
    # neighbours in the image: the mask must keep them apart.
    assert _block_output_change(block, mask, source=(7, 7), target=(0, 0)) < 1e-6
    assert _block_output_change(block, None, source=(7, 7), target=(0, 0)) > 1e-3
    # (6, 6) and (7, 7) are in the same shifted window and the same region.
    assert _block_output_change(block, mask, source=(7, 7), target=(6, 6)) > 1e-3
    # Shifted windows straddle the regular ones: (1, 1) and (2, 2) shared a regular
    # window but not a shifted one; (2, 2) and (4, 4) share a shifted window.
    assert _block_output_change(block, mask, source=(1, 1), target=(2, 2)) == 0.0
    assert _block_output_change(block, mask, source=(2, 2), target=(4, 4)) > 1e-3


def test_gradients_reach_every_parameter(swin_cfg):
    backbone = build_backbone(swin_cfg(depths=(2, 1, 1, 1), window=3))
    outputs = backbone(torch.randn(1, 3, 40, 40))
    sum(o.square().mean() for o in outputs.values()).backward()
    for name, param in backbone.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_absolute_position_embedding_resized(swin_cfg):
    cfg = swin_cfg()
    cfg.MODEL.SWIN.APE = True
    cfg.MODEL.SWIN.PRETRAIN_IMG_SIZE = 32
    backbone = build_backbone(cfg)
    assert backbone.absolute_pos_embed.shape == (1, 32, 8, 8)
    assert backbone(torch.randn(1, 3, 48, 40))["res2"].shape == (1, 32, 12, 10)


def test_rejects_non_image_input(swin_cfg):
    backbone = build_backbone(swin_cfg())
    with pytest.raises(ValueError, match="B, C, H, W"):
        backbone(torch.randn(3, 32, 32))


def test_activation_checkpointing_gives_same_outputs_and_gradients(swin_cfg):
    cfg = swin_cfg(depths=(2, 1, 1, 1), window=3)
    plain = build_backbone(cfg).train()
    cfg.MODEL.SWIN.USE_CHECKPOINT = True
    checkpointed = build_backbone(cfg).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 40, 40)
    losses = [sum(o.sum() for o in model(x).values()) for model in (plain, checkpointed)]
    torch.testing.assert_close(losses[0], losses[1])
    for loss in losses:
        loss.backward()
    grad_plain = plain.layers[0].blocks[1].attn.qkv.weight.grad
    torch.testing.assert_close(checkpointed.layers[0].blocks[1].attn.qkv.weight.grad, grad_plain)
