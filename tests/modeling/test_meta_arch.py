import os

import pytest
import torch
from detectron2.modeling import build_model
from model_test_utils import frame_instances, random_video
from pycocotools import mask as mask_util

from ifr.checkpoint import IFRCheckpointer
from ifr.engine.defaults import build_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml")
FAST = ["MODEL.VIS.NUM_QUERIES", "5", "MODEL.VIS.TRAIN_NUM_POINTS", "64"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(build_cfg(TINY, FAST))


def _instances(size, classes, ids, boxes):
    """Per-frame Instances with rectangle masks; id -1 = absent (empty mask)."""
    height, width = size
    masks = torch.zeros((len(ids), height, width), dtype=torch.bool)
    for i, (track, (y0, x0, y1, x1)) in enumerate(zip(ids, boxes)):
        if track >= 0:
            masks[i, y0:y1, x0:x1] = True
    return frame_instances(size, classes, ids, masks)


def _clip(size=(40, 56)):
    frames = [torch.randint(0, 255, (3, *size), dtype=torch.uint8) for _ in range(2)]
    instances = [
        _instances(size, [0, 2], [7, 9], [(0, 0, 10, 10), (20, 20, 30, 40)]),
        _instances(size, [0, 2], [7, -1], [(5, 5, 15, 15), (0, 0, 0, 0)]),
    ]
    return {"image": frames, "instances": instances, "height": size[0], "width": size[1]}


def test_prepare_targets_pads_masks_and_marks_absent_frames(model):
    clip = _clip()
    targets = model.prepare_targets([clip], (64, 64))
    (target,) = targets
    assert set(target) == {"labels", "masks"}
    assert target["labels"].tolist() == [0, 2]
    assert target["masks"].shape == (2, 2, 64, 64)
    assert target["masks"][0, 1, 5:15, 5:15].all() and target["masks"][0, 1].sum() == 100
    assert target["masks"][1, 1].sum() == 0  # absent: all zero
    assert target["masks"][:, :, 40:, :].sum() == 0 and target["masks"][:, :, :, 56:].sum() == 0


def test_training_forward_gives_weighted_finite_losses_and_gradients(model):
    model.train()
    losses = model([_clip(), _clip()])
    weights = model.criterion.weight_dict
    assert set(losses) <= set(weights)
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_mask_cross", "loss_dice_cross"} <= set(
        losses
    )
    assert len([k for k in losses if k.startswith("loss_ce")]) == 1 + 3  # main + DEC_LAYERS aux
    assert all(torch.isfinite(v) for v in losses.values())
    model.zero_grad()
    sum(losses.values()).backward()
    decoder_grads = [p.grad for p in model.transformer_decoder.parameters() if p.requires_grad]
    assert all(g is not None for g in decoder_grads)
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0


def test_lambda_e_zero_drops_the_cross_frame_losses():
    model = build_model(build_cfg(TINY, FAST + ["MODEL.IFR.LAMBDA_E", "0.0"]))
    model.train()
    losses = model([_clip()])
    assert not [k for k in losses if "cross" in k]


@torch.no_grad()
def test_inference_output_format_at_original_size(model):
    model.eval()
    video = random_video(num_frames=3, size=(48, 64), original_size=(96, 128))
    (output,) = model([video])
    assert output["image_size"] == (96, 128)
    k = model.inference_options.top_k
    assert (
        len(output["pred_scores"]) == len(output["pred_labels"]) == len(output["pred_masks"]) == k
    )
    assert all(0 <= s <= 1 for s in output["pred_scores"])
    assert all(0 <= c < 3 for c in output["pred_labels"])
    for track in output["pred_masks"]:
        assert len(track) == 3
        assert all(tuple(rle["size"]) == (96, 128) for rle in track)
        assert mask_util.decode(track[0]).shape == (96, 128)


# Parameter names of a COCO Mask2Former checkpoint (Detectron2 format) that have a
# counterpart in IFR; written from Mask2Former's published module structure.
MASK2FORMER_KEYS = [
    "sem_seg_head.pixel_decoder.input_proj.0.0.weight",
    "sem_seg_head.pixel_decoder.input_proj.2.1.bias",
    "sem_seg_head.pixel_decoder.transformer.level_embed",
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.sampling_offsets.weight",
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.attention_weights.bias",
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.value_proj.weight",
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.output_proj.weight",
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.norm1.weight",
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.linear1.weight",
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.linear2.bias",
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.norm2.bias",
    "sem_seg_head.pixel_decoder.mask_features.weight",
    "sem_seg_head.pixel_decoder.adapter_1.weight",
    "sem_seg_head.pixel_decoder.adapter_1.norm.weight",
    "sem_seg_head.pixel_decoder.layer_1.weight",
    "sem_seg_head.pixel_decoder.layer_1.norm.bias",
    "sem_seg_head.predictor.query_feat.weight",
    "sem_seg_head.predictor.query_embed.weight",
    "sem_seg_head.predictor.level_embed.weight",
    "sem_seg_head.predictor.transformer_cross_attention_layers.0.multihead_attn.in_proj_weight",
    "sem_seg_head.predictor.transformer_cross_attention_layers.2.multihead_attn.out_proj.weight",
    "sem_seg_head.predictor.transformer_cross_attention_layers.0.norm.weight",
    "sem_seg_head.predictor.transformer_self_attention_layers.1.self_attn.in_proj_bias",
    "sem_seg_head.predictor.transformer_ffn_layers.0.linear1.weight",
    "sem_seg_head.predictor.transformer_ffn_layers.2.linear2.bias",
    "sem_seg_head.predictor.transformer_ffn_layers.1.norm.weight",
    "sem_seg_head.predictor.decoder_norm.weight",
    "sem_seg_head.predictor.mask_embed.layers.0.weight",
    "sem_seg_head.predictor.mask_embed.layers.2.bias",
    "backbone.patch_embed.proj.weight",
    "backbone.layers.0.blocks.0.attn.relative_position_bias_table",
    "backbone.layers.2.blocks.1.mlp.fc2.weight",
    "backbone.layers.0.downsample.reduction.weight",
    "backbone.norm3.weight",
]


def test_mask2former_checkpoint_names_load_into_ifr(model, tmp_path):
    ours = model.state_dict()
    fake = {}
    for key in MASK2FORMER_KEYS:
        mapped = key.replace("sem_seg_head.pixel_decoder.", "pixel_decoder.").replace(
            "sem_seg_head.predictor.", "transformer_decoder."
        )
        assert mapped in ours, f"{key} has no counterpart ({mapped})"
        fake[key] = torch.full_like(ours[mapped], 0.25)
    fake["sem_seg_head.predictor.class_embed.weight"] = torch.zeros(
        81, ours["transformer_decoder.class_embed.weight"].shape[1]
    )  # COCO: 80 + no-object
    path = tmp_path / "m2f.pth"
    torch.save({"model": fake}, path)
    target = build_model(build_cfg(TINY, FAST))
    IFRCheckpointer(target).load(str(path))
    loaded = target.state_dict()
    for key in MASK2FORMER_KEYS:
        mapped = key.replace("sem_seg_head.pixel_decoder.", "pixel_decoder.").replace(
            "sem_seg_head.predictor.", "transformer_decoder."
        )
        assert torch.all(loaded[mapped] == 0.25), mapped
    assert not torch.all(loaded["transformer_decoder.class_embed.weight"] == 0)  # shape differs
