"""IFC's configs hold its published recipe (official ``add_ifc_config``, ``base_ytvis.yaml``,
``R101_ytvis.yaml``; values written here as literals), the tiny config compares with
ifr_tiny.yaml, and the ImageNet initialisation IFC starts from loads into the backbone with
the load summary saying what did and did not load."""

import logging
import os
import pickle

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone import build_resnet_backbone

from ifr.checkpoint import IFRCheckpointer
from ifr.engine.defaults import build_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
R50 = os.path.join(ROOT, "configs", "ytvis19", "ifc_r50.yaml")
R101 = os.path.join(ROOT, "configs", "ytvis19", "ifc_r101.yaml")
TINY = os.path.join(ROOT, "configs", "tiny", "ifc_tiny.yaml")

# IFC's YouTube-VIS 2019 recipe: key -> value.
IFC_RECIPE = {
    "MODEL.META_ARCHITECTURE": "IFC",
    "MODEL.PIXEL_DECODER.NAME": "IFCInputProjection",
    "MODEL.TRANSFORMER_DECODER.NAME": "IFCTransformerDecoder",
    "MODEL.IFC.NUM_MEMORY_TOKENS": 8,
    "MODEL.IFC.ENC_LAYERS": 3,
    "MODEL.IFC.NO_OBJECT_WEIGHT": 0.1,
    "MODEL.IFC.MASK_STRIDE": 4,
    "MODEL.IFC.MATCH_STRIDE": 4,
    "MODEL.VIS.DEC_LAYERS": 3,
    "MODEL.VIS.NUM_QUERIES": 100,
    "MODEL.VIS.HIDDEN_DIM": 256,
    "MODEL.VIS.NHEADS": 8,
    "MODEL.VIS.DIM_FEEDFORWARD": 2048,
    "MODEL.VIS.DROPOUT": 0.1,
    "MODEL.VIS.PRE_NORM": False,
    "MODEL.VIS.CLASS_WEIGHT": 1.0,
    "MODEL.VIS.MASK_WEIGHT": 3.0,
    "MODEL.VIS.DICE_WEIGHT": 3.0,
    "MODEL.VIS.NUM_CLASSES": 40,
    "MODEL.BACKBONE.FREEZE_AT": 2,
    "INPUT.SAMPLING_FRAME_NUM": 5,
    "INPUT.SAMPLING_FRAME_RANGE": 20,
    "INPUT.MIN_SIZE_TRAIN": (360, 480),
    "INPUT.MIN_SIZE_TEST": 360,
    "INPUT.RANDOM_FLIP": "flip_by_clip",
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.BASE_LR": 0.0001,
    "SOLVER.MAX_ITER": 6000,
    "SOLVER.STEPS": (4000,),
    "SOLVER.WARMUP_ITERS": 10,
    "SOLVER.OPTIMIZER": "ADAMW",
    "SOLVER.BACKBONE_MULTIPLIER": 0.1,
    "SOLVER.WEIGHT_DECAY": 0.0001,
    # IFC's build_optimizer gives every parameter SOLVER.WEIGHT_DECAY (no norm exception)
    "SOLVER.WEIGHT_DECAY_NORM": 0.0001,
    "SOLVER.WEIGHT_DECAY_EMBED": 0.0001,
    "SOLVER.WARMUP_FACTOR": 1.0,  # base_ytvis.yaml: no warm-up
    "INPUT.MIN_SIZE_TRAIN_SAMPLING": "choice",  # IFC's "choice_by_clip": one size a clip
    "INPUT.MAX_SIZE_TRAIN": 1333,  # Detectron2's default, which base_ytvis.yaml keeps
    "INPUT.SAMPLING_FRAME_SHUFFLE": False,
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "full_model",
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 0.01,
    "DATASETS.TRAIN": ("ytvis_2019_train",),
    "DATASETS.TEST": ("ytvis_2019_val",),
    # IFC's inference: queries predicted as objects, every pair above 0.01, no cap
    "MODEL.VIS.TEST.OBJECTS_ONLY": True,
    "MODEL.VIS.TEST.SCORE_THRESHOLD": 0.01,
    "MODEL.VIS.TEST.TOP_K": 0,
}


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return tuple(cfg) if isinstance(cfg, (list, tuple)) else cfg


@pytest.mark.parametrize("path", [R50, R101], ids=os.path.basename)
def test_ytvis19_configs_hold_ifcs_recipe(path):
    cfg = build_cfg(path)
    for key, value in IFC_RECIPE.items():
        assert _get(cfg, key) == value, key


def test_backbones_and_their_imagenet_layouts():
    r50, r101 = build_cfg(R50), build_cfg(R101)
    assert (r50.MODEL.RESNETS.DEPTH, r50.MODEL.RESNETS.STRIDE_IN_1X1) == (50, False)
    assert r50.INPUT.FORMAT == "RGB" and r50.MODEL.WEIGHTS == "pretrained/R-50.pkl"
    assert (r101.MODEL.RESNETS.DEPTH, r101.MODEL.RESNETS.STRIDE_IN_1X1) == (101, True)
    assert r101.INPUT.FORMAT == "BGR" and tuple(r101.MODEL.PIXEL_STD) == (1.0, 1.0, 1.0)
    assert r101.MODEL.WEIGHTS == "pretrained/R-101.pkl"


def test_tiny_config_compares_with_ifr_tiny():
    ifc, ifr = build_cfg(TINY), build_cfg(os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml"))
    for key in (
        "DATASETS.TRAIN",
        "DATASETS.TEST",
        "SOLVER.MAX_ITER",
        "SOLVER.IMS_PER_BATCH",
        "MODEL.BACKBONE.NAME",
        "MODEL.VIS.NUM_QUERIES",
        "MODEL.VIS.HIDDEN_DIM",
        "MODEL.VIS.DEC_LAYERS",
        "INPUT.SAMPLING_FRAME_NUM",
        "MODEL.DEVICE",
    ):
        assert _get(ifc, key) == _get(ifr, key), key
    assert ifc.MODEL.META_ARCHITECTURE == "IFC"


def _imagenet_r50_pkl(path, cfg):
    """A file in the layout of Detectron2's ImageNetPretrained/torchvision/R-50.pkl: the
    backbone's tensors named without the model's prefix (``res2.0.conv1.weight``), numpy
    arrays, ``matching_heuristics``. Values: the model's shapes, filled with 0.25."""
    backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    arrays = {k: torch.full_like(v, 0.25).numpy() for k, v in backbone.state_dict().items()}
    with open(path, "wb") as f:
        pickle.dump({"model": arrays, "__author__": "torchvision", "matching_heuristics": True}, f)
    return len(arrays)


def test_imagenet_backbone_loads_and_the_log_says_what_loaded(tmp_path, caplog):
    cfg = build_cfg(R50, ["MODEL.DEVICE", "cpu"])
    num_backbone = _imagenet_r50_pkl(tmp_path / "R-50.pkl", cfg)
    model = build_model(cfg)
    decoder_before = model.transformer_decoder.query_embed.weight.clone()
    with caplog.at_level(logging.INFO):
        IFRCheckpointer(model).load(str(tmp_path / "R-50.pkl"))
    assert torch.all(model.backbone.res5[2].conv3.weight == 0.25)
    assert torch.equal(model.transformer_decoder.query_embed.weight, decoder_before)
    total = len(model.state_dict())
    line = next(r.getMessage() for r in caplog.records if "model tensors" in r.getMessage())
    assert f"loaded {num_backbone} of {total} model tensors; not loaded" in line
    not_loaded = line.split("not loaded")[1]
    assert "transformer_decoder.encoder" in not_loaded and "pixel_decoder.input_proj" in not_loaded
    assert "backbone." not in not_loaded


def _official_ifc_names(model_keys, enc_layers: int, dec_layers: int, pre_norm: bool):
    """The tensor names of the official IFC model (its ``Ifc.detr``: ``IFC``, DETR's
    ``TransformerEncoderLayer``/``TransformerDecoderLayer``, ``MaskHead``), written from its
    module attributes; the backbone's names are Detectron2's under ``detr.backbone.0.backbone``."""
    attention = ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    affine = ["weight", "bias"]
    names = [
        "detr.backbone.0.backbone." + k[len("backbone.") :]
        for k in model_keys
        if k.startswith("backbone.")
    ]
    names += [
        "detr.query_embed.weight",
        "detr.transformer.memory_bus",
        "detr.transformer.memory_pos",
    ]
    names += [
        f"detr.{m}.{a}"
        for m in ("input_proj", "mask_head.adapter1", "mask_head.adapter2")
        for a in affine
    ]
    names += [f"detr.class_embed.layers.{i}.{a}" for i in range(2) for a in affine]
    names += [f"detr.mask_head.convert_to_weight.layers.{i}.{a}" for i in range(3) for a in affine]
    names += [
        f"detr.mask_head.{m}{i}.{a}" for m in ("lay", "gn") for i in (1, 2, 3) for a in affine
    ]
    names += [f"detr.mask_head.out_lay.{m}.{a}" for m in ("depthwise", "pointwise") for a in affine]
    for stack in ("enc_layers", "bus_layers"):
        for i in range(enc_layers):
            prefix = f"detr.transformer.encoder.{stack}.{i}."
            names += [prefix + "self_attn." + a for a in attention]
            names += [
                prefix + f"{m}.{a}"
                for m in ("linear1", "linear2", "norm1", "norm2")
                for a in affine
            ]
    if pre_norm:
        names += [
            f"detr.transformer.encoder.{n}.{a}" for n in ("out_norm", "bus_norm") for a in affine
        ]
    for i in range(dec_layers):
        prefix = f"detr.transformer.clip_decoder.layers.{i}."
        names += [prefix + f"{m}.{a}" for m in ("self_attn", "multihead_attn") for a in attention]
        names += [
            prefix + f"{m}.{a}"
            for m in ("linear1", "linear2", "norm1", "norm2", "norm3")
            for a in affine
        ]
    names += [f"detr.transformer.clip_decoder.norm.{a}" for a in affine]
    return names


@pytest.mark.parametrize("pre_norm", [False, True])
def test_official_ifc_names_map_one_to_one_onto_the_model(pre_norm):
    from ifr.checkpoint.ifc import rename_official_ifc_keys

    cfg = build_cfg(TINY, ["MODEL.VIS.PRE_NORM", str(pre_norm)])
    model_keys = list(build_model(cfg).state_dict())
    official = _official_ifc_names(
        model_keys, cfg.MODEL.IFC.ENC_LAYERS, cfg.MODEL.VIS.DEC_LAYERS, pre_norm
    )
    renamed = rename_official_ifc_keys({k: None for k in official})
    assert len(renamed) == len(official)
    assert sorted(renamed) == sorted(model_keys)


def test_an_official_ifc_checkpoint_loads_every_tensor(tmp_path, caplog):
    from ifr.checkpoint.ifc import rename_official_ifc_keys

    cfg = build_cfg(TINY)
    model = build_model(cfg)
    model_state = model.state_dict()
    keys = list(model_state)
    official = _official_ifc_names(keys, cfg.MODEL.IFC.ENC_LAYERS, cfg.MODEL.VIS.DEC_LAYERS, False)
    ours_of = {o: next(iter(rename_official_ifc_keys({o: None}))) for o in official}
    weights = {o: torch.full_like(model_state[ours_of[o]], 0.5) for o in official}
    weights["criterion.empty_weight"] = torch.ones(4)  # the official SetCriterion's buffer
    torch.save({"model": weights, "iteration": 5999}, tmp_path / "model_final.pth")
    with caplog.at_level(logging.INFO):
        IFRCheckpointer(model, require_complete=True).load(str(tmp_path / "model_final.pth"))
    assert f"loaded {len(keys)} of {len(model_state)} model tensors" in caplog.text
    assert torch.all(model.transformer_decoder.encoder.memory_tokens == 0.5)
    assert torch.all(model.transformer_decoder.encoder.communicate_ffn[1].norm.weight == 0.5)
