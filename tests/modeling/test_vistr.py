"""VisTR: the 3-D position encoding and the instance-sequence matching cost by hand, the
decoder's shapes and clip filling, the one-hot mask interface, box targets from masks,
the criterion's box loss by hand, a few iterations lowering the loss, and the configs."""

import math
import os

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances
from scipy.optimize import linear_sum_assignment

from ifr.inference.postprocess import compute_mask_logits
from ifr.layers.matching_cost import sequence_box_costs, sequence_matching_cost
from ifr.modeling.criterion.vistr import VisTRCriterion
from ifr.modeling.matcher.vistr import VisTRSequenceMatcher
from ifr.modeling.meta_arch.vistr import normalized_mask_boxes
from ifr.modeling.transformer_decoder.vistr import (
    VisTRPositionEmbedding3D,
    VisTRTransformerDecoder,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "vistr_tiny.yaml")


# ----------------------------------------------------------------- 3-D position encoding
def test_3d_position_encoding_by_hand():
    layer = VisTRPositionEmbedding3D(num_pos_feats=4, temperature=100, normalize=True)
    pos = layer(torch.zeros(1, 2, 5, 2, 3))  # B=1, T=2, C=5, H=2, W=3
    assert pos.shape == (1, 2, 12, 2, 3)

    # Frame 1, row 0, column 2: z = 2/2 * 2pi, y = 1/2 * 2pi, x = 3/3 * 2pi.
    # dim_t for k = 0..3: 100 ** (2 * (k // 2) / 4) = [1, 1, 10, 10].
    def part(p):
        return [math.sin(p), math.cos(p), math.sin(p / 10), math.cos(p / 10)]

    z, y, x = 2 * math.pi, math.pi, 2 * math.pi
    expected = torch.tensor(part(z) + part(y) + part(x))  # concatenated in (z, y, x) order
    torch.testing.assert_close(pos[0, 1, :, 0, 2], expected, atol=1e-5, rtol=0)
    # Frame 0, row 1, column 0: z = pi, y = 2pi, x = 2pi / 3.
    expected = torch.tensor(part(math.pi) + part(2 * math.pi) + part(2 * math.pi / 3))
    torch.testing.assert_close(pos[0, 0, :, 1, 0], expected, atol=1e-5, rtol=0)


def test_3d_position_encoding_unnormalized_counts_frames():
    layer = VisTRPositionEmbedding3D(num_pos_feats=2, normalize=False)
    pos = layer(torch.zeros(1, 3, 1, 1, 1))
    # Channel 0 = sin(z) with z the 1-based frame index; channels 2, 4 = sin(1) (y = x = 1).
    torch.testing.assert_close(pos[0, :, 0, 0, 0], torch.sin(torch.tensor([1.0, 2.0, 3.0])))
    torch.testing.assert_close(pos[0, :, 4, 0, 0], torch.full((3,), math.sin(1.0)))


# ----------------------------------------------------------------- sequence matching cost
def _hand_case():
    """2 predicted sequences, 2 targets, 2 frames, 2 classes; target 1 is absent in
    frame 1 (its box there is all zeros, degenerate, and must be ignored)."""
    probs = torch.tensor([[[0.9, 0.1], [0.8, 0.2]], [[0.3, 0.7], [0.4, 0.6]]])
    big = torch.tensor([0.5, 0.5, 0.2, 0.2])
    small = torch.tensor([0.25, 0.25, 0.1, 0.1])
    moved = torch.tensor([0.7, 0.7, 0.2, 0.2])
    pred_boxes = torch.stack([torch.stack([big, big]), torch.stack([small, moved])])
    tgt_boxes = torch.stack([torch.stack([big, big]), torch.stack([small, torch.zeros(4)])])
    labels = torch.tensor([0, 1])
    valid = torch.tensor([[True, True], [True, False]])
    # Mask logits at 2 points per frame (T * P = 4 columns) and targets.
    pred_points = torch.tensor([[20.0, -20, 20, -20], [-20, 20, -20, 20]])
    tgt_points = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    return probs, pred_boxes, labels, tgt_boxes, valid, pred_points, tgt_points


def test_sequence_box_costs_by_hand():
    _, pred_boxes, _, tgt_boxes, valid, _, _ = _hand_case()
    l1, giou = sequence_box_costs(pred_boxes, tgt_boxes, valid)
    # L1 (mean over 4 coordinates, then over present frames):
    # [0,1]: frame 0 only, (0.25 + 0.25 + 0.1 + 0.1) / 4; [1,0]: frames 0 and 1,
    # ((0.25 + 0.25 + 0.1 + 0.1) / 4 + (0.2 + 0.2 + 0 + 0) / 4) / 2.
    torch.testing.assert_close(l1, torch.tensor([[0.0, 0.175], [0.1375, 0.0]]))
    # -GIoU: disjoint 0.2- and 0.1-boxes: enclosing 0.16, union 0.05 -> GIoU -0.6875;
    # touching 0.2-boxes: enclosing 0.16, union 0.08 -> GIoU -0.5; [1,0] = mean of both.
    expected = torch.tensor([[-1.0, 0.6875], [(0.6875 + 0.5) / 2, -1.0]])
    torch.testing.assert_close(giou, expected)


def test_sequence_matching_cost_by_hand():
    probs, pred_boxes, labels, tgt_boxes, valid, pred_points, tgt_points = _hand_case()
    cost = sequence_matching_cost(
        probs,
        pred_boxes,
        labels,
        tgt_boxes,
        valid,
        cost_class=1.0,
        cost_bbox=5.0,
        cost_giou=2.0,
        cost_mask=1.0,
        cost_dice=1.0,
        pred_mask_points=pred_points,
        tgt_mask_points=tgt_points,
    )
    # -p(c) over present frames: [0,0] -(0.9 + 0.8) / 2, [0,1] -0.1 (frame 0 only), ...
    class_cost = torch.tensor([[-0.85, -0.1], [-0.35, -0.7]])
    l1 = torch.tensor([[0.0, 0.175], [0.1375, 0.0]])
    giou = torch.tensor([[-1.0, 0.6875], [0.59375, -1.0]])
    # BCE at logits +-20: 20 per wrong point, ~0 per right one, mean over 4 points.
    bce = torch.tensor([[0.0, 15.0], [20.0, 5.0]])
    # 1 - (2 p.t + 1) / (|p| + |t| + 1) with p in {0, 1}.
    dice = torch.tensor([[0.0, 0.75], [0.8, 0.25]])
    expected = class_cost + 5 * l1 + 2 * giou + bce + dice
    torch.testing.assert_close(cost, expected, atol=1e-4, rtol=0)
    rows, cols = linear_sum_assignment(cost.numpy())
    assert cols.tolist() == [0, 1]


def test_official_sequence_cost_averages_over_all_frames_with_iou_by_hand():
    """The official form: every term over all T frames (an absent frame: box target 0,
    class term 0) and IoU (with 1e-6 above and below) instead of GIoU."""
    probs, pred_boxes, labels, tgt_boxes, valid, _, _ = _hand_case()
    l1, iou = sequence_box_costs(pred_boxes, tgt_boxes, valid, frames="all", overlap="iou")
    # [0,1]: frame 0 big vs small 0.175, frame 1 big vs the zero box (0.5+0.5+0.2+0.2)/4;
    # [1,1]: frame 0 equal, frame 1 moved vs the zero box (0.7+0.7+0.2+0.2)/4.
    torch.testing.assert_close(l1, torch.tensor([[0.0, 0.2625], [0.1375, 0.225]]))
    # IoU 1 for equal boxes, about 0 for disjoint/touching boxes and the zero box.
    torch.testing.assert_close(iou, torch.tensor([[-1.0, 0.0], [0.0, -0.5]]), atol=1e-4, rtol=0)
    cost = sequence_matching_cost(
        probs, pred_boxes, labels, tgt_boxes, valid, frames="all", overlap="iou"
    )
    # -p(c) over both frames, 0 in target 1's absent frame 1: [0,1] -0.1 / 2, [1,1] -0.7 / 2.
    class_cost = torch.tensor([[-0.85, -0.05], [-0.35, -0.35]])
    torch.testing.assert_close(cost, class_cost + 5 * l1 + 2 * iou, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="frames"):
        sequence_box_costs(pred_boxes, tgt_boxes, valid, frames="some")


def test_matcher_assigns_whole_sequences():
    """Slot 1 predicts target 0's class and boxes in every frame, slot 0 target 1's."""
    probs, pred_boxes, labels, tgt_boxes, valid, _, _ = _hand_case()
    logits = torch.cat([probs.log(), torch.full((2, 2, 1), -10.0)], -1)  # K + 1 columns
    outputs = {"pred_logits": logits.flip(0)[None], "pred_boxes": pred_boxes.flip(0)[None]}
    targets = [
        {"labels": labels, "boxes": tgt_boxes, "valid": valid, "masks": torch.zeros(2, 2, 4, 4)}
    ]
    for frames, overlap in (("present", "giou"), ("all", "iou")):
        matcher = VisTRSequenceMatcher(
            cost_class=1.0, cost_bbox=5.0, cost_giou=2.0, frames=frames, overlap=overlap
        )
        ((pred_idx, tgt_idx),) = matcher(outputs, targets)
        assert dict(zip(pred_idx.tolist(), tgt_idx.tolist())) == {0: 1, 1: 0}


# ----------------------------------------------------------------- decoder
def _decoder(num_frames=4, num_instances=2, dec_layers=2):
    torch.manual_seed(0)
    channels = {"res2": 8, "res3": 12, "res4": 16, "res5": 20}
    decoder = VisTRTransformerDecoder(
        in_channels=channels,
        num_classes=3,
        num_frames=num_frames,
        num_instances=num_instances,
        hidden_dim=48,
        nheads=4,
        dim_feedforward=32,
        enc_layers=1,
        dec_layers=dec_layers,
        dropout=0.0,
        pre_norm=False,
    )
    return decoder.eval(), channels


def _features(channels, batch, frames, size=(8, 8)):
    h, w = size
    shapes = {
        "res5": (h // 8, w // 8),
        "res4": (h // 4, w // 4),
        "res3": (h // 2, w // 2),
        "res2": (h, w),
    }
    feats = {k: torch.randn(batch, frames, channels[k], *shapes[k]) for k in channels}
    return [feats["res5"], feats["res4"], feats["res3"]], feats["res2"]


def test_decoder_shapes_and_one_hot_masks():
    decoder, channels = _decoder()
    multi_scale, res2 = _features(channels, batch=2, frames=4)
    out = decoder(multi_scale, res2)
    assert out["pred_logits"].shape == (2, 2, 4, 4)  # (B, n, T, K + 1)
    assert out["pred_boxes"].shape == (2, 2, 4, 4)
    assert out["pred_masks"].shape == (2, 2, 4, 8, 8)  # stride 4 = res2's size
    assert len(out["aux_outputs"]) == 1
    assert ((out["pred_boxes"] > 0) & (out["pred_boxes"] < 1)).all()
    # The shared inference computes embeds . features per frame: exactly pred_masks.
    logits = compute_mask_logits(out["pred_mask_embeds"][1], out["mask_features"][1])
    torch.testing.assert_close(logits, out["pred_masks"][1], rtol=0, atol=0)


def test_short_clip_is_filled_by_repeating_its_frames():
    decoder, channels = _decoder()
    multi_scale, res2 = _features(channels, batch=1, frames=3)
    short = decoder(multi_scale, res2)
    order = [0, 1, 2, 0]
    full = decoder([f[:, order] for f in multi_scale], res2[:, order])
    assert short["pred_masks"].shape[2] == 3
    for key in ("pred_logits", "pred_boxes", "pred_masks"):
        torch.testing.assert_close(short[key], full[key][:, :, :3])


def test_queries_are_frame_major():
    """Query t * n + i is slot i of frame t in the per-instance outputs."""
    decoder, channels = _decoder(dec_layers=1)
    hs = torch.randn(1, 8, 1, 48)  # (L, Q = T * n, B, d)
    by_instance = decoder._by_instance(hs)  # (L, B, n, T, d)
    for t in range(4):
        for i in range(2):
            torch.testing.assert_close(by_instance[0, 0, i, t], hs[0, t * 2 + i, 0])


def test_clip_longer_than_num_frames_is_refused():
    decoder, channels = _decoder()
    multi_scale, res2 = _features(channels, batch=1, frames=5)
    with pytest.raises(ValueError, match="MODEL.VIS.TEST.MODE clip"):
        decoder(multi_scale, res2)


# ----------------------------------------------------------------- targets and criterion
def test_boxes_from_masks_by_hand():
    masks = torch.zeros(1, 2, 8, 10)
    masks[0, 0, 2:5, 1:6] = 1  # rows 2-4, columns 1-5
    valid = torch.tensor([[True, False]])
    boxes = normalized_mask_boxes(masks, valid)
    # x from 1 to 6, y from 2 to 5 (a box spans whole pixels).
    torch.testing.assert_close(boxes[0, 0], torch.tensor([3.5 / 10, 3.5 / 8, 5 / 10, 3 / 8]))
    assert boxes[0, 1].abs().sum() == 0


class _FixedMatcher(torch.nn.Module):
    def forward(self, outputs, targets):
        return [(torch.tensor([1]), torch.tensor([0]))]


def test_box_loss_by_hand_counts_present_frames_and_all_entries():
    """One instance present in frame 0 of 2: the L1 sums frame 0 only, divided by the
    M * T = 2 (instance, frame) entries, as VisTR's num_boxes."""
    criterion = VisTRCriterion(
        num_classes=2, matcher=_FixedMatcher(), weight_dict={}, eos_coef=0.1, deep_supervision=False
    )
    pred_boxes = torch.full((1, 2, 2, 4), 0.5)
    pred_boxes[0, 1, 0] = torch.tensor([0.4, 0.5, 0.2, 0.2])
    outputs = {
        "pred_logits": torch.zeros(1, 2, 2, 3),
        "pred_boxes": pred_boxes,
        "pred_masks": torch.zeros(1, 2, 2, 2, 2),
    }
    target = {
        "labels": torch.tensor([1]),
        "masks": torch.zeros(1, 2, 8, 8),
        "boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.0, 0.0, 0.0, 0.0]]]),
        "valid": torch.tensor([[True, False]]),
    }
    losses = criterion(outputs, [target])
    assert losses["loss_bbox"].item() == pytest.approx(0.1 / 2)
    # Boxes (0.3..0.5) and (0.4..0.6) in x, same y: IoU 0.02 / 0.06, enclosing = union.
    assert losses["loss_giou"].item() == pytest.approx((1 - 1 / 3) / 2)
    # Uniform logits: CE = log 3 for every one of the 4 (slot, frame) entries.
    assert losses["loss_ce"].item() == pytest.approx(math.log(3), rel=1e-5)


# ----------------------------------------------------------------- model and configs
def _clip(num_frames, size=(64, 64)):
    h, w = size
    frames, per_frame = [], []
    for t in range(num_frames):
        image = torch.full((3, h, w), 40, dtype=torch.uint8)
        masks = torch.zeros(2, h, w, dtype=torch.bool)
        masks[0, 8 + 2 * t : 28 + 2 * t, 8:28] = True
        masks[1, 36:56, 30 + 2 * t : 54] = True
        image[0][masks[0]] = 220
        image[2][masks[1]] = 200
        inst = Instances((h, w))
        inst.gt_masks = BitMasks(masks)
        inst.gt_classes = torch.tensor([0, 2])
        frames.append(image)
        per_frame.append(inst)
    return {"image": frames, "instances": per_frame}


def _tiny_model(make_cfg, num_frames=4):
    cfg = make_cfg(
        TINY, {"MODEL.VISTR.NUM_FRAMES": num_frames, "INPUT.SAMPLING_FRAME_NUM": num_frames}
    )
    torch.manual_seed(0)
    return build_model(cfg), cfg


def test_a_few_iterations_lower_the_loss(make_cfg):
    model, _ = _tiny_model(make_cfg)
    model.train()
    batch = [_clip(4)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(8):
        losses = model(batch)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.8 * totals[0], totals


def test_model_inference_output(make_cfg):
    model, _ = _tiny_model(make_cfg)
    model.eval()
    video = _clip(3)
    out = model([{"image": video["image"], "height": 128, "width": 96}])[0]
    assert out["image_size"] == (128, 96)
    assert len(out["pred_scores"]) == 10  # MODEL.VIS.TEST.TOP_K
    assert all(len(masks) == 3 for masks in out["pred_masks"])
    assert all(0 <= label < 3 for label in out["pred_labels"])


def test_a_video_longer_than_num_frames_runs_by_clips(make_cfg):
    cfg = make_cfg(
        TINY,
        {
            "MODEL.VISTR.NUM_FRAMES": 4,
            "INPUT.SAMPLING_FRAME_NUM": 4,
            "MODEL.VIS.TEST.MODE": "clip",
            "MODEL.VIS.TEST.CLIP_LENGTH": 4,
            "MODEL.VIS.TEST.CLIP_OVERLAP": 2,
            "MODEL.VIS.TEST.CLIP_MIN_SCORE": 0.0,
        },
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    video = {"image": _clip(6)["image"], "height": 64, "width": 64}
    out = model([video])[0]
    assert out["pred_scores"] and all(len(masks) == 6 for masks in out["pred_masks"])
    cfg.MODEL.VIS.TEST.MODE = "video"
    whole = build_model(cfg).eval()
    with pytest.raises(ValueError, match="MODEL.VIS.TEST.CLIP_LENGTH <= 4"):
        whole([video])


def test_training_clip_length_must_be_num_frames(make_cfg):
    cfg = make_cfg(TINY, {"MODEL.VISTR.NUM_FRAMES": 6, "INPUT.SAMPLING_FRAME_NUM": 5})
    with pytest.raises(ValueError, match="INPUT.SAMPLING_FRAME_NUM 6"):
        build_model(cfg)


@pytest.mark.parametrize("name,depth", [("vistr_r50.yaml", 50), ("vistr_r101.yaml", 101)])
def test_published_configs(make_cfg, name, depth):
    cfg = make_cfg(os.path.join(ROOT, "configs", "ytvis19", name))
    assert cfg.MODEL.META_ARCHITECTURE == "VisTR"
    assert cfg.MODEL.RESNETS.DEPTH == depth
    vistr = cfg.MODEL.VISTR
    assert (vistr.NUM_FRAMES, vistr.NUM_INSTANCES, vistr.HIDDEN_DIM) == (36, 10, 384)
    assert (vistr.ENC_LAYERS, vistr.DEC_LAYERS, vistr.NHEADS) == (6, 6, 8)
    assert cfg.INPUT.SAMPLING_FRAME_NUM == 36
    assert (vistr.COST_CLASS, vistr.COST_BBOX, vistr.COST_GIOU) == (1.0, 5.0, 2.0)
    assert cfg.SOLVER.BASE_LR == 1e-4 and cfg.SOLVER.BACKBONE_MULTIPLIER == 0.1
    # the official matcher, inference and training transform
    assert (vistr.COST_FRAMES, vistr.COST_OVERLAP, vistr.SLOT_SCORE) == ("all", "iou", "vote")
    assert cfg.MODEL.VIS.TEST.TOP_K == vistr.NUM_INSTANCES and cfg.MODEL.VIS.TEST.DROP_EMPTY
    crop = cfg.INPUT.RANDOM_SIZE_CROP
    assert cfg.INPUT.PHOTOMETRIC_DISTORTION and crop.ENABLED
    assert (tuple(crop.PRE_RESIZE), crop.MIN_SIZE, crop.MAX_SIZE) == ((400, 500, 600), 384, 600)


@pytest.mark.parametrize("name", ["vistr_r50.yaml", "vistr_r101.yaml"])
def test_published_configs_decay_every_parameter_as_vistr(make_cfg, name):
    """VisTR's main.py gives every parameter AdamW weight decay 1e-4 (one value for all
    param groups): norms and the query embedding are decayed too, here as there."""
    from ifr.engine.trainer import build_param_groups

    cfg = make_cfg(os.path.join(ROOT, "configs", "ytvis19", name))
    decoder, _ = _decoder()  # holds Linear, Conv, LayerNorm, GroupNorm and an Embedding
    groups = build_param_groups(
        decoder,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        weight_decay_embed=cfg.SOLVER.WEIGHT_DECAY_EMBED,
        backbone_multiplier=cfg.SOLVER.BACKBONE_MULTIPLIER,
    )
    assert len(groups) == len(list(decoder.parameters()))
    assert {group["weight_decay"] for group in groups} == {1e-4}
    # the rest of VisTR's main.py / the paper: gradient clipping 0.1, 18 epochs of 7,731
    # iterations (one 36-frame clip per training frame, 8 clips), lr x0.1 after 12
    assert cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == 0.1
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS) == (139150, (92767,))
    assert cfg.SOLVER.IMS_PER_BATCH == 8
    assert (cfg.MODEL.BACKBONE.FREEZE_AT, cfg.MODEL.RESNETS.NORM) == (2, "FrozenBN")


def test_deformable_conv_with_zero_offsets_is_a_convolution_without_bias():
    from ifr.modeling.transformer_decoder.vistr_mask_head import DeformConv3x3

    torch.manual_seed(0)
    conv = DeformConv3x3(4, 3)
    x = torch.randn(2, 4, 6, 7)
    out = conv(x, torch.zeros(2, 18, 6, 7))
    torch.testing.assert_close(out, torch.nn.functional.conv2d(x, conv.weight, padding=1))


def test_deformable_conv_offset_layout_is_dy_dx_per_kernel_position():
    """Every kernel position shifted down by one row (dy = 1, dx = 0 at channels 2k, 2k + 1)
    is the plain convolution of the input moved up by one row (zero below the last); the
    first output row differs (the plain one reads padding where the shifted one reads row
    0), so rows 1.. are compared."""
    from ifr.modeling.transformer_decoder.vistr_mask_head import DeformConv3x3

    torch.manual_seed(0)
    conv = DeformConv3x3(2, 2)
    x = torch.randn(1, 2, 5, 6)
    offset = torch.zeros(1, 18, 5, 6)
    offset[:, 0::2] = 1.0
    shifted = torch.zeros_like(x)
    shifted[:, :, :-1] = x[:, :, 1:]
    expected = torch.nn.functional.conv2d(shifted, conv.weight, padding=1)
    torch.testing.assert_close(conv(x, offset)[:, :, 1:], expected[:, :, 1:])
    assert not torch.allclose(conv(x, offset), conv(x, torch.zeros_like(offset)))


def test_voted_slot_scores_by_hand():
    """VisTR's inference: a slot's class is its most frequent per-frame argmax, its score
    the mean over frames of the per-frame top probability; every other class scores 0."""
    from ifr.modeling.meta_arch.vistr import voted_slot_scores

    probs = torch.tensor(
        [
            [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]],  # votes 0, 1, 0 -> class 0
            [[0.1, 0.2, 0.7], [0.1, 0.8, 0.1], [0.4, 0.3, 0.3]],  # one vote each: tie -> 0
        ]
    )  # (slots, frames, classes)
    scores = voted_slot_scores(probs)
    expected = torch.tensor([[(0.6 + 0.7 + 0.5) / 3, 0, 0], [(0.7 + 0.8 + 0.4) / 3, 0, 0]])
    torch.testing.assert_close(scores, expected)


@torch.no_grad()
def test_padded_tokens_change_nothing_the_queries_see():
    """VisTR's padding masks: a clip whose res5 is padded by one row and one column of
    random tokens, with its image size given, predicts the classes and boxes of the clip
    without padding; without the image size the padding is attended to."""
    torch.manual_seed(5)
    decoder, channels = _decoder(num_frames=2)
    (res5, res4, res3), res2 = _features(channels, batch=1, frames=2, size=(16, 16))  # res5 2x2
    padded5 = torch.randn(1, 2, channels["res5"], 3, 3)
    padded5[..., :2, :2] = res5
    padded = [padded5, torch.randn(1, 2, channels["res4"], 6, 6)]
    padded += [torch.randn(1, 2, channels["res3"], 12, 12)]
    padded2 = torch.randn(1, 2, channels["res2"], 24, 24)
    plain = decoder([res5, res4, res3], res2)
    # res5 of _features is stride 8 here: a 16 x 16 image is 2 x 2 cells of 32 / 4 = 8 pixels
    decoder.coarse_stride = 8
    masked = decoder(padded, padded2, image_sizes=[(16, 16)])
    for key in ("pred_logits", "pred_boxes"):
        torch.testing.assert_close(masked[key], plain[key], atol=1e-5, rtol=0)
    unmasked = decoder(padded, padded2)
    assert not torch.allclose(unmasked["pred_logits"], plain["pred_logits"], atol=1e-3)
