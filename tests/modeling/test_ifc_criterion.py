"""IFC's matcher and criterion on hand-made cases: dense focal and clip-volume Dice by hand,
the class/Dice matching trade-off, target resizing, no instance."""

import math

import pytest
import torch
from torch import nn

from ifr.modeling.criterion.base import aux_weight_dict
from ifr.modeling.criterion.ifc import IFCCriterion
from ifr.modeling.matcher.ifc import IFCMatcher, resize_clip_masks, strided_size


def _criterion(matcher, mask_stride=1, match_stride=1, num_classes=2):
    return IFCCriterion(
        num_classes=num_classes,
        matcher=matcher,
        weight_dict=aux_weight_dict({"loss_ce": 1.0, "loss_mask": 3.0, "loss_dice": 3.0}, 0),
        eos_coef=0.1,
        mask_stride=mask_stride,
        match_stride=match_stride,
    )


def test_strided_size_and_bilinear_resize():
    assert strided_size((9, 10), 4) == (3, 3)
    assert strided_size((8, 8), 4) == (2, 2)
    masks = torch.zeros(1, 1, 8, 8)
    masks[0, 0, :4, :4] = 1.0
    resized = resize_clip_masks(masks, (2, 2))
    torch.testing.assert_close(resized[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert resize_clip_masks(torch.zeros(0, 3, 8, 8), (2, 2)).shape == (0, 3, 2, 2)


def test_focal_and_dice_of_a_clip_volume_by_hand(fixed_matcher):
    """Prediction: logit 0 everywhere at 1x1 (upsampled to the 2x2 target: p = 0.5 at all
    8 pixels of the 2-frame volume). Target: 3 of the 8 pixels.
    focal per pixel = ln2 * (1 - p_t)^2 * alpha_t = ln2 * 0.25 * (0.25 positive, 0.75 negative),
    averaged over the volume; Dice = 1 - (2 * 0.5 * 3 + 1) / (0.5 * 8 + 3 + 1) = 0.5."""
    criterion = _criterion(fixed_matcher([([1], [0])]))
    outputs = {
        "pred_logits": torch.zeros(1, 2, 3),  # K + 1 = 3 columns
        "pred_masks": torch.zeros(1, 2, 2, 1, 1, requires_grad=True),
    }
    target_masks = torch.zeros(1, 2, 2, 2)
    target_masks[0, 0, 0, 0] = 1.0
    target_masks[0, 1, 0, :] = 1.0
    losses = criterion(outputs, [{"labels": torch.tensor([1]), "masks": target_masks}])
    focal = math.log(2) * 0.25 * (3 * 0.25 + 5 * 0.75) / 8
    assert losses["loss_mask"].item() == pytest.approx(focal, rel=1e-5)
    assert losses["loss_dice"].item() == pytest.approx(0.5, rel=1e-5)
    # Uniform logits: every query's cross-entropy is ln 3, whatever the class weights.
    assert losses["loss_ce"].item() == pytest.approx(math.log(3), rel=1e-5)
    sum(losses.values()).backward()
    assert outputs["pred_masks"].grad[0, 1].abs().sum() > 0
    assert outputs["pred_masks"].grad[0, 0].abs().sum() == 0  # unmatched: no mask loss


def test_losses_are_divided_by_the_number_of_instances(fixed_matcher):
    matcher = fixed_matcher([([0, 1], [0, 1])])
    outputs = {"pred_logits": torch.zeros(1, 2, 3), "pred_masks": torch.zeros(1, 2, 1, 2, 2)}
    masks = torch.zeros(2, 1, 2, 2)
    masks[0, 0, 0, 0] = 1.0
    both = _criterion(matcher)(outputs, [{"labels": torch.tensor([0, 1]), "masks": masks}])
    # Same pair twice: the mean over the two instances equals one instance's loss.
    twice = torch.cat([masks[:1], masks[:1]])
    same = _criterion(matcher)(outputs, [{"labels": torch.tensor([0, 1]), "masks": twice}])
    single = _criterion(fixed_matcher([([0], [0])]))(
        outputs, [{"labels": torch.tensor([0]), "masks": masks[:1]}]
    )
    assert same["loss_dice"].item() == pytest.approx(single["loss_dice"].item(), rel=1e-5)
    assert both["loss_dice"].item() != pytest.approx(single["loss_dice"].item(), rel=1e-3)


def _matching_case():
    """Query 0's mask is instance A's, its class instance B's; query 1 the reverse."""
    mask_a = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    mask_b = 1.0 - mask_a
    pred_masks = torch.stack([(mask_a * 2 - 1) * 8, (mask_b * 2 - 1) * 8])[:, None]  # (2, 1, 2, 2)
    pred_logits = torch.tensor([[0.0, 4.0, 0.0], [4.0, 0.0, 0.0]])  # q0 -> class 1, q1 -> class 0
    outputs = {"pred_logits": pred_logits[None], "pred_masks": pred_masks[None]}
    target = {
        "labels": torch.tensor([0, 1]),  # A is class 0, B class 1
        "match_masks": torch.stack([mask_a, mask_b])[:, None],
    }
    return outputs, [target]


def test_matching_trades_class_against_dice():
    outputs, targets = _matching_case()
    ((pred_idx, tgt_idx),) = IFCMatcher(cost_class=1.0, cost_dice=3.0)(outputs, targets)
    assert dict(zip(pred_idx.tolist(), tgt_idx.tolist())) == {0: 0, 1: 1}  # masks decide
    ((pred_idx, tgt_idx),) = IFCMatcher(cost_class=10.0, cost_dice=0.1)(outputs, targets)
    assert dict(zip(pred_idx.tolist(), tgt_idx.tolist())) == {0: 1, 1: 0}  # classes decide


def test_matching_cost_by_hand_decides_a_close_case():
    """Equal masks for both queries: only the class term differs, so the query with the
    higher probability of the target's class is matched."""
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    outputs = {
        "pred_logits": torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]),
        "pred_masks": torch.stack([mask, mask])[None, :, None] * 4 - 2,
    }
    targets = [{"labels": torch.tensor([0]), "match_masks": mask[None, None]}]
    ((pred_idx, tgt_idx),) = IFCMatcher(cost_class=1.0, cost_dice=3.0)(outputs, targets)
    assert pred_idx.tolist() == [1] and tgt_idx.tolist() == [0]


def test_match_masks_are_the_targets_at_the_match_stride():
    seen = {}

    class Recorder(nn.Module):
        def forward(self, outputs, targets):
            seen["match"] = targets[0]["match_masks"].shape
            seen["loss"] = targets[0]["masks"].shape
            return [(torch.tensor([0]), torch.tensor([0]))]

    criterion = _criterion(Recorder(), mask_stride=4, match_stride=8)
    outputs = {"pred_logits": torch.zeros(1, 2, 3), "pred_masks": torch.zeros(1, 2, 2, 4, 5)}
    criterion(outputs, [{"labels": torch.tensor([0]), "masks": torch.zeros(1, 2, 32, 40)}])
    assert seen == {"loss": (1, 2, 8, 10), "match": (1, 2, 4, 5)}


def test_no_instance_gives_zero_mask_losses_in_the_graph():
    criterion = _criterion(IFCMatcher(cost_class=1.0, cost_dice=3.0))
    pred_masks = torch.zeros(1, 2, 2, 2, 2, requires_grad=True)
    outputs = {"pred_logits": torch.zeros(1, 2, 3, requires_grad=True), "pred_masks": pred_masks}
    losses = criterion(
        outputs, [{"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 2, 8, 8)}]
    )
    assert losses["loss_mask"].item() == 0 and losses["loss_dice"].item() == 0
    sum(losses.values()).backward()
    assert pred_masks.grad is not None


def test_bad_settings_name_their_keys(fixed_matcher):
    with pytest.raises(ValueError, match="MODEL.IFC.NO_OBJECT_WEIGHT"):
        IFCCriterion(
            num_classes=2,
            matcher=fixed_matcher([]),
            weight_dict={},
            eos_coef=2.0,
            mask_stride=4,
            match_stride=4,
        )
    with pytest.raises(ValueError, match="MODEL.IFC.MATCH_STRIDE"):
        _criterion(fixed_matcher([]), match_stride=0)
    with pytest.raises(ValueError, match="cannot both be 0"):
        IFCMatcher(cost_class=0.0, cost_dice=0.0)
