"""VisTR's COCO DETR initialisation (Epiphqny/VisTR layout) converts and loads through the
safe checkpoint loader. The DETR names are written here from DETR's/VisTR's module
definitions (torchvision ResNet under ``backbone.0.body``, ``transformer.encoder.layers.i``
with ``self_attn``/``linear1``/``linear2``/``norm1``/``norm2``, decoder layers adding
``multihead_attn``/``norm3``, ``bbox_attention``, ``mask_head`` with a deformable ``dcn``),
not from this code."""

import logging
import os

import pytest
import torch
import torchvision
from detectron2.modeling import build_model

from ifr.checkpoint import IFRCheckpointer
from ifr.checkpoint.files import convert_checkpoint
from ifr.utils.tensor_io import CheckpointFormatError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
R50 = os.path.join(ROOT, "configs", "ytvis19", "vistr_r50.yaml")
D, HEADS, FFN = 384, 8, 2048


def _linear(prefix, out_dim, in_dim):
    return {f"{prefix}.weight": (out_dim, in_dim), f"{prefix}.bias": (out_dim,)}


def _attention(prefix):
    return {
        f"{prefix}.in_proj_weight": (3 * D, D),
        f"{prefix}.in_proj_bias": (3 * D,),
        **_linear(f"{prefix}.out_proj", D, D),
    }


def _norm(prefix, channels=D):
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,)}


def _conv(prefix, out_dim, in_dim, k, bias=True):
    shapes = {f"{prefix}.weight": (out_dim, in_dim, k, k)}
    if bias:
        shapes[f"{prefix}.bias"] = (out_dim,)
    return shapes


def detr_segm_keys(enc_layers=1, dec_layers=1):
    """Non-backbone tensors of VisTR's DETR-segm initialisation at d = 384."""
    keys = {
        **_conv("detr.input_proj", D, 2048, 1),
        "detr.query_embed.weight": (100, D),
        **_linear("detr.class_embed", 92, D),
    }
    for i in range(3):
        keys.update(_linear(f"detr.bbox_embed.layers.{i}", 4 if i == 2 else D, D))
    for i in range(enc_layers):
        p = f"detr.transformer.encoder.layers.{i}"
        keys.update(
            {
                **_attention(f"{p}.self_attn"),
                **_linear(f"{p}.linear1", FFN, D),
                **_linear(f"{p}.linear2", D, FFN),
                **_norm(f"{p}.norm1"),
                **_norm(f"{p}.norm2"),
            }
        )
    for i in range(dec_layers):
        p = f"detr.transformer.decoder.layers.{i}"
        keys.update(
            {
                **_attention(f"{p}.self_attn"),
                **_attention(f"{p}.multihead_attn"),
                **_linear(f"{p}.linear1", FFN, D),
                **_linear(f"{p}.linear2", D, FFN),
                **_norm(f"{p}.norm1"),
                **_norm(f"{p}.norm2"),
                **_norm(f"{p}.norm3"),
            }
        )
    keys.update(_norm("detr.transformer.decoder.norm"))
    keys.update(
        {**_linear("bbox_attention.q_linear", D, D), **_linear("bbox_attention.k_linear", D, D)}
    )
    widths = [D + HEADS, D // 2, D // 4, D // 8, D // 16]
    # lay1: dim -> dim, then dim -> context / 2 -> context / 4 -> context / 8
    for i, (c_in, c_out) in enumerate(
        zip([widths[0]] + widths[:3], [widths[0]] + widths[1:4]), start=1
    ):
        keys.update(_conv(f"mask_head.lay{i}", c_out, c_in, 3))
        keys.update(_norm(f"mask_head.gn{i}", c_out))
    keys.update(_norm("mask_head.gn5", widths[4]))
    keys.update(_conv("mask_head.conv_offset", 18, widths[3], 1))
    keys.update(_conv("mask_head.dcn", widths[4], widths[3], 3, bias=False))
    for i, (c_in, c_out) in enumerate(zip((1024, 512, 256), widths[1:4]), start=1):
        keys.update(_conv(f"mask_head.adapter{i}", c_out, c_in, 1))
    return keys


@pytest.fixture(scope="module")
def detr_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    state = {
        f"detr.backbone.0.body.{k}": v
        for k, v in torchvision.models.resnet50().state_dict().items()
    }
    state.update({k: torch.randn(shape) for k, shape in detr_segm_keys().items()})
    path = tmp_path_factory.mktemp("detr") / "r50_pretrained.pth"
    torch.save({"model": state}, path)
    return path, state


def test_detr_initialisation_loads_all_but_what_vistr_drops(
    make_cfg, detr_checkpoint, tmp_path, caplog
):
    path, state = detr_checkpoint
    out = tmp_path / "vistr_detr_coco_r50.pth"
    convert_checkpoint(str(path), str(out), "detr-vistr", log=None)
    overrides = {"MODEL.VISTR.ENC_LAYERS": 1, "MODEL.VISTR.DEC_LAYERS": 1, "MODEL.DEVICE": "cpu"}
    cfg = make_cfg(R50, overrides)
    model = build_model(cfg)
    with caplog.at_level(logging.INFO):
        IFRCheckpointer(model).load(str(out))
    assert "model tensors; not loaded (keep their initialisation)" in caplog.text
    params = dict(model.named_parameters())
    decoder = "transformer_decoder."
    pairs = {
        "detr.transformer.encoder.layers.0.norm2.weight": (
            "transformer.encoder_ffn_layers.0.norm.weight"
        ),
        "detr.transformer.decoder.layers.0.multihead_attn.in_proj_weight": (
            "transformer.cross_attention_layers.0.multihead_attn.in_proj_weight"
        ),
        "detr.transformer.decoder.layers.0.norm3.bias": "transformer.ffn_layers.0.norm.bias",
        "detr.transformer.decoder.norm.weight": "transformer.decoder_norm.weight",
        "bbox_attention.k_linear.weight": "mask_head.bbox_attention.k_linear.weight",
        "mask_head.dcn.weight": "mask_head.mask_head.dcn.weight",
        "mask_head.conv_offset.bias": "mask_head.mask_head.conv_offset.bias",
        "mask_head.adapter3.bias": "mask_head.mask_head.adapter3.bias",
    }
    for detr_name, name in pairs.items():
        torch.testing.assert_close(params[decoder + name].detach(), state[detr_name])
    torch.testing.assert_close(
        params["backbone.res5.2.conv3.weight"].detach(),
        state["detr.backbone.0.body.layer4.2.conv3.weight"],
    )
    loaded = torch.load(out, weights_only=True)["model"]
    not_loaded = sorted(set(model.state_dict()) - set(loaded))
    # Dropped as VisTR does (class_embed: other classes; query_embed: 360 queries) and
    # the 3-D fusion (new).
    prefixes = (
        decoder + "class_embed.",
        decoder + "query_embed.",
        decoder + "mask_head.insmask_head.",
    )
    assert not_loaded and all(k.startswith(prefixes) for k in not_loaded), not_loaded


def test_a_non_detr_checkpoint_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"head.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointFormatError, match="unexpected key 'head.weight'"):
        convert_checkpoint(str(path), str(tmp_path / "out.pth"), "detr-vistr", log=None)


def insmask_head_keys():
    """VisTR's ``insmask_head``: Conv3d(24, 12) + GN, Conv3d(12, 12) + GN twice, Conv3d(12, 1)
    (``nn.Sequential`` indices 0..9; ReLUs at 2, 5, 8 hold no tensors)."""
    keys = {}
    for index, (c_in, c_out) in zip((0, 3, 6), ((24, 12), (12, 12), (12, 12))):
        keys[f"insmask_head.{index}.weight"] = (c_out, c_in, 3, 3, 3)
        keys[f"insmask_head.{index}.bias"] = (c_out,)
        keys.update(_norm(f"insmask_head.{index + 1}", c_out))
    keys["insmask_head.9.weight"], keys["insmask_head.9.bias"] = (1, 12, 1, 1, 1), (1,)
    return keys


def official_trained_vistr_state(enc_layers: int = 1, dec_layers: int = 1):
    """A trained VisTR R50's state dict, random values (``torch.manual_seed(0)``): its
    ResNet with DETR's frozen batch norm (no step counters) and no classifier, the DETR
    transformer and mask head without DETR's ``lay5``/``out_lay``, a 42-row class head
    (``num_classes = 41``), 360 queries and the 3-D fusion."""
    torch.manual_seed(0)
    state = {
        f"vistr.backbone.0.body.{k}": v
        for k, v in torchvision.models.resnet50().state_dict().items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    shapes = {
        k.replace("detr.", "vistr.", 1): v
        for k, v in detr_segm_keys(enc_layers, dec_layers).items()
        if not k.startswith(("mask_head.lay5", "mask_head.out_lay"))
    }
    shapes["vistr.class_embed.weight"], shapes["vistr.class_embed.bias"] = (42, D), (42,)
    shapes["vistr.query_embed.weight"] = (360, D)
    shapes.update(insmask_head_keys())
    state.update({k: torch.randn(shape) for k, shape in shapes.items()})
    return state


def test_a_trained_vistr_model_loads_with_nothing_left_out(make_cfg, tmp_path):
    """An official trained VisTR R50 (``vistr.*``, 42-row class head for num_classes = 41,
    360 queries, the 3-D fusion) evaluates with its own classes: every tensor loads."""
    state = official_trained_vistr_state()
    path, out = tmp_path / "vistr_r50.pth", tmp_path / "vistr_r50_d2.pth"
    torch.save({"model": state}, path)
    convert_checkpoint(str(path), str(out), "vistr", log=None)
    overrides = {"MODEL.VISTR.ENC_LAYERS": 1, "MODEL.VISTR.DEC_LAYERS": 1, "MODEL.DEVICE": "cpu"}
    model = build_model(make_cfg(R50, overrides))
    loaded = torch.load(out, weights_only=True)["model"]
    assert set(loaded) == set(model.state_dict())
    IFRCheckpointer(model, require_complete=True).load(str(out))
    params = dict(model.named_parameters())
    head = params["transformer_decoder.class_embed.weight"].detach()
    # Our row c (contiguous class c, category id c + 1) is VisTR's row c + 1; no-object last.
    torch.testing.assert_close(head, state["vistr.class_embed.weight"][1:])
    torch.testing.assert_close(
        params["transformer_decoder.mask_head.insmask_head.layers.9.weight"].detach(),
        state["insmask_head.9.weight"],
    )


def test_a_trained_vistr_file_evaluates_as_it_is(make_cfg, tmp_path, caplog):
    """``MODEL.WEIGHTS <official file>`` without converting: ``VisTR.rename_checkpoint_keys``
    converts it on load, every model tensor loads (``--eval-only``'s requirement)."""
    state = official_trained_vistr_state()
    path = tmp_path / "vistr_r50.pth"
    torch.save({"model": state}, path)
    overrides = {"MODEL.VISTR.ENC_LAYERS": 1, "MODEL.VISTR.DEC_LAYERS": 1, "MODEL.DEVICE": "cpu"}
    model = build_model(make_cfg(R50, overrides))
    with caplog.at_level(logging.INFO):
        IFRCheckpointer(model, require_complete=True).load(str(path), checkpointables=[])
    total = len(model.state_dict())
    assert f"loaded {total} of {total} model tensors" in caplog.text
    head = dict(model.named_parameters())["transformer_decoder.class_embed.bias"].detach()
    torch.testing.assert_close(head, state["vistr.class_embed.bias"][1:])
