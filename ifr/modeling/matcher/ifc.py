"""IFC's Hungarian matching (its ``HungarianMatcher``): class probability and the Dice of
dense clip volumes, the targets resized as IFC sizes them (``strided_size``)."""

import math
from typing import Dict, List, Tuple

import torch
from detectron2.config import configurable
from torch import nn
from torch.nn import functional as F

from ...layers.classification import class_probabilities
from ...layers.matching_cost import Indices, batch_dice_cost, empty_match, hungarian_match

__all__ = ["IFCMatcher", "resize_clip_masks", "strided_size"]


def resize_clip_masks(masks: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of mask volumes (R, T, h, w) -> (R, T, size) (IFC's ``interpolate``
    with ``align_corners=False``); unchanged if already that size."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, masks.shape[1], *size))
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.interpolate(masks, size=tuple(size), mode="bilinear", align_corners=False)


def strided_size(padded_size: Tuple[int, int], stride: int) -> Tuple[int, int]:
    """``ceil(H / stride), ceil(W / stride)``, as IFC sizes its targets."""
    return math.ceil(padded_size[0] / stride), math.ceil(padded_size[1] / stride)


class IFCMatcher(nn.Module):
    """Hungarian matching of IFC: class probability and Dice of the dense clip volumes."""

    @configurable
    def __init__(self, *, cost_class: float, cost_dice: float):
        """
        Args:
            cost_class: weight of ``-p(c)`` (IFC: 1).
            cost_dice: weight of ``1 - DICE`` (IFC: its DICE_WEIGHT, 3).
        """
        super().__init__()
        if cost_class == 0 and cost_dice == 0:
            raise ValueError("IFCMatcher: cost_class and cost_dice cannot both be 0")
        self.cost_class = cost_class
        self.cost_dice = cost_dice

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {"cost_class": cfg.MODEL.VIS.CLASS_WEIGHT, "cost_dice": cfg.MODEL.VIS.DICE_WEIGHT}

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]
    ) -> Indices:
        """
        Args:
            outputs: ``pred_logits (B, N, K + 1)``, ``pred_masks (B, N, T, h, w)`` logits.
            targets: B dicts with ``labels (M,)`` and ``match_masks (M, T, h', w')``.

        Returns:
            B pairs ``(pred_idx, tgt_idx)`` of int64 CPU tensors of length min(N, M).
        """
        indices = []
        for b, target in enumerate(targets):
            tgt_masks = target["match_masks"]
            if tgt_masks.shape[0] == 0:
                indices.append(empty_match())
                continue
            pred_masks = resize_clip_masks(outputs["pred_masks"][b].float(), tgt_masks.shape[-2:])
            probs = class_probabilities(outputs["pred_logits"][b].float(), "softmax")
            cost = -self.cost_class * probs[:, target["labels"]] + self.cost_dice * (
                batch_dice_cost(pred_masks.flatten(1), tgt_masks.flatten(1).to(pred_masks))
            )
            cost = cost.cpu()
            if not torch.isfinite(cost).all():
                raise FloatingPointError(
                    f"IFCMatcher: non-finite matching cost for video {b} "
                    "(NaN or inf in pred_logits or pred_masks)"
                )
            indices.append(hungarian_match(cost))
        return indices

    def extra_repr(self) -> str:
        return f"cost_class={self.cost_class}, cost_dice={self.cost_dice}"
