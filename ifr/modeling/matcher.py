"""Hungarian matching of clip-level queries to ground-truth instances, Eq. (4)."""

from typing import Dict, List, Tuple

import torch
from detectron2.config import configurable
from detectron2.projects.point_rend.point_features import point_sample
from scipy.optimize import linear_sum_assignment
from torch import nn

from .losses import batch_dice_cost, batch_sigmoid_ce_cost


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


class VideoHungarianMatcher(nn.Module):
    """
    One-to-one assignment of the N clip-level queries of each video to its M instances by
    the Eq. (4) cost on ``num_points`` random points, the same points in every frame.
    """

    @configurable
    def __init__(self, *, cost_class: float, cost_mask: float, cost_dice: float, num_points: int):
        """
        Args:
            cost_class, cost_mask, cost_dice: lambda_c, lambda_m, lambda_d of Eq. (4).
            num_points: points sampled per frame for the mask costs.
        """
        super().__init__()
        if num_points <= 0:
            raise ValueError(
                f"VideoHungarianMatcher: num_points must be positive, got {num_points}"
            )
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {
            "cost_class": cfg.MODEL.IFR.CLASS_WEIGHT,
            "cost_mask": cfg.MODEL.IFR.MASK_WEIGHT,
            "cost_dice": cfg.MODEL.IFR.DICE_WEIGHT,
            "num_points": cfg.MODEL.IFR.TRAIN_NUM_POINTS,
        }

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]
    ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            outputs: ``pred_logits (B, N, K)`` class logits and ``pred_masks (B, N, T, h, w)``
                mask logits.
            targets: B dicts with ``labels (M,) int64`` and ``masks (M, T, H, W) float``.

        Returns:
            B pairs ``(pred_idx, tgt_idx)`` of int64 tensors of length min(N, M) on the CPU:
            query ``pred_idx[j]`` is assigned to instance ``tgt_idx[j]``.
        """
        pred_logits, pred_masks = outputs["pred_logits"], outputs["pred_masks"]
        if len(targets) != pred_logits.shape[0]:
            raise ValueError(
                f"VideoHungarianMatcher: {len(targets)} targets for a batch of "
                f"{pred_logits.shape[0]} videos"
            )
        return [
            self._match_video(pred_logits[b], pred_masks[b], target, b)
            for b, target in enumerate(targets)
        ]

    def _match_video(
        self, logits: torch.Tensor, masks: torch.Tensor, target: Dict[str, torch.Tensor], video: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """logits: (N, K); masks: (N, T, h, w) logits; ``video`` names the video in errors."""
        tgt_labels, tgt_masks = target["labels"], target["masks"]
        if tgt_masks.shape[0] == 0:
            empty = torch.empty(0, dtype=torch.int64)
            return empty, empty.clone()
        if tgt_masks.shape[1] != masks.shape[1]:
            raise ValueError(
                f"VideoHungarianMatcher: video {video} has target masks of {tgt_masks.shape[1]} "
                f"frames for predictions of {masks.shape[1]} frames"
            )
        point_coords = torch.rand(1, self.num_points, 2, device=masks.device)
        pred_points = sample_clip_points(masks, point_coords)
        tgt_points = sample_clip_points(tgt_masks.to(masks), point_coords)
        cost = clip_matching_cost(
            logits.sigmoid(),
            pred_points,
            tgt_labels,
            tgt_points,
            cost_class=self.cost_class,
            cost_mask=self.cost_mask,
            cost_dice=self.cost_dice,
        ).cpu()
        if not torch.isfinite(cost).all():
            raise FloatingPointError(
                f"VideoHungarianMatcher: non-finite matching cost for video {video} "
                "(NaN or inf in pred_logits or pred_masks)"
            )
        pred_idx, tgt_idx = linear_sum_assignment(cost.numpy())
        pred_idx = torch.as_tensor(pred_idx, dtype=torch.int64)
        return pred_idx, torch.as_tensor(tgt_idx, dtype=torch.int64)

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
            f"cost_dice={self.cost_dice}, num_points={self.num_points}"
        )


def sample_clip_points(masks: torch.Tensor, point_coords: torch.Tensor) -> torch.Tensor:
    """
    Sample every frame of every mask volume at the same points.

    Args:
        masks: (R, T, h, w) mask logits or probabilities.
        point_coords: (1, P, 2) normalised (x, y) coordinates in [0, 1].

    Returns:
        (R, T * P): frame-major, the P points of frame 0 first.
    """
    coords = point_coords.expand(masks.shape[0], -1, -1)
    return point_sample(masks, coords, align_corners=False).flatten(1)
