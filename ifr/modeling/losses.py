"""Loss terms as pure functions of tensors (the matching costs of Eq. 4 are in
``ifr.layers.matching_cost``).

Losses (Eq. 5-7) take matched rows and return a scalar normalised by ``num_masks``, the
number of ground-truth instances in the batch (averaged over processes by the caller).
Mask terms work on point-sampled logits: a row is one mask (or one mask volume), a column
one sampled point. Targets may be soft (probabilities in [0, 1]), not only binary.
"""

import torch
from torch.nn import functional as F

from ..config import FOCAL_ALPHA, FOCAL_GAMMA
from ..layers.matching_cost import DICE_SMOOTH


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    num_masks: float,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
) -> torch.Tensor:
    """
    Focal loss (Lin et al.) on independent sigmoid classes, the L_cls of Eq. (5).

    Args:
        logits: (..., K) class logits, e.g. (B, N, K) for all queries of a batch.
        targets: same shape, one-hot (or soft) class targets; all-zero for unmatched queries.
        num_masks: normaliser, the number of ground-truth instances in the batch.
        alpha: weight of the positive class in (0, 1); a negative value disables it.
        gamma: focusing exponent.

    Returns:
        scalar: the per-element focal loss summed over every (query, class) pair, divided
        by ``num_masks``. This equals Deformable DETR's ``loss_ce`` (their mean over queries
        times the number of queries).
    """
    probs = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss.sum() / num_masks


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """
    Binary cross-entropy of masks, the L_m of Eq. (6).

    Args:
        logits: (R, P) mask logits at P sampled points, one row per mask.
        targets: (R, P) ground truth in [0, 1] at the same points.
        num_masks: normaliser, the number of ground-truth instances in the batch.

    Returns:
        scalar: the BCE averaged over the points of each row, summed over rows, divided by
        ``num_masks``.
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """
    Dice loss of masks, the ``1 - DICE`` of Eq. (7).

    Args:
        logits: (R, P) mask logits at P sampled points, one row per mask.
        targets: (R, P) ground truth in [0, 1] at the same points.
        num_masks: normaliser, the number of ground-truth instances in the batch.

    Returns:
        scalar: ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` per row (p = sigmoid(logits)),
        summed over rows, divided by ``num_masks``.
    """
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(1) + DICE_SMOOTH
    denominator = probs.sum(1) + targets.sum(1) + DICE_SMOOTH
    return (1 - numerator / denominator).sum() / num_masks
