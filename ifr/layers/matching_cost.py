"""Matching costs of Eq. (4) as pure functions of tensors: every prediction against every
target, an ``(N, M)`` matrix. Used by the Hungarian matcher (``ifr.modeling.matcher``) and
by test-time augmentation (``ifr.inference.tta``), which matches predictions to predictions.

Mask terms work on point-sampled logits: a row is one mask (or one mask volume), a column
one sampled point. Targets may be soft (probabilities in [0, 1]), not only binary.
"""

import torch
from torch.nn import functional as F

# Added to numerator and denominator of the Dice coefficient, as in Mask2Former: an empty
# prediction of an empty mask has Dice 1, and the gradient stays finite.
DICE_SMOOTH = 1.0


def batch_sigmoid_ce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """
    Mean binary cross-entropy between every prediction and every target (C_m of Eq. 4).

    Args:
        logits: (N, P) predicted mask logits at P points.
        targets: (M, P) target masks in [0, 1] at the same points.

    Returns:
        (N, M): entry (n, m) is the BCE of prediction n against target m, averaged over P.
    """
    num_points = logits.shape[1]
    # BCE(x, t) = t * BCE(x, 1) + (1 - t) * BCE(x, 0) is linear in t, so all pairs are
    # two matrix products; this holds for soft targets too.
    cost_if_positive = F.binary_cross_entropy_with_logits(
        logits, torch.ones_like(logits), reduction="none"
    )
    cost_if_negative = F.binary_cross_entropy_with_logits(
        logits, torch.zeros_like(logits), reduction="none"
    )
    cost = cost_if_positive @ targets.T + cost_if_negative @ (1 - targets).T
    return cost / num_points


def batch_dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """
    ``1 - DICE`` between every prediction and every target (Eq. 4).

    Args:
        logits: (N, P) predicted mask logits at P points.
        targets: (M, P) target masks in [0, 1] at the same points.

    Returns:
        (N, M): entry (n, m) is ``1 - (2 |p_n t_m| + 1) / (|p_n| + |t_m| + 1)``.
    """
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T + DICE_SMOOTH
    denominator = probs.sum(1)[:, None] + targets.sum(1)[None, :] + DICE_SMOOTH
    return 1 - numerator / denominator


def clip_matching_cost(
    pred_probs: torch.Tensor,
    pred_masks: torch.Tensor,
    tgt_labels: torch.Tensor,
    tgt_masks: torch.Tensor,
    *,
    cost_class: float = 2.0,
    cost_mask: float = 5.0,
    cost_dice: float = 5.0,
) -> torch.Tensor:
    """
    Eq. (4): ``C = -lambda_c p(c) + lambda_m BCE(m, m_hat) + lambda_d (1 - DICE(m, m_hat))``,
    BCE and Dice over the whole clip volume of each instance.

    Args:
        pred_probs: (N, K) class probabilities of the clip-level queries.
        pred_masks: (N, T, h', w') mask logits, or (N, T * P) logits already sampled at P
            points per frame. Flattened per query to one volume.
        tgt_labels: (M,) int64 class of each target.
        tgt_masks: (M, T, h', w') or (M, T * P) masks in [0, 1], laid out like
            ``pred_masks``; soft targets (probabilities) are allowed, as the test-time
            augmentation matches predictions to predictions.
        cost_class, cost_mask, cost_dice: lambda_c, lambda_m, lambda_d.

    Returns:
        (N, M) float cost of assigning query n to target m.
    """
    pred_volumes = pred_masks.flatten(1).float()
    tgt_volumes = tgt_masks.flatten(1).float().to(pred_volumes.device)
    if pred_volumes.shape[1] != tgt_volumes.shape[1]:
        raise ValueError(
            "clip_matching_cost: predicted and target masks must have the same size per "
            f"instance, got {tuple(pred_masks.shape)} and {tuple(tgt_masks.shape)}"
        )
    class_cost = -pred_probs.float()[:, tgt_labels]
    mask_cost = batch_sigmoid_ce_cost(pred_volumes, tgt_volumes)
    dice_cost = batch_dice_cost(pred_volumes, tgt_volumes)
    return cost_class * class_cost + cost_mask * mask_cost + cost_dice * dice_cost
