"""Key layout of the official Mask2Former-VIS YouTube-VIS-2019 checkpoints (R50 and Swin-L,
Detectron2 ``.pkl``): every tensor loads into ``VideoMaskFormer`` and nothing is left over.

The expected keys and shapes are written here from Mask2Former's module definitions
(``build_resnet_backbone`` with FrozenBN, ``D2SwinTransformer``, ``MSDeformAttnPixelDecoder``
under ``sem_seg_head.pixel_decoder``, ``VideoMultiScaleMaskedTransformerDecoder`` under
``sem_seg_head.predictor``, and the criterion's ``empty_weight``), not from this code.
"""

import os
import pickle
from typing import Dict, Tuple

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from ifr.checkpoint import IFRCheckpointer, rename_mask2former_keys
from ifr.engine.defaults import build_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
Shapes = Dict[str, Tuple[int, ...]]

D, FFN, QUERIES, CLASSES = 256, 2048, 100, 40
DEC_LAYERS = 9  # Mask2Former-VIS's DEC_LAYERS: 10


def _norm(prefix: str, channels: int, frozen_bn: bool) -> Shapes:
    names = ("weight", "bias", "running_mean", "running_var") if frozen_bn else ("weight", "bias")
    return {f"{prefix}.{n}": (channels,) for n in names}


def _linear(prefix: str, out_dim: int, in_dim: int, bias: bool = True) -> Shapes:
    shapes = {f"{prefix}.weight": (out_dim, in_dim)}
    if bias:
        shapes[f"{prefix}.bias"] = (out_dim,)
    return shapes


def resnet50_keys() -> Shapes:
    """detectron2 ResNet-50 (basic stem, FrozenBN, stride in 3x3): res2..res5."""
    keys = {"backbone.stem.conv1.weight": (64, 3, 7, 7)}
    keys.update(_norm("backbone.stem.conv1.norm", 64, True))
    in_channels = 64
    for stage, (blocks, bottleneck) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        out_channels = bottleneck * 4
        for block in range(blocks):
            prefix = f"backbone.res{stage + 2}.{block}"
            convs = {
                "conv1": (bottleneck, in_channels, 1, 1),
                "conv2": (bottleneck, bottleneck, 3, 3),
                "conv3": (out_channels, bottleneck, 1, 1),
            }
            if block == 0:
                convs["shortcut"] = (out_channels, in_channels, 1, 1)
            for name, shape in convs.items():
                keys[f"{prefix}.{name}.weight"] = shape
                keys.update(_norm(f"{prefix}.{name}.norm", shape[0], True))
            in_channels = out_channels
    return keys


def swin_large_keys(window: int = 12) -> Shapes:
    """D2SwinTransformer Swin-L (C = 192, depths 2-2-18-2, heads 6-12-24-48, window 12)."""
    embed, depths, heads = 192, (2, 2, 18, 2), (6, 12, 24, 48)
    keys = {"backbone.patch_embed.proj.weight": (embed, 3, 4, 4)}
    keys["backbone.patch_embed.proj.bias"] = (embed,)
    keys.update(_norm("backbone.patch_embed.norm", embed, False))
    for stage, (depth, num_heads) in enumerate(zip(depths, heads)):
        dim = embed * 2**stage
        for block in range(depth):
            prefix = f"backbone.layers.{stage}.blocks.{block}"
            keys.update(_norm(f"{prefix}.norm1", dim, False))
            keys[f"{prefix}.attn.relative_position_bias_table"] = ((2 * window - 1) ** 2, num_heads)
            keys[f"{prefix}.attn.relative_position_index"] = (window * window, window * window)
            keys.update(_linear(f"{prefix}.attn.qkv", 3 * dim, dim))
            keys.update(_linear(f"{prefix}.attn.proj", dim, dim))
            keys.update(_norm(f"{prefix}.norm2", dim, False))
            keys.update(_linear(f"{prefix}.mlp.fc1", 4 * dim, dim))
            keys.update(_linear(f"{prefix}.mlp.fc2", dim, 4 * dim))
        if stage < 3:
            prefix = f"backbone.layers.{stage}.downsample"
            keys.update(_linear(f"{prefix}.reduction", 2 * dim, 4 * dim, bias=False))
            keys.update(_norm(f"{prefix}.norm", 4 * dim, False))
        keys.update(_norm(f"backbone.norm{stage}", dim, False))
    return keys


def pixel_decoder_keys(channels: Tuple[int, int, int, int]) -> Shapes:
    """MSDeformAttnPixelDecoder: res3-5 through 6 deformable encoder layers (8 heads, 3
    levels, 4 points), res2 through adapter_1/layer_1 (GN); ``channels`` of res2..res5."""
    prefix = "sem_seg_head.pixel_decoder"
    keys = {}
    for level, in_channels in enumerate(reversed(channels[1:])):  # res5 first
        keys[f"{prefix}.input_proj.{level}.0.weight"] = (D, in_channels, 1, 1)
        keys[f"{prefix}.input_proj.{level}.0.bias"] = (D,)
        keys.update(_norm(f"{prefix}.input_proj.{level}.1", D, False))
    keys[f"{prefix}.transformer.level_embed"] = (3, D)
    for layer in range(6):
        p = f"{prefix}.transformer.encoder.layers.{layer}"
        keys.update(_linear(f"{p}.self_attn.sampling_offsets", 8 * 3 * 4 * 2, D))
        keys.update(_linear(f"{p}.self_attn.attention_weights", 8 * 3 * 4, D))
        keys.update(_linear(f"{p}.self_attn.value_proj", D, D))
        keys.update(_linear(f"{p}.self_attn.output_proj", D, D))
        keys.update(_norm(f"{p}.norm1", D, False))
        keys.update(_linear(f"{p}.linear1", 1024, D))
        keys.update(_linear(f"{p}.linear2", D, 1024))
        keys.update(_norm(f"{p}.norm2", D, False))
    keys[f"{prefix}.mask_features.weight"] = (D, D, 1, 1)
    keys[f"{prefix}.mask_features.bias"] = (D,)
    keys[f"{prefix}.adapter_1.weight"] = (D, channels[0], 1, 1)
    keys.update(_norm(f"{prefix}.adapter_1.norm", D, False))
    keys[f"{prefix}.layer_1.weight"] = (D, D, 3, 3)
    keys.update(_norm(f"{prefix}.layer_1.norm", D, False))
    return keys


def _attention(prefix: str, module: str) -> Shapes:
    keys = {
        f"{prefix}.{module}.in_proj_weight": (3 * D, D),
        f"{prefix}.{module}.in_proj_bias": (3 * D,),
    }
    keys.update(_linear(f"{prefix}.{module}.out_proj", D, D))
    keys.update(_norm(f"{prefix}.norm", D, False))
    return keys


def predictor_keys(num_queries: int) -> Shapes:
    """VideoMultiScaleMaskedTransformerDecoder (d = 256, 9 layers, no input projection
    since the pixel decoder has 256 channels) + the criterion's no-object weight."""
    prefix = "sem_seg_head.predictor"
    keys = {}
    for layer in range(DEC_LAYERS):
        keys.update(_attention(f"{prefix}.transformer_self_attention_layers.{layer}", "self_attn"))
        keys.update(
            _attention(f"{prefix}.transformer_cross_attention_layers.{layer}", "multihead_attn")
        )
        ffn = f"{prefix}.transformer_ffn_layers.{layer}"
        keys.update(_linear(f"{ffn}.linear1", FFN, D))
        keys.update(_linear(f"{ffn}.linear2", D, FFN))
        keys.update(_norm(f"{ffn}.norm", D, False))
    keys.update(_norm(f"{prefix}.decoder_norm", D, False))
    keys[f"{prefix}.query_feat.weight"] = (num_queries, D)
    keys[f"{prefix}.query_embed.weight"] = (num_queries, D)
    keys[f"{prefix}.level_embed.weight"] = (3, D)
    keys.update(_linear(f"{prefix}.class_embed", CLASSES + 1, D))
    for i in range(3):
        keys.update(_linear(f"{prefix}.mask_embed.layers.{i}", D, D))
    keys["criterion.empty_weight"] = (CLASSES + 1,)
    return keys


def official_r50_keys() -> Shapes:
    return {**resnet50_keys(), **pixel_decoder_keys((256, 512, 1024, 2048)), **predictor_keys(100)}


def official_swin_l_keys() -> Shapes:
    return {
        **swin_large_keys(),
        **pixel_decoder_keys((192, 384, 768, 1536)),
        **predictor_keys(200),
    }


def _model(config: str):
    cfg = build_cfg(os.path.join(ROOT, "configs", "ytvis19", config), ["MODEL.DEVICE", "cpu"])
    return build_model(cfg)


def _assert_layout_matches(model, official: Shapes) -> None:
    source_of = rename_mask2former_keys({k: k for k in official})  # our name -> theirs
    expected = {ours: official[theirs] for ours, theirs in source_of.items()}
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(ours) - set(expected)) == []  # nothing of ours left without weights
    assert sorted(set(expected) - set(ours)) == []  # nothing of theirs left unused
    wrong = {k: (ours[k], expected[k]) for k in ours if ours[k] != expected[k]}
    assert wrong == {}
    # The one key not loaded: a constant of the loss, set by MODEL.M2F_VIS.NO_OBJECT_WEIGHT.
    assert set(official) - set(source_of.values()) == {"criterion.empty_weight"}
    assert torch.equal(model.criterion.empty_weight, torch.tensor([1.0] * CLASSES + [0.1]))


def test_r50_checkpoint_layout_matches_the_model():
    _assert_layout_matches(_model("m2f_vis_r50.yaml"), official_r50_keys())


@pytest.mark.slow
def test_swin_large_checkpoint_layout_matches_the_model():
    _assert_layout_matches(_model("m2f_vis_swin_l.yaml"), official_swin_l_keys())


def test_r50_checkpoint_loads_every_tensor(tmp_path):
    """Through the checkpointer: a .pkl of the official layout (numpy arrays, as the model
    zoo's) sets every tensor of the model, and nothing is reported missing or unused."""
    model = _model("m2f_vis_r50.yaml")
    official = official_r50_keys()
    generator = np.random.default_rng(0)
    arrays = {k: generator.standard_normal(s).astype(np.float32) for k, s in official.items()}
    arrays["criterion.empty_weight"] = np.array([1.0] * CLASSES + [0.1], dtype=np.float32)
    path = tmp_path / "model_final_m2f_vis_r50.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": arrays, "__author__": "Mask2Former-VIS layout"}, f)
    checkpointer = IFRCheckpointer(model)
    # load() in two steps (detectron2's own) to see what the model reports.
    incompatible = checkpointer._load_model(checkpointer._load_file(str(path)))
    assert incompatible.missing_keys == []
    assert incompatible.unexpected_keys == []
    assert incompatible.incorrect_shapes == []
    state = model.state_dict()
    for ours, theirs in rename_mask2former_keys({k: k for k in official}).items():
        assert torch.equal(state[ours], torch.from_numpy(arrays[theirs])), ours
    assert len(state) == len(official) - 1


def test_r50_checkpoint_with_static_query_loads_every_tensor(tmp_path):
    """The same file with the query features named ``static_query`` (some model-zoo
    files): every tensor loads, ``query_feat`` from it."""
    model = _model("m2f_vis_r50.yaml")
    official = official_r50_keys()
    generator = np.random.default_rng(1)
    arrays = {k: generator.standard_normal(s).astype(np.float32) for k, s in official.items()}
    name = "sem_seg_head.predictor.query_feat.weight"
    arrays["sem_seg_head.predictor.static_query.weight"] = arrays.pop(name)
    path = tmp_path / "model_final_static_query.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": arrays}, f)
    checkpointer = IFRCheckpointer(model)
    incompatible = checkpointer._load_model(checkpointer._load_file(str(path)))
    assert incompatible.missing_keys == [] and incompatible.unexpected_keys == []
    loaded = model.state_dict()["transformer_decoder.query_feat.weight"]
    assert torch.equal(
        loaded, torch.from_numpy(arrays["sem_seg_head.predictor.static_query.weight"])
    )
