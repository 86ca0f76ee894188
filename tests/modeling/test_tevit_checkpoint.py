"""Official TeViT checkpoints (hustvl/TeViT, mmdetection layout) load into the published
config with nothing left out. The official names and shapes are written here from the
official module definitions (``MsgShifT`` on mmdetection's PVTv2 layout, ``FPN``,
``EmbeddingRPNHead``, ``STQIHead`` = ``DIIHead`` with mmcv's ``MultiheadAttention`` and
``FFN``, ``DynamicMaskHead`` = ``FCNMaskHead`` with ``ConvModule``s), not from this
project's model."""

import logging
import os

import pytest
import torch
from detectron2.modeling import build_model
from torch import nn

from ifr.checkpoint import IFRCheckpointer, IncompleteCheckpointError, load_inference_weights
from ifr.checkpoint.files import convert_checkpoint
from ifr.checkpoint.tevit import tevit_to_ifr
from ifr.engine.defaults import build_cfg
from ifr.utils.tensor_io import CheckpointFormatError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PUBLISHED = os.path.join(ROOT, "configs", "ytvis19", "tevit_msgshift.yaml")

# tevit_msgshift.py: PVTv2-b1 MsgShifT (embed 64, heads 1/2/5/8, MLP 8/8/4/4, SR 8/4/2/1, 2
# blocks per stage, 32 messengers), FPN 256, 100 proposals, DIIHead (FFN 2048, dynamic 64,
# 1 class fc, 3 box fcs, 7x7), DynamicMaskHead (4 convs, 14x14, class-specific 40 masks).
DIMS, HEADS, MLP, SR, DEPTH = (64, 128, 320, 512), (1, 2, 5, 8), (8, 8, 4, 4), (8, 4, 2, 1), 2
D, FFN, DYN, CLASSES, PROPOSALS = 256, 2048, 64, 40, 100


def official_tevit_shapes(num_stages: int, with_messengers: bool = True, classes: int = CLASSES):
    """name -> shape of an official TeViT MsgShifT state dict with ``num_stages`` stages."""
    shapes = {}
    if with_messengers:
        shapes["backbone.msg_tokens"] = (1, 32, 3)
    in_ch = 3
    for s, (c, mlp, sr) in enumerate(zip(DIMS, MLP, SR)):
        p = f"backbone.layers.{s}."
        kernel = 7 if s == 0 else 3
        shapes[p + "0.projection.weight"], shapes[p + "0.projection.bias"] = (
            (c, in_ch, kernel, kernel),
            (c,),
        )
        shapes[p + "0.norm.weight"] = shapes[p + "0.norm.bias"] = (c,)
        for b in range(DEPTH):
            q = f"{p}1.{b}."
            for norm in ("norm1", "norm2"):
                shapes[q + norm + ".weight"] = shapes[q + norm + ".bias"] = (c,)
            shapes[q + "attn.attn.in_proj_weight"], shapes[q + "attn.attn.in_proj_bias"] = (
                (3 * c, c),
                (3 * c,),
            )
            shapes[q + "attn.attn.out_proj.weight"], shapes[q + "attn.attn.out_proj.bias"] = (
                (c, c),
                (c,),
            )
            if sr > 1:
                shapes[q + "attn.sr.weight"], shapes[q + "attn.sr.bias"] = (c, c, sr, sr), (c,)
                shapes[q + "attn.norm.weight"] = shapes[q + "attn.norm.bias"] = (c,)
            h = c * mlp
            shapes[q + "ffn.layers.0.weight"], shapes[q + "ffn.layers.0.bias"] = (h, c, 1, 1), (h,)
            shapes[q + "ffn.layers.1.weight"], shapes[q + "ffn.layers.1.bias"] = (h, 1, 3, 3), (h,)
            shapes[q + "ffn.layers.4.weight"], shapes[q + "ffn.layers.4.bias"] = (c, h, 1, 1), (c,)
        shapes[p + "2.weight"] = shapes[p + "2.bias"] = (c,)
        in_ch = c
    for i, c in enumerate(DIMS):
        shapes[f"neck.lateral_convs.{i}.conv.weight"] = (D, c, 1, 1)
        shapes[f"neck.fpn_convs.{i}.conv.weight"] = (D, D, 3, 3)
        shapes[f"neck.lateral_convs.{i}.conv.bias"] = shapes[f"neck.fpn_convs.{i}.conv.bias"] = (D,)
    shapes["rpn_head.init_proposal_bboxes.weight"] = (PROPOSALS, 4)
    shapes["rpn_head.init_proposal_features.weight"] = (PROPOSALS, D)

    def dynamic_conv(prefix: str, with_proj: bool):
        shapes[prefix + "dynamic_layer.weight"] = (2 * D * DYN, D)
        shapes[prefix + "dynamic_layer.bias"] = (2 * D * DYN,)
        shapes[prefix + "norm_in.weight"] = shapes[prefix + "norm_in.bias"] = (DYN,)
        shapes[prefix + "norm_out.weight"] = shapes[prefix + "norm_out.bias"] = (D,)
        if with_proj:
            shapes[prefix + "fc_layer.weight"], shapes[prefix + "fc_layer.bias"] = (D, D * 49), (D,)
            shapes[prefix + "fc_norm.weight"] = shapes[prefix + "fc_norm.bias"] = (D,)

    for i in range(num_stages):
        p = f"roi_head.bbox_head.{i}."
        shapes[p + "attention.attn.in_proj_weight"] = (3 * D, D)
        shapes[p + "attention.attn.in_proj_bias"] = (3 * D,)
        shapes[p + "attention.attn.out_proj.weight"], shapes[p + "attention.attn.out_proj.bias"] = (
            (D, D),
            (D,),
        )
        dynamic_conv(p + "instance_interactive_conv.", with_proj=True)
        shapes[p + "ffn.layers.0.0.weight"], shapes[p + "ffn.layers.0.0.bias"] = (FFN, D), (FFN,)
        shapes[p + "ffn.layers.1.weight"], shapes[p + "ffn.layers.1.bias"] = (D, FFN), (D,)
        for norm in ("attention_norm", "instance_interactive_conv_norm", "ffn_norm"):
            shapes[f"{p}{norm}.weight"] = shapes[f"{p}{norm}.bias"] = (D,)
        for branch, count in (("cls_fcs", 1), ("reg_fcs", 3)):  # Linear, LN, ReLU each
            for j in range(count):
                shapes[f"{p}{branch}.{3 * j}.weight"] = (D, D)
                shapes[f"{p}{branch}.{3 * j + 1}.weight"] = shapes[
                    f"{p}{branch}.{3 * j + 1}.bias"
                ] = (D,)
        shapes[p + "fc_cls.weight"], shapes[p + "fc_cls.bias"] = (classes, D), (classes,)
        shapes[p + "fc_reg.weight"], shapes[p + "fc_reg.bias"] = (4, D), (4,)
        p = f"roi_head.mask_head.{i}."
        dynamic_conv(p + "instance_interactive_conv.", with_proj=False)
        for j in range(4):
            shapes[f"{p}convs.{j}.conv.weight"] = (D, D, 3, 3)
            for bn in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{p}convs.{j}.bn.{bn}"] = (D,)
            shapes[f"{p}convs.{j}.bn.num_batches_tracked"] = ()
        shapes[p + "upsample.weight"], shapes[p + "upsample.bias"] = (D, D, 2, 2), (D,)
        shapes[p + "conv_logits.weight"], shapes[p + "conv_logits.bias"] = (
            (classes, D, 1, 1),
            (classes,),
        )
    return shapes


def _random_state(shapes):
    torch.manual_seed(0)
    return {
        k: torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(shape)
        for k, shape in shapes.items()
    }


def _model(num_stages: int = 2):
    cfg = build_cfg(
        PUBLISHED,
        ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.TEVIT.NUM_STAGES", str(num_stages)],
    )
    return cfg, build_model(cfg)


def test_the_full_official_layout_has_623_tensors():
    assert len(official_tevit_shapes(6)) == 623


def test_official_tevit_names_and_shapes_map_one_to_one_onto_the_published_model():
    _, model = _model()
    official = _random_state(official_tevit_shapes(2))
    converted = tevit_to_ifr(official)
    model_state = model.state_dict()
    assert set(converted) == set(model_state)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in model_state.items()
    }


def test_attention_split_ffn_reshape_and_wrapper_levels_by_hand():
    official = _random_state(official_tevit_shapes(2))
    converted = tevit_to_ifr(official)
    in_proj = official["backbone.layers.2.1.1.attn.attn.in_proj_weight"]  # C = 320
    assert torch.equal(converted["backbone.block3.1.attn.q.weight"], in_proj[:320])
    assert torch.equal(converted["backbone.block3.1.attn.kv.weight"], in_proj[320:])
    bias = official["backbone.layers.0.1.0.attn.attn.in_proj_bias"]
    assert torch.equal(converted["backbone.block1.0.attn.kv.bias"], bias[64:])
    fc2 = official["backbone.layers.3.1.0.ffn.layers.4.weight"]
    assert torch.equal(converted["backbone.block4.0.mlp.fc2.weight"], fc2[:, :, 0, 0])
    assert torch.equal(
        converted["transformer_decoder.mask_heads.1.convs.10.running_var"],
        official["roi_head.mask_head.1.convs.3.bn.running_var"],
    )
    assert torch.equal(
        converted["transformer_decoder.stages.0.ffn.2.weight"],
        official["roi_head.bbox_head.0.ffn.layers.1.weight"],
    )
    assert torch.equal(
        converted["transformer_decoder.stages.1.reg_fcs.7.bias"],
        official["roi_head.bbox_head.1.reg_fcs.7.bias"],
    )


def test_an_official_file_evaluates_as_it_is(tmp_path, caplog):
    """``MODEL.WEIGHTS <official file>`` (mmdetection's ``{"meta", "state_dict"}``) with
    ``--eval-only``'s loader: every model tensor loads, nothing is left out."""
    cfg, model = _model()
    official = _random_state(official_tevit_shapes(2))
    path = tmp_path / "tevit_msgshift.pth"
    torch.save({"meta": {"epoch": 12, "CLASSES": ("person",) * 40}, "state_dict": official}, path)
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(path)
    with caplog.at_level(logging.INFO):
        load_inference_weights(model, cfg)
    total = len(model.state_dict())
    assert f"loaded {total} of {total} model tensors" in caplog.text
    state = model.state_dict()
    assert torch.equal(state["backbone.msg_tokens"], official["backbone.msg_tokens"])
    assert torch.equal(
        state["transformer_decoder.mask_heads.0.conv_logits.weight"],
        official["roi_head.mask_head.0.conv_logits.weight"],
    )


def test_the_converter_writes_the_same_weights(tmp_path):
    official = _random_state(official_tevit_shapes(2))
    path, out = tmp_path / "tevit.pth", tmp_path / "tevit_d2.pth"
    torch.save({"state_dict": official}, path)
    lines = []
    written = convert_checkpoint(str(path), str(out), "tevit", log=lines.append)["model"]
    expected = tevit_to_ifr(official)
    splits = 2 * 8  # weight and bias of the 8 backbone attentions
    assert lines == [
        f"{path}: {len(official)} tensors read, {len(official) + splits} written (each "
        f"backbone in_proj written as q and kv); nothing left out -> {out}"
    ]
    assert set(written) == set(expected)
    assert all(torch.equal(written[k], expected[k]) for k in expected)


def test_coco_queryinst_initialisation_loads_all_but_its_80_class_tensors(tmp_path, caplog):
    """QueryInst PVTv2-b1 on COCO (TeViT's ``load_from``): no messengers, 80 classes. For
    training it loads everything else; the class tensors are reported as another shape."""
    _, model = _model()
    coco = _random_state(official_tevit_shapes(2, with_messengers=False, classes=80))
    path = tmp_path / "queryinst_pvt_v2_b1_coco.pth"
    torch.save({"state_dict": coco}, path)
    with caplog.at_level(logging.INFO):
        IFRCheckpointer(model).load(str(path), checkpointables=[])
    total = len(model.state_dict())
    class_shaped = 4 * 2  # fc_cls and conv_logits (weight, bias) of 2 stages
    assert f"loaded {total - 1 - class_shaped} of {total} model tensors" in caplog.text
    assert "backbone.msg_tokens" in caplog.text and "another shape" in caplog.text
    with pytest.raises(IncompleteCheckpointError):  # not an evaluable model
        IFRCheckpointer(model, require_complete=True).load(str(path), checkpointables=[])
    # the published config starts from this file, as TeViT's README (load_from)
    cfg = build_cfg(PUBLISHED)
    assert (
        os.path.basename(cfg.MODEL.WEIGHTS) == "queryinst_pvtv2-b1_fpn_mstrain_480-800_3x_coco.pth"
    )


def test_an_unknown_key_is_named():
    official = _random_state(official_tevit_shapes(1))
    official["roi_head.bbox_head.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointFormatError, match="roi_head.bbox_head.0.extra.weight"):
        tevit_to_ifr(official, source="x.pth")
    with pytest.raises(CheckpointFormatError, match="not a TeViT checkpoint"):
        tevit_to_ifr({"backbone.layers.0.0.projection.weight": torch.zeros(1)}, source="x.pth")


@torch.no_grad()
def test_converted_attention_computes_the_official_one():
    """The official MsgShifT attention on the converted weights: mmcv's
    ``MultiheadAttention`` (``torch.nn.MultiheadAttention`` with one 3C-row ``in_proj``) over
    the queries [patches; messengers] and the keys/values LN([sr(patches); messengers
    through sr's summed kernel]), as TeViT's ``SpatialReductionAttention.forward`` (without
    its residual, which the block adds): the split of ``in_proj`` into q and kv is right."""
    from ifr.modeling.backbone.msgshift import SpatialReductionAttention

    torch.manual_seed(0)
    dim, heads, sr_ratio, size, messengers = 16, 2, 2, (4, 6), 3
    official = nn.MultiheadAttention(dim, heads)
    # MsgShifT's norm_cfg: LN with eps 1e-6
    sr, norm = nn.Conv2d(dim, dim, sr_ratio, sr_ratio), nn.LayerNorm(dim, eps=1e-6)
    for module in (official, sr, norm):
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    prefix = "backbone.layers.1.1.0.attn."
    state = {prefix + "attn." + k: v for k, v in official.state_dict().items()}
    state.update({prefix + "sr." + k: v for k, v in sr.state_dict().items()})
    state.update({prefix + "norm." + k: v for k, v in norm.state_dict().items()})
    state["roi_head.bbox_head.0.fc_cls.weight"] = torch.zeros(1)  # marks the official layout
    converted = tevit_to_ifr(state)
    ours = SpatialReductionAttention(dim, heads, sr_ratio)
    ours.load_state_dict(
        {k[len("backbone.block2.0.attn.") :]: v for k, v in converted.items() if "block2" in k}
    )
    x = torch.randn(2, size[0] * size[1], dim)
    msg = torch.randn(2, messengers, dim)
    # the official forward
    x_kv = sr(x.transpose(1, 2).reshape(2, dim, *size)).flatten(2).transpose(1, 2)
    msg_kv = torch.einsum("bnc,oc->bno", msg, sr.weight.sum((-1, -2))) + sr.bias
    x_kv = norm(torch.cat([x_kv, msg_kv], dim=1))
    x_q = torch.cat([x, msg], dim=1)
    expected = official(x_q.transpose(0, 1), x_kv.transpose(0, 1), x_kv.transpose(0, 1))[0]
    torch.testing.assert_close(ours(x, size, msg), expected.transpose(0, 1), atol=1e-5, rtol=0)
