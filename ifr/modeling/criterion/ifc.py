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

from typing import Dict, List

import torch
from detectron2.config import configurable

from ...config import FOCAL_ALPHA, FOCAL_GAMMA
from ..losses import dice_loss, sigmoid_focal_loss
from ..matcher.ifc import IFCMatcher, resize_clip_masks, strided_size
from .base import (
    Indices,
    class_mask_dice_weight_dict,
    matched_masks,
    matched_query_index,
    zero_losses,
)
from .m2f_vis import VideoMaskFormerCriterion

__all__ = ["IFCCriterion"]


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
