"""MODEL.VIS.CLASS_LOSS: IFR and Mask2Former-VIS trained with each other's class loss.

Truth: the focal loss and the no-object cross-entropy computed by hand from their
definitions; head widths and priors from the definitions (K or K + 1 columns, sigmoid of
the prior bias = 0.01); the system's own loss named explicitly must equal the default
bit for bit; systems with their own class loss refuse the key.
"""

import math

import pytest
import torch
from detectron2.modeling import build_model

from ifr.benchmark.measure import synthetic_clip
from ifr.layers.classification import configured_class_activation
from ifr.modeling.criterion.class_losses import FocalClassLoss, NoObjectClassLoss
from ifr.modeling.transformer_decoder.common import class_head

TINY_OVERRIDES = {"MODEL.VIS.TRAIN_NUM_POINTS": 256, "MODEL.DEVICE": "cpu"}


def _config(make_cfg, name, class_loss):
    return make_cfg(
        f"configs/tiny/{name}.yaml", {**TINY_OVERRIDES, "MODEL.VIS.CLASS_LOSS": class_loss}
    )


def _batch():
    generator = torch.Generator().manual_seed(0)
    return [synthetic_clip(2, (64, 96), 2, 3, generator) for _ in range(2)]


def _losses(model):
    torch.manual_seed(1)  # the same sampled points in every call
    return model(_batch())


@pytest.mark.parametrize(
    "value, own, expected",
    [("", "sigmoid", "sigmoid"), ("", "softmax", "softmax"), ("focal", "softmax", "sigmoid")]
    + [("softmax_ce", "sigmoid", "softmax")],
)
def test_configured_class_activation(make_cfg, value, own, expected):
    cfg = make_cfg(overrides={"MODEL.VIS.CLASS_LOSS": value})
    assert configured_class_activation(cfg, own) == expected


def test_an_unknown_class_loss_names_the_key(make_cfg):
    cfg = make_cfg(overrides={"MODEL.VIS.CLASS_LOSS": "softmax"})
    with pytest.raises(ValueError, match="MODEL.VIS.CLASS_LOSS.*'softmax'"):
        configured_class_activation(cfg, "sigmoid")


def test_class_heads():
    torch.manual_seed(0)
    sigmoid, softmax = class_head(8, 3, "sigmoid"), class_head(8, 3, "softmax")
    assert sigmoid.out_features == 3 and softmax.out_features == 4
    torch.testing.assert_close(sigmoid.bias.sigmoid(), torch.full((3,), 0.01))
    with pytest.raises(ValueError, match="class activation"):
        class_head(8, 3, "relu")


def _one_match():
    """Video 0 of 1, 2 queries, K = 2: query 1 matched to a target of class 0."""
    targets = [{"labels": torch.tensor([0])}]
    indices = [(torch.tensor([1]), torch.tensor([0]))]
    return targets, indices


def test_focal_class_loss_by_hand():
    logits = torch.tensor([[[0.5, -1.0], [2.0, 0.0]]])  # (B=1, N=2, K=2)
    targets, indices = _one_match()
    alpha, gamma = 0.25, 2.0
    total = 0.0
    for q, row in enumerate(logits[0].tolist()):
        for k, x in enumerate(row):
            y = 1.0 if (q, k) == (1, 0) else 0.0
            p = 1 / (1 + math.exp(-x))
            p_t = p if y else 1 - p
            weight = alpha if y else 1 - alpha
            total += -weight * (1 - p_t) ** gamma * math.log(p_t)
    loss = FocalClassLoss(alpha, gamma)(logits, targets, indices, num_masks=2.0)
    assert loss.item() == pytest.approx(total / 2.0, rel=1e-6)


def test_no_object_cross_entropy_by_hand():
    logits = torch.tensor([[[0.5, -1.0, 1.0], [2.0, 0.0, -0.5]]])  # (1, 2, K + 1 = 3)
    targets, indices = _one_match()
    loss_fn = NoObjectClassLoss(num_classes=2, eos_coef=0.1)

    def nll(row, k):
        return -(row[k] - math.log(sum(math.exp(v) for v in row)))

    rows = logits[0].tolist()
    # Query 0 unmatched: target no-object (weight 0.1); query 1: class 0 (weight 1).
    expected = (0.1 * nll(rows[0], 2) + 1.0 * nll(rows[1], 0)) / (0.1 + 1.0)
    assert loss_fn(logits, targets, indices, num_masks=5.0).item() == pytest.approx(expected)
    assert "empty_weight" not in loss_fn.state_dict()
    with pytest.raises(ValueError, match="NO_OBJECT_WEIGHT"):
        NoObjectClassLoss(2, 1.5)


@pytest.mark.parametrize(
    "name, class_loss, activation, columns, loss_class",
    [
        ("ifr_tiny", "softmax_ce", "softmax", 4, NoObjectClassLoss),
        ("m2f_vis_tiny", "focal", "sigmoid", 3, FocalClassLoss),
    ],
)
def test_swapped_model_is_consistent_and_trains(
    make_cfg, one_torch_thread, name, class_loss, activation, columns, loss_class
):
    model = build_model(_config(make_cfg, name, class_loss))
    assert model.class_activation == activation
    assert model.transformer_decoder.class_activation == activation
    assert model.transformer_decoder.class_embed.out_features == columns
    assert isinstance(model.criterion.class_loss, loss_class)
    assert model.criterion.num_logit_columns == columns
    assert model.criterion.matcher.class_activation == activation

    losses = _losses(model)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.transformer_decoder.class_embed.weight.grad.abs().sum() > 0

    logits = torch.randn(2, columns)
    expected = logits.sigmoid() if activation == "sigmoid" else logits.softmax(-1)[:, :-1]
    torch.testing.assert_close(model.class_probabilities(logits), expected)
    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": _batch()[0]["image"], "height": 64, "width": 96}])
    scores = output["pred_scores"]
    assert len(scores) > 0 and all(0 <= score <= 1 for score in scores)


@pytest.mark.parametrize("name, own", [("ifr_tiny", "focal"), ("m2f_vis_tiny", "softmax_ce")])
def test_naming_the_own_class_loss_changes_nothing(make_cfg, one_torch_thread, name, own):
    torch.manual_seed(0)
    default = build_model(_config(make_cfg, name, ""))
    torch.manual_seed(0)
    named = build_model(_config(make_cfg, name, own))
    default_losses, named_losses = _losses(default), _losses(named)
    assert default_losses.keys() == named_losses.keys()
    assert all(torch.equal(default_losses[k], named_losses[k]) for k in default_losses)


@pytest.mark.parametrize("name", ["ifc_tiny", "tevit_tiny", "vistr_tiny"])
def test_systems_with_their_own_class_loss_refuse_the_key(make_cfg, name):
    with pytest.raises(ValueError, match="MODEL.VIS.CLASS_LOSS.*has its own"):
        build_model(_config(make_cfg, name, "focal"))


@pytest.mark.parametrize("name", ["ifc_tiny", "tevit_tiny", "vistr_tiny"])
def test_systems_with_their_own_matcher_refuse_the_class_cost(make_cfg, name):
    cfg = make_cfg(f"configs/tiny/{name}.yaml", {**TINY_OVERRIDES, "MODEL.VIS.CLASS_COST": "focal"})
    with pytest.raises(ValueError, match="MODEL.VIS.CLASS_COST.*has its own matcher"):
        build_model(cfg)
