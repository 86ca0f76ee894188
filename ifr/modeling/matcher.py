"""Hungarian matching of clip-level queries to ground-truth instances, Eq. (4)."""

from typing import Dict, List, Tuple

import torch
from detectron2.config import configurable
from torch import nn

from ..layers.classification import CLASS_ACTIVATIONS, class_probabilities
from ..layers.matching_cost import clip_matching_cost, empty_match, hungarian_match
from ..layers.point_sampling import sample_clip_points


class VideoHungarianMatcher(nn.Module):
    """
    One-to-one assignment of the N clip-level queries of each video to its M instances by
    the Eq. (4) cost on ``num_points`` random points, the same points in every frame.
    The class term is minus the probability of the target's class: sigmoid for IFR,
    softmax over K + 1 columns for Mask2Former-VIS (``class_activation``).
    """

    @configurable
    def __init__(
        self,
        *,
        cost_class: float,
        cost_mask: float,
        cost_dice: float,
        num_points: int,
        class_activation: str = "sigmoid",
    ):
        """
        Args:
            cost_class, cost_mask, cost_dice: lambda_c, lambda_m, lambda_d of Eq. (4).
            num_points: points sampled per frame for the mask costs.
            class_activation: "sigmoid" or "softmax" (``ifr.layers.class_probabilities``).
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
        if class_activation not in CLASS_ACTIVATIONS:
            raise ValueError(
                f"VideoHungarianMatcher: class_activation must be one of {CLASS_ACTIVATIONS}, "
                f"got {class_activation!r}"
            )
        self.class_activation = class_activation

    @classmethod
    def from_config(cls, cfg, class_activation: str = "sigmoid") -> dict:
        return {
            "class_activation": class_activation,
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
            outputs: ``pred_logits (B, N, K)`` class logits (K + 1 columns with softmax)
                and ``pred_masks (B, N, T, h, w)`` mask logits.
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
        """logits: (N, K) or (N, K + 1); masks: (N, T, h, w) logits; ``video`` names the
        video in errors."""
        tgt_labels, tgt_masks = target["labels"], target["masks"]
        if tgt_masks.shape[0] == 0:
            return empty_match()
        if tgt_masks.shape[1] != masks.shape[1]:
            raise ValueError(
                f"VideoHungarianMatcher: video {video} has target masks of {tgt_masks.shape[1]} "
                f"frames for predictions of {masks.shape[1]} frames"
            )
        point_coords = torch.rand(1, self.num_points, 2, device=masks.device)
        pred_points = sample_clip_points(masks, point_coords)
        tgt_points = sample_clip_points(tgt_masks.to(masks), point_coords)
        cost = clip_matching_cost(
            class_probabilities(logits, self.class_activation),
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
        return hungarian_match(cost)

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
            f"cost_dice={self.cost_dice}, num_points={self.num_points}, "
            f"class_activation={self.class_activation}"
        )
