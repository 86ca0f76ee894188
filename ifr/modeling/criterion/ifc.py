"""IFC's matcher and criterion (its ``HungarianMatcher`` and ``SetCriterion``), on the
shared set criterion (checks, normaliser, deep supervision) and Mask2Former-VIS's class
loss (softmax cross-entropy with a down-weighted "no object" class, identical in IFC).

What is IFC's own: the masks are compared densely, not at sampled points.
- Targets (``M, T, H, W`` at the padded input size) are resized bilinearly to
  ``ceil(H / s), ceil(W / s)`` (``MODEL.IFC.MASK_STRIDE`` for the losses,
  ``MATCH_STRIDE`` for matching); predictions (stride 8) are upsampled bilinearly to
  that size.
- Matching cost per (query, instance): ``-cost_class * p(c) + cost_dice * (1 - DICE)``,
  the Dice over the instance's whole clip volume; no BCE term (IFC maximises
  ``p(c) + w * DICE``, the same assignment).
- Losses: ``loss_mask`` the sigmoid focal loss (alpha 0.25, gamma 2) averaged over the
  pixels of each clip volume; ``loss_dice`` the Dice loss of each clip volume; both summed
  over matched instances and divided by the number of instances in the batch.
"""

import math
from typing import Dict, List, Tuple

import torch
from detectron2.config import configurable
from torch import nn
from torch.nn import functional as F

from ...config import FOCAL_ALPHA, FOCAL_GAMMA
from ...layers.classification import class_probabilities
from ...layers.matching_cost import batch_dice_cost, empty_match, hungarian_match
from ..losses import dice_loss, sigmoid_focal_loss
from .base import (
    Indices,
    class_mask_dice_weight_dict,
    matched_masks,
    matched_query_index,
    zero_losses,
)
from .m2f_vis import VideoMaskFormerCriterion

__all__ = ["IFCCriterion", "IFCMatcher", "resize_clip_masks"]


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


class IFCCriterion(VideoMaskFormerCriterion):
    """
    Returns (unweighted) ``loss_ce`` (as ``VideoMaskFormerCriterion``), ``loss_mask``
    (focal) and ``loss_dice`` on dense clip volumes; ``_{i}`` suffixes for the auxiliary
    outputs of the first L - 1 decoder layers.
    """

    no_object_weight_key = "MODEL.IFC.NO_OBJECT_WEIGHT"

    @configurable
    def __init__(
        self,
        *,
        mask_stride: int,
        match_stride: int,
        focal_alpha: float = FOCAL_ALPHA,
        focal_gamma: float = FOCAL_GAMMA,
        **criterion_args,
    ):
        """
        Args:
            mask_stride, match_stride: targets at 1/stride of the padded input for the
                losses and for matching.
            focal_alpha, focal_gamma: of the focal mask loss (IFC: 0.25, 2).
            criterion_args: ``num_classes``, ``matcher`` (an ``IFCMatcher``),
                ``weight_dict``, ``eos_coef`` and ``deep_supervision``, as
                ``VideoMaskFormerCriterion``.
        """
        for key, stride in (("MASK_STRIDE", mask_stride), ("MATCH_STRIDE", match_stride)):
            if stride < 1:
                raise ValueError(f"MODEL.IFC.{key} must be >= 1, got {stride}")
        # Not used: IFC's mask losses are dense (``loss_masks`` below), not point-sampled.
        super().__init__(
            num_points=0, oversample_ratio=0.0, importance_sample_ratio=0.0, **criterion_args
        )
        self.mask_stride = mask_stride
        self.match_stride = match_stride
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @classmethod
    def from_config(cls, cfg) -> dict:
        vis, ifc = cfg.MODEL.VIS, cfg.MODEL.IFC
        # Auxiliary outputs: every decoder layer but the last (IFC has no prediction from
        # the initial queries).
        num_aux = vis.DEC_LAYERS - 1 if vis.DEEP_SUPERVISION else 0
        return {
            "num_classes": vis.NUM_CLASSES,
            "matcher": IFCMatcher(cfg),
            "weight_dict": class_mask_dice_weight_dict(vis, num_aux),
            "eos_coef": ifc.NO_OBJECT_WEIGHT,
            "mask_stride": ifc.MASK_STRIDE,
            "match_stride": ifc.MATCH_STRIDE,
            "deep_supervision": vis.DEEP_SUPERVISION,
        }

    def forward(
        self, outputs: Dict[str, object], targets: List[Dict[str, torch.Tensor]]
    ) -> Dict[str, torch.Tensor]:
        """As ``VideoSetCriterion.forward``; targets' ``masks (M, T, H, W)`` are at the
        padded input size and are resized here once for every output."""
        return super().forward(outputs, [self._resize_target(t) for t in targets])

    def _resize_target(self, target: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        masks = target["masks"].float()
        if masks.dim() != 4:
            raise ValueError(
                f"IFCCriterion: target masks must be (M, T, H, W), got {tuple(masks.shape)}"
            )
        padded = tuple(masks.shape[-2:])
        return {
            **target,
            "masks": resize_clip_masks(masks, strided_size(padded, self.mask_stride)),
            "match_masks": resize_clip_masks(masks, strided_size(padded, self.match_stride)),
        }

    def loss_masks(
        self,
        outputs: Dict[str, torch.Tensor],
        targets: List[Dict[str, torch.Tensor]],
        indices: Indices,
        num_masks: float,
    ) -> Dict[str, torch.Tensor]:
        """Focal and Dice losses of the matched queries' clip volumes (dense)."""
        pred_masks = outputs["pred_masks"]
        batch_idx, query_idx = matched_query_index(indices, pred_masks.device)
        if len(batch_idx) == 0:
            return zero_losses(pred_masks, ("loss_mask", "loss_dice"))
        src_masks = pred_masks[batch_idx, query_idx]
        tgt_masks = matched_masks(targets, indices)
        src_masks = resize_clip_masks(src_masks.float(), tgt_masks.shape[-2:]).flatten(1)
        tgt_masks = tgt_masks.to(src_masks).flatten(1)
        num_pixels = src_masks.shape[1]
        return {
            # Mean over a volume's pixels, summed over instances, / num_masks.
            "loss_mask": sigmoid_focal_loss(
                src_masks, tgt_masks, num_masks * num_pixels, self.focal_alpha, self.focal_gamma
            ),
            "loss_dice": dice_loss(src_masks, tgt_masks, num_masks),
        }

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, mask_stride={self.mask_stride}, "
            f"match_stride={self.match_stride}"
        )
