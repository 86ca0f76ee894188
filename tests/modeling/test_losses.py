"""Tests of ifr/modeling/losses.py against values computed by hand from the definitions."""

import math

import pytest
import torch

from ifr.layers.matching_cost import batch_dice_cost, batch_sigmoid_ce_cost
from ifr.modeling.losses import dice_loss, sigmoid_ce_loss, sigmoid_focal_loss

LN3 = math.log(3.0)  # sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4, sigmoid(0) = 1/2


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bce(x: float, t: float) -> float:
    p = _sigmoid(x)
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def _dice_term(xs, ts) -> float:
    ps = [_sigmoid(x) for x in xs]
    intersection = sum(p * t for p, t in zip(ps, ts))
    return 1 - (2 * intersection + 1) / (sum(ps) + sum(ts) + 1)


def test_focal_loss_2x2_by_hand():
    logits = torch.tensor([[0.0, LN3], [-LN3, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # alpha_t * (1 - p_t)^2 * CE per entry, alpha = 0.25, gamma = 2:
    # (0,0) p=1/2, t=1: 0.25 * (1/2)^2 * ln 2
    # (0,1) p=3/4, t=0: 0.75 * (3/4)^2 * ln 4
    # (1,0) p=1/4, t=0: 0.75 * (1/4)^2 * ln(4/3)
    # (1,1) p=1/2, t=1: 0.25 * (1/2)^2 * ln 2
    expected = (
        0.25 * 0.25 * math.log(2)
        + 0.75 * 0.5625 * math.log(4)
        + 0.75 * 0.0625 * math.log(4 / 3)
        + 0.25 * 0.25 * math.log(2)
    ) / 2.0
    loss = sigmoid_focal_loss(logits, targets, num_masks=2.0, alpha=0.25, gamma=2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_focal_loss_without_alpha_and_gamma_is_summed_bce():
    logits = torch.tensor([[0.0, LN3], [-LN3, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    expected = (math.log(2) + math.log(4) + math.log(4 / 3) + math.log(2)) / 4.0
    loss = sigmoid_focal_loss(logits, targets, num_masks=4.0, alpha=-1, gamma=0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_focal_loss_sums_over_queries_of_a_batch():
    logits = torch.randn(2, 5, 3)
    targets = torch.zeros(2, 5, 3)
    targets[0, 1, 2] = 1
    whole = sigmoid_focal_loss(logits, targets, num_masks=3.0)
    per_video = sum(sigmoid_focal_loss(logits[b], targets[b], num_masks=3.0) for b in range(2))
    assert whole.item() == pytest.approx(per_video.item(), rel=1e-6)


def test_sigmoid_ce_loss_by_hand():
    logits = torch.tensor([[0.0, LN3], [-LN3, LN3]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0], [0.5, 1.0]], dtype=torch.float64)
    row0 = (math.log(2) + math.log(4)) / 2
    row1 = (_bce(-LN3, 0.5) + math.log(4 / 3)) / 2
    loss = sigmoid_ce_loss(logits, targets, num_masks=4.0)
    assert loss.item() == pytest.approx((row0 + row1) / 4, rel=1e-12)


def test_dice_loss_by_hand():
    logits = torch.tensor([[0.0, LN3], [-LN3, LN3]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # row 0: p = (1/2, 3/4): 1 - (2 * 1/2 + 1) / (5/4 + 1 + 1)
    # row 1: p = (1/4, 3/4): 1 - (2 * 3/4 + 1) / (1 + 1 + 1)
    expected = (1 - 2 / 3.25) + (1 - 2.5 / 3)
    loss = dice_loss(logits, targets, num_masks=2.0)
    assert loss.item() == pytest.approx(expected / 2, rel=1e-12)


def test_dice_loss_of_empty_prediction_of_empty_mask_is_near_zero():
    logits = torch.full((1, 8), -30.0)
    assert dice_loss(logits, torch.zeros(1, 8), num_masks=1.0).item() == pytest.approx(0, abs=1e-6)


def test_batch_costs_by_hand():
    logits = torch.tensor([[0.0, LN3, -LN3], [LN3, LN3, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.5, 1.0, 0.25]], dtype=torch.float64)
    bce = batch_sigmoid_ce_cost(logits, targets)
    dice = batch_dice_cost(logits, targets)
    assert bce.shape == dice.shape == (2, 2)
    for n in range(2):
        for m in range(2):
            xs, ts = logits[n].tolist(), targets[m].tolist()
            expected_bce = sum(_bce(x, t) for x, t in zip(xs, ts)) / 3
            assert bce[n, m].item() == pytest.approx(expected_bce, rel=1e-12)
            assert dice[n, m].item() == pytest.approx(_dice_term(xs, ts), rel=1e-12)


def test_batch_costs_agree_with_losses_row_by_row():
    logits = torch.randn(4, 7, dtype=torch.float64)
    targets = torch.rand(3, 7, dtype=torch.float64)
    bce = batch_sigmoid_ce_cost(logits, targets)
    dice = batch_dice_cost(logits, targets)
    for n in range(4):
        for m in range(3):
            pair = (logits[n : n + 1], targets[m : m + 1])
            assert bce[n, m].item() == pytest.approx(sigmoid_ce_loss(*pair, 1.0).item(), rel=1e-10)
            assert dice[n, m].item() == pytest.approx(dice_loss(*pair, 1.0).item(), rel=1e-10)


def test_batch_costs_with_no_targets():
    logits = torch.randn(3, 5)
    assert batch_sigmoid_ce_cost(logits, torch.zeros(0, 5)).shape == (3, 0)
    assert batch_dice_cost(logits, torch.zeros(0, 5)).shape == (3, 0)
