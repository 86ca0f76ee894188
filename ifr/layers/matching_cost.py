"""Matching costs of Eq. (4) as pure functions of tensors: every prediction against every
target, an ``(N, M)`` matrix. Used by the Hungarian matcher (``ifr.modeling.matcher``) and
by test-time augmentation (``ifr.inference.tta``), which matches predictions to predictions.

Mask terms work on point-sampled logits: a row is one mask (or one mask volume), a column
one sampled point. Targets may be soft (probabilities in [0, 1]), not only binary.
"""

from typing import List, Optional, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional as F
from torchvision.ops import box_convert, generalized_box_iou

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
    # two matrix products; this holds for soft targets too. BCE(x, 1) = -log sigmoid(x) and
    # BCE(x, 0) = x - log sigmoid(x): one log-sigmoid for both (the values PyTorch's
    # binary_cross_entropy_with_logits gives with all-one and all-zero targets).
    cost_if_positive = -F.logsigmoid(logits)
    cost_if_negative = logits + cost_if_positive
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


# The class term of the matching cost (MODEL.VIS.CLASS_COST).
CLASS_COSTS = ("probability", "focal")


def focal_class_cost(
    probs: torch.Tensor, labels: torch.Tensor, alpha: float, gamma: float, eps: float = 1e-8
) -> torch.Tensor:
    """
    The focal class cost of Deformable DETR, SeqFormer and mmdetection's ``FocalLossCost``:
    the focal loss of calling the target class positive minus that of calling it negative,
    ``alpha (1 - p)^gamma (-log(p + eps)) - (1 - alpha) p^gamma (-log(1 - p + eps))``.

    Args:
        probs: (N, K) sigmoid class probabilities.
        labels: (M,) int64 class of each target.
        alpha, gamma: of the focal loss; eps: inside the logarithms (1e-8 in Deformable DETR,
            1e-12 in mmdetection).

    Returns:
        (N, M) cost: lower where the target's class is more probable.
    """
    probs = probs.float()[:, labels]
    positive = alpha * (1 - probs).pow(gamma) * -(probs + eps).log()
    negative = (1 - alpha) * probs.pow(gamma) * -(1 - probs + eps).log()
    return positive - negative


def clip_matching_cost(
    pred_probs: torch.Tensor,
    pred_masks: torch.Tensor,
    tgt_labels: torch.Tensor,
    tgt_masks: torch.Tensor,
    *,
    cost_class: float = 2.0,
    cost_mask: float = 5.0,
    cost_dice: float = 5.0,
    focal: Optional[Tuple[float, float]] = None,
) -> torch.Tensor:
    """
    Eq. (4): ``C = -lambda_c p(c) + lambda_m BCE(m, m_hat) + lambda_d (1 - DICE(m, m_hat))``,
    BCE and Dice over the whole clip volume of each instance. With ``focal = (alpha,
    gamma)`` the class term is ``lambda_c`` times :func:`focal_class_cost` instead of
    ``-lambda_c p(c)``.

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
    if focal is None:
        class_cost = -pred_probs.float()[:, tgt_labels]
    else:
        class_cost = focal_class_cost(pred_probs, tgt_labels, *focal)
    mask_cost = batch_sigmoid_ce_cost(pred_volumes, tgt_volumes)
    dice_cost = batch_dice_cost(pred_volumes, tgt_volumes)
    return cost_class * class_cost + cost_mask * mask_cost + cost_dice * dice_cost


# ---------------------------------------------------------------------------------------
# Instance-sequence matching (VisTR): a prediction is a sequence of per-frame slots, a
# target a sequence of per-frame boxes present in some frames. Each term is averaged
# either over the frames where the target is present (``frames="present"``) or, as the
# official VisTR code, over all T frames (``frames="all"``): there an absent frame's box
# target is (0, 0, 0, 0) and its class term is 0 (VisTR scores it against its unused class
# 0, whose probability a trained VisTR keeps at about 0 and no model here has). Box overlap
# is GIoU or, as the official code, IoU with 1e-6 added above and below.
# Shapes: N predicted sequences, M targets, T frames, K classes.

SEQUENCE_COST_FRAMES = ("present", "all")
SEQUENCE_COST_OVERLAPS = ("giou", "iou")
# VisTR's multi_iou: (intersection + eps) / (union + eps).
IOU_EPS = 1e-6


def _mean_over_frames(
    per_frame: torch.Tensor, tgt_valid: torch.Tensor, frames: str
) -> torch.Tensor:
    """(N, M, T) per-frame costs -> (N, M): mean over the frames where target m is present
    (``tgt_valid`` (M, T) bool; 0 for a target present nowhere), or over all T frames."""
    if frames == "all":
        return per_frame.mean(-1)
    present = tgt_valid.bool()[None].expand_as(per_frame)
    per_frame = torch.where(present, per_frame, torch.zeros_like(per_frame))
    return per_frame.sum(-1) / tgt_valid.sum(-1).clamp(min=1).to(per_frame.dtype)[None]


def _check_choice(name: str, value: str, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def sequence_class_cost(
    pred_probs: torch.Tensor,
    tgt_labels: torch.Tensor,
    tgt_valid: torch.Tensor,
    frames: str = "present",
) -> torch.Tensor:
    """
    ``-p_t(c_m)`` averaged over the frames where target m is present, or over all frames
    with 0 where it is absent (``frames``, see above).

    Args:
        pred_probs: (N, T, K) per-frame class probabilities of the N predicted sequences.
        tgt_labels: (M,) int64 class of each target.
        tgt_valid: (M, T) bool, target m present in frame t.

    Returns:
        (N, M) cost.
    """
    _check_choice("frames", frames, SEQUENCE_COST_FRAMES)
    per_frame = -pred_probs.float()[:, :, tgt_labels].permute(0, 2, 1)  # (N, M, T)
    if frames == "all":
        present = tgt_valid.bool().to(per_frame.device)[None].expand_as(per_frame)
        per_frame = torch.where(present, per_frame, torch.zeros_like(per_frame))
    return _mean_over_frames(per_frame, tgt_valid, frames)


def pairwise_iou_eps(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """VisTR's IoU of every box of (N, 4) ``boxes1`` with every box of (M, 4) ``boxes2``
    (xyxy): (intersection + 1e-6) / (union + 1e-6), so that two empty boxes have IoU 1 and
    an empty target 1e-6 / (area + 1e-6) with any box. Returns (N, M)."""
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).prod(-1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).prod(-1)
    union = area1[:, None] + area2[None] - inter
    return (inter + IOU_EPS) / (union + IOU_EPS)


def sequence_box_costs(
    pred_boxes: torch.Tensor,
    tgt_boxes: torch.Tensor,
    tgt_valid: torch.Tensor,
    frames: str = "present",
    overlap: str = "giou",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    Box terms of the sequence matching cost: L1 and ``-GIoU`` (or ``-IoU``), each averaged
    over the frames where the target is present or over all frames (the L1 also over the
    4 coordinates).

    Args:
        pred_boxes: (N, T, 4) predicted (cx, cy, w, h) boxes, normalised to [0, 1].
        tgt_boxes: (M, T, 4) target boxes, same format ((0, 0, 0, 0) where absent for
            ``frames="all"``; any value where absent otherwise).
        tgt_valid: (M, T) bool, target m present in frame t.

    Returns:
        l1_cost (N, M), overlap_cost (N, M) (in [-1, 1]).
    """
    _check_choice("frames", frames, SEQUENCE_COST_FRAMES)
    _check_choice("overlap", overlap, SEQUENCE_COST_OVERLAPS)
    pred, tgt = pred_boxes.float(), tgt_boxes.float().to(pred_boxes.device)
    l1 = (pred[:, None] - tgt[None]).abs().mean(-1)  # (N, M, T)
    pred_xyxy = box_convert(pred, "cxcywh", "xyxy")
    tgt_xyxy = box_convert(tgt, "cxcywh", "xyxy")
    pairwise = generalized_box_iou if overlap == "giou" else pairwise_iou_eps
    overlaps = torch.stack(
        [pairwise(pred_xyxy[:, t], tgt_xyxy[:, t]) for t in range(pred.shape[1])], dim=-1
    )  # (N, M, T); GIoU is NaN only for degenerate boxes, which absent frames may hold
    valid = tgt_valid.to(pred.device)
    return _mean_over_frames(l1, valid, frames), _mean_over_frames(-overlaps, valid, frames)


def sequence_matching_cost(
    pred_probs: torch.Tensor,
    pred_boxes: torch.Tensor,
    tgt_labels: torch.Tensor,
    tgt_boxes: torch.Tensor,
    tgt_valid: torch.Tensor,
    *,
    cost_class: float = 1.0,
    cost_bbox: float = 5.0,
    cost_giou: float = 2.0,
    cost_mask: float = 0.0,
    cost_dice: float = 0.0,
    frames: str = "present",
    overlap: str = "giou",
    pred_mask_points: Optional[torch.Tensor] = None,
    tgt_mask_points: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """
    VisTR's instance-sequence matching cost of every predicted sequence against every
    target sequence: ``cost_class * (-p(c)) + cost_bbox * L1 + cost_giou * (-GIoU or
    -IoU)`` (each averaged over the target's frames or all frames, see above), plus, when
    their weights are not 0, the mask sequence's sigmoid cross-entropy and ``1 - Dice``
    over the whole volume.

    Args:
        pred_probs: (N, T, K); pred_boxes: (N, T, 4); tgt_labels: (M,);
            tgt_boxes: (M, T, 4); tgt_valid: (M, T) bool (see the functions above).
        frames: ``"present"`` or ``"all"``; overlap: ``"giou"`` or ``"iou"``.
        pred_mask_points: (N, T * P) mask logits at P points per frame; tgt_mask_points:
            (M, T * P) target masks at the same points. Needed when cost_mask or
            cost_dice is not 0.

    Returns:
        (N, M) float cost.
    """
    cost = cost_class * sequence_class_cost(pred_probs, tgt_labels, tgt_valid, frames)
    l1_cost, overlap_cost = sequence_box_costs(pred_boxes, tgt_boxes, tgt_valid, frames, overlap)
    cost = cost + cost_bbox * l1_cost + cost_giou * overlap_cost
    if cost_mask or cost_dice:
        if pred_mask_points is None or tgt_mask_points is None:
            raise ValueError("sequence_matching_cost: mask costs need the mask points")
        pred_points = pred_mask_points.float()
        tgt_points = tgt_mask_points.float().to(pred_points.device)
        cost = cost + cost_mask * batch_sigmoid_ce_cost(pred_points, tgt_points)
        cost = cost + cost_dice * batch_dice_cost(pred_points, tgt_points)
    return cost


# Per video, (pred_idx, tgt_idx): the matched query and target indices, int64 on the CPU.
Indices = List[Tuple[torch.Tensor, torch.Tensor]]


def empty_match() -> Tuple[torch.Tensor, torch.Tensor]:
    """(pred_idx, tgt_idx) of a video without instances: two empty int64 tensors."""
    empty = torch.empty(0, dtype=torch.int64)
    return empty, empty.clone()


def hungarian_match(cost: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost one-to-one assignment of a (N, M) CPU cost matrix (Hungarian
    algorithm): (pred_idx, tgt_idx), min(N, M) int64 each, ``pred_idx`` ascending."""
    pred_idx, tgt_idx = linear_sum_assignment(cost.numpy())
    return (
        torch.as_tensor(pred_idx, dtype=torch.int64),
        torch.as_tensor(tgt_idx, dtype=torch.int64),
    )
