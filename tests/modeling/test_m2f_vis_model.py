"""Mask2Former-VIS (``VideoMaskFormer``): the no-object loss by hand, the softmax matching
cost, the meta-architecture on the tiny config (train and inference), and every
Mask2Former-VIS config."""

import glob
import math
import os

import pytest
import torch
from detectron2.modeling import build_model
from model_test_utils import frame_instances, random_video

from ifr.engine.defaults import build_cfg
from ifr.layers.classification import class_probabilities
from ifr.modeling.criterion import (
    IFRCriterion,
    VideoMaskFormerCriterion,
    aux_weight_dict,
    build_weight_dict,
)
from ifr.modeling.matcher import VideoHungarianMatcher
from ifr.modeling.transformer_decoder import (
    IFRTransformerDecoder,
    VideoMultiScaleMaskedTransformerDecoder,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "m2f_vis_tiny.yaml")
FAST = ["MODEL.VIS.NUM_QUERIES", "5", "MODEL.VIS.TRAIN_NUM_POINTS", "64"]
M2F_CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*", "m2f_vis_*.yaml")))


def _m2f_criterion(matcher, num_classes=2, eos_coef=0.1, num_points=8):
    return VideoMaskFormerCriterion(
        num_classes=num_classes,
        matcher=matcher,
        weight_dict=aux_weight_dict({"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}, 0),
        eos_coef=eos_coef,
        num_points=num_points,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
    )


def test_no_object_cross_entropy_by_hand(fixed_matcher):
    """3 queries, K = 2. Query 1 is matched to a class-0 instance; queries 0 and 2 get the
    no-object class 2 (weight 0.1):
      q0 logits (0, 0, 0)       -> CE = ln 3                   (weight 0.1)
      q1 logits (ln 2, 0, 0)    -> p(0) = 2/4, CE = ln 2       (weight 1)
      q2 logits (0, 0, ln 3)    -> p(2) = 3/5, CE = ln(5/3)    (weight 0.1)
    loss = (0.1 ln 3 + ln 2 + 0.1 ln(5/3)) / (0.1 + 1 + 0.1)."""
    logits = torch.tensor([[[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0], [0.0, 0.0, math.log(3)]]])
    criterion = _m2f_criterion(fixed_matcher([([1], [0])]))
    targets = [{"labels": torch.tensor([0]), "masks": torch.zeros(1, 2, 8, 8)}]
    loss = criterion.loss_classes(logits, targets, criterion.matcher(None, targets), 1.0)
    expected = (0.1 * math.log(3) + math.log(2) + 0.1 * math.log(5 / 3)) / 1.2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_no_object_weight_one_is_the_plain_mean_and_nothing_matched_is_all_no_object(fixed_matcher):
    logits = torch.randn(2, 4, 3)
    criterion = _m2f_criterion(fixed_matcher([([], []), ([], [])]), eos_coef=1.0)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 2, 8, 8)}
    loss = criterion.loss_classes(logits, [empty, empty], criterion.matcher(None, None), 1.0)
    expected = -torch.log_softmax(logits, -1)[..., 2].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_empty_weight_is_a_buffer_not_saved(fixed_matcher):
    criterion = _m2f_criterion(fixed_matcher([]), num_classes=4, eos_coef=0.2)
    assert torch.equal(criterion.empty_weight, torch.tensor([1.0, 1, 1, 1, 0.2]))
    assert "class_loss.empty_weight" in dict(criterion.named_buffers())
    assert not any("empty_weight" in key for key in criterion.state_dict())
    with pytest.raises(ValueError, match="NO_OBJECT_WEIGHT"):
        _m2f_criterion(fixed_matcher([]), eos_coef=1.5)


def test_mask_losses_are_the_shared_ones(fixed_matcher):
    """Same matches and points: Mask2Former-VIS's loss_mask / loss_dice equal IFR's."""
    torch.manual_seed(0)
    masks = torch.randn(1, 3, 2, 8, 8)
    targets = [{"labels": torch.tensor([1]), "masks": (torch.rand(1, 2, 32, 32) > 0.5).float()}]
    matcher = fixed_matcher([([2], [0])])
    m2f = _m2f_criterion(matcher)
    ifr = IFRCriterion(
        num_classes=2,
        matcher=matcher,
        weight_dict=build_weight_dict(2.0, 5.0, 5.0, 0.0, 0),
        lambda_e=0.0,
        num_points=8,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
    )
    m2f_logits, ifr_logits = torch.randn(1, 3, 3), torch.randn(1, 3, 2)
    torch.manual_seed(1)  # the same random points in both
    m2f_losses = m2f({"pred_logits": m2f_logits, "pred_masks": masks}, targets)
    torch.manual_seed(1)
    ifr_losses = ifr({"pred_logits": ifr_logits, "pred_masks": masks}, targets)
    assert set(m2f_losses) == {"loss_ce", "loss_mask", "loss_dice"}
    for key in ("loss_mask", "loss_dice"):
        torch.testing.assert_close(m2f_losses[key], ifr_losses[key])


def test_criterion_refuses_logits_without_the_no_object_column(fixed_matcher):
    criterion = _m2f_criterion(fixed_matcher([([0], [0])]))
    targets = [{"labels": torch.tensor([0]), "masks": torch.zeros(1, 2, 8, 8)}]
    outputs = {"pred_logits": torch.randn(1, 3, 2), "pred_masks": torch.randn(1, 3, 2, 2, 2)}
    with pytest.raises(ValueError, match="2 columns, expected 3 for 2 classes"):
        criterion(outputs, targets)


def test_softmax_matching_cost_uses_the_target_class_probability():
    """Identical masks: the assignment follows -softmax(logits)[target class]. Query 0 is
    sure of class 1 under softmax; under sigmoid the large no-object logit of query 1
    would not matter, so the two activations pick different queries."""
    logits = torch.tensor([[[0.0, 3.0, -5.0], [0.0, 3.5, 6.0]]])  # (1, N=2, K+1=3)
    masks = torch.zeros(1, 2, 1, 4, 4)
    targets = [{"labels": torch.tensor([1]), "masks": torch.zeros(1, 1, 4, 4)}]
    outputs = {"pred_logits": logits, "pred_masks": masks}
    softmax = VideoHungarianMatcher(
        cost_class=1.0, cost_mask=1.0, cost_dice=1.0, num_points=4, class_activation="softmax"
    )
    sigmoid = VideoHungarianMatcher(cost_class=1.0, cost_mask=1.0, cost_dice=1.0, num_points=4)
    assert softmax(outputs, targets)[0][0].tolist() == [0]
    assert sigmoid(outputs, targets)[0][0].tolist() == [1]
    with pytest.raises(ValueError, match="class_activation"):
        VideoHungarianMatcher(
            cost_class=1.0, cost_mask=1.0, cost_dice=1.0, num_points=4, class_activation="relu"
        )


def test_class_probabilities_drop_the_no_object_column():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    probs = class_probabilities(logits, "softmax")
    torch.testing.assert_close(probs, torch.softmax(logits, -1)[:, :2])
    torch.testing.assert_close(class_probabilities(logits, "sigmoid"), logits.sigmoid())
    with pytest.raises(ValueError):
        class_probabilities(logits, "tanh")


# ------------------------------------------------------------------ the model
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(build_cfg(TINY, FAST))


def _clip(size=(40, 56)):
    frames = [torch.randint(0, 255, (3, *size), dtype=torch.uint8) for _ in range(2)]
    per_frame = []
    for ids in ([7, 9], [7, -1]):
        masks = torch.zeros((2, *size), dtype=torch.bool)
        for i, track in enumerate(ids):
            if track >= 0:
                masks[i, 5 * (i + 1) : 20, 10:30] = True
        per_frame.append(frame_instances(size, [0, 2], ids, masks))
    return {"image": frames, "instances": per_frame, "height": size[0], "width": size[1]}


def test_tiny_model_is_video_mask_former_with_ifr_tiny_sizes(model):
    ifr_model = build_model(build_cfg(os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml"), FAST))
    assert type(model).__name__ == "VideoMaskFormer"
    assert isinstance(model.transformer_decoder, VideoMultiScaleMaskedTransformerDecoder)
    assert isinstance(model.criterion, VideoMaskFormerCriterion)
    assert model.transformer_decoder.num_layers == ifr_model.transformer_decoder.num_layers
    shared = {"backbone", "pixel_decoder"}
    for name in shared:
        ours = {k: v.shape for k, v in getattr(model, name).state_dict().items()}
        theirs = {k: v.shape for k, v in getattr(ifr_model, name).state_dict().items()}
        assert ours == theirs


def test_training_forward_gives_weighted_finite_losses_and_gradients(model):
    model.train()
    losses = model([_clip(), _clip()])
    assert set(losses) == set(model.criterion.weight_dict)
    assert len([k for k in losses if k.startswith("loss_ce")]) == 1 + 3  # main + 3 aux
    assert all(torch.isfinite(v) for v in losses.values())
    model.zero_grad()
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.transformer_decoder.parameters())


@torch.no_grad()
def test_inference_uses_softmax_scores_without_no_object(model):
    model.eval()
    video = random_video(num_frames=3, size=(48, 64), original_size=(96, 128))
    (output,) = model([video])
    assert output["image_size"] == (96, 128)
    assert len(output["pred_scores"]) == model.inference_options.top_k
    assert all(0 <= c < 3 for c in output["pred_labels"])
    # The best score is the best softmax probability of a real class over all queries.
    images = model.preprocess_frames(video["image"])
    multi_scale, mask_features = model.encode_frames(images)
    logits = model.transformer_decoder(multi_scale, mask_features, return_masks=False)
    best = torch.softmax(logits["pred_logits"][0], -1)[:, :-1].max().item()
    assert max(output["pred_scores"]) == pytest.approx(best, rel=1e-5)


def test_a_sigmoid_decoder_is_refused():
    cfg_args = FAST + ["MODEL.TRANSFORMER_DECODER.NAME", "IFRTransformerDecoder"]
    with pytest.raises(ValueError, match="MODEL.TRANSFORMER_DECODER.NAME"):
        build_model(build_cfg(TINY, cfg_args))
    ifr_cfg = os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml")
    wrong = FAST + ["MODEL.TRANSFORMER_DECODER.NAME", "VideoMultiScaleMaskedTransformerDecoder"]
    with pytest.raises(ValueError, match="IFR needs a transformer decoder with sigmoid"):
        build_model(build_cfg(ifr_cfg, wrong))
    assert IFRTransformerDecoder.class_activation == "sigmoid"


# ------------------------------------------------------------------ configs
def test_every_backbone_and_dataset_has_a_config():
    names = {os.path.relpath(p, os.path.join(ROOT, "configs")) for p in M2F_CONFIGS}
    expected = {
        f"ytvis{year}/m2f_vis_{b}.yaml"
        for year in ("19", "21")
        for b in ("r50", "r101", "swin_t", "swin_s", "swin_b", "swin_l")
    } | {"tiny/m2f_vis_tiny.yaml"}
    assert names == expected


@pytest.mark.parametrize("path", M2F_CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_is_mask2former_vis_recipe(path):
    cfg = build_cfg(path)
    assert cfg.MODEL.META_ARCHITECTURE == "VideoMaskFormer"
    assert cfg.MODEL.TRANSFORMER_DECODER.NAME == "VideoMultiScaleMaskedTransformerDecoder"
    assert cfg.MODEL.M2F_VIS.NO_OBJECT_WEIGHT == 0.1
    if "tiny" in path:
        return
    vis = cfg.MODEL.VIS
    assert (vis.CLASS_WEIGHT, vis.MASK_WEIGHT, vis.DICE_WEIGHT) == (2.0, 5.0, 5.0)
    assert vis.DEC_LAYERS == 9  # Mask2Former-VIS's DEC_LAYERS: 10
    assert vis.NUM_CLASSES == 40 and vis.TRAIN_NUM_POINTS == 112 * 112
    assert vis.NUM_QUERIES == (200 if path.endswith("swin_l.yaml") else 100)
    assert cfg.INPUT.SAMPLING_FRAME_NUM == 2 and tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (360, 480)
    year = "2019" if "ytvis19" in path else "2021"
    assert cfg.DATASETS.TRAIN == (f"ytvis_{year}_train",)
    assert cfg.SOLVER.MAX_ITER == (6000 if year == "2019" else 8000)


@pytest.mark.parametrize("path", M2F_CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_builds_its_decoder_and_criterion(path):
    """Each config builds on CPU; the big backbones' sizes are kept, the heads shrunk."""
    small = [
        "MODEL.DEVICE",
        "cpu",
        "MODEL.VIS.HIDDEN_DIM",
        "32",
        "MODEL.VIS.NHEADS",
        "4",
        "MODEL.VIS.DIM_FEEDFORWARD",
        "32",
        "MODEL.VIS.DEC_LAYERS",
        "2",
        "MODEL.PIXEL_DECODER.CONVS_DIM",
        "32",
        "MODEL.PIXEL_DECODER.MASK_DIM",
        "32",
        "MODEL.PIXEL_DECODER.ENC_LAYERS",
        "1",
    ]
    if "swin_l" in path or "swin_b" in path or "swin_s" in path:
        small += ["MODEL.SWIN.EMBED_DIM", "32", "MODEL.SWIN.DEPTHS", "[1, 1, 1, 1]"]
    cfg = build_cfg(path, small)
    model = build_model(cfg)
    assert type(model).__name__ == "VideoMaskFormer"
    assert isinstance(model.transformer_decoder, VideoMultiScaleMaskedTransformerDecoder)
    assert isinstance(model.criterion, VideoMaskFormerCriterion)
    assert model.criterion.matcher.class_activation == "softmax"
    assert model.transformer_decoder.class_embed.out_features == cfg.MODEL.VIS.NUM_CLASSES + 1
    assert model.transformer_decoder.num_queries == cfg.MODEL.VIS.NUM_QUERIES
