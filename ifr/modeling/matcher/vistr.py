"""VisTR's instance-sequence matching (Wang et al., CVPR 2021, Sec. 3.2): the n sequences of
a video (slot i of every frame) to its M instances, by Hungarian matching on
``ifr.layers.matching_cost.sequence_matching_cost`` (class, box L1, IoU or GIoU and, when
weighted, mask terms at random points), averaged over all frames as the official code or
over the frames where the instance is present.

The official matcher builds the matched (query, target) pairs with ``tgt_valid_split[j]``,
the validity of the j-th *target* in the order of the assignment's rows, where it means
``tgt_valid_split[tgt_i[j]]``, the validity of the target matched to row j; the two differ
whenever the assignment permutes the targets. Here a matched pair's frames are those where
its own target is present (the intended form)."""

from typing import Dict, List

import torch
from detectron2.config import configurable
from torch import nn

from ...layers.classification import class_probabilities
from ...layers.matching_cost import (
    SEQUENCE_COST_FRAMES,
    SEQUENCE_COST_OVERLAPS,
    Indices,
    empty_match,
    hungarian_match,
    sequence_matching_cost,
)
from ...layers.point_sampling import sample_clip_points

__all__ = ["VisTRSequenceMatcher"]


class VisTRSequenceMatcher(nn.Module):
    """Hungarian matching of the n instance sequences of a video to its M instances."""

    @configurable
    def __init__(
        self,
        *,
        cost_class: float,
        cost_bbox: float,
        cost_giou: float,
        cost_mask: float = 0.0,
        cost_dice: float = 0.0,
        num_points: int = 12544,
        frames: str = "all",
        overlap: str = "iou",
    ):
        """
        Args:
            cost_class, cost_bbox, cost_giou, cost_mask, cost_dice: weights of the cost terms.
            num_points: points per frame sampled for the mask terms.
            frames: ``"all"`` or ``"present"``; overlap: ``"iou"`` or ``"giou"``
                (``sequence_matching_cost``).
        """
        super().__init__()
        for key, value, choices in (
            ("COST_FRAMES", frames, SEQUENCE_COST_FRAMES),
            ("COST_OVERLAP", overlap, SEQUENCE_COST_OVERLAPS),
        ):
            if value not in choices:
                raise ValueError(f"MODEL.VISTR.{key} must be one of {choices}, got {value!r}")
        self.frames, self.overlap = frames, overlap
        if num_points <= 0:
            raise ValueError(f"MODEL.VISTR.COST_NUM_POINTS must be positive, got {num_points}")
        self.weights = {
            "cost_class": cost_class,
            "cost_bbox": cost_bbox,
            "cost_giou": cost_giou,
            "cost_mask": cost_mask,
            "cost_dice": cost_dice,
        }
        self.num_points = num_points

    @classmethod
    def from_config(cls, cfg) -> dict:
        vistr = cfg.MODEL.VISTR
        return {
            "cost_class": vistr.COST_CLASS,
            "cost_bbox": vistr.COST_BBOX,
            "cost_giou": vistr.COST_GIOU,
            "cost_mask": vistr.COST_MASK,
            "cost_dice": vistr.COST_DICE,
            "num_points": vistr.COST_NUM_POINTS,
            "frames": vistr.COST_FRAMES,
            "overlap": vistr.COST_OVERLAP,
        }

    @property
    def uses_masks(self) -> bool:
        return bool(self.weights["cost_mask"] or self.weights["cost_dice"])

    @torch.no_grad()
    def forward(self, outputs: Dict[str, torch.Tensor], targets: List[Dict]) -> Indices:
        """
        Args:
            outputs: ``pred_logits (B, n, T, K + 1)``, ``pred_boxes (B, n, T, 4)`` and, for
                the mask terms, ``pred_masks (B, n, T, h, w)`` (auxiliary outputs have no
                masks: their matching uses class and boxes only).
            targets: B dicts (see the module docstring).
        Returns:
            B pairs (sequence index, instance index) of int64 tensors on the CPU.
        """
        use_masks = self.uses_masks and "pred_masks" in outputs
        indices = []
        for b, target in enumerate(targets):
            if target["labels"].numel() == 0:
                indices.append(empty_match())
                continue
            mask_points = self._mask_points(outputs["pred_masks"][b], target) if use_masks else {}
            weights = dict(self.weights)
            if not use_masks:
                weights.update(cost_mask=0.0, cost_dice=0.0)
            cost = sequence_matching_cost(
                class_probabilities(outputs["pred_logits"][b].float(), "softmax"),
                outputs["pred_boxes"][b],
                target["labels"],
                target["boxes"],
                target["valid"],
                **weights,
                frames=self.frames,
                overlap=self.overlap,
                **mask_points,
            ).cpu()
            if not torch.isfinite(cost).all():
                raise FloatingPointError(f"VisTRSequenceMatcher: non-finite cost for video {b}")
            indices.append(hungarian_match(cost))
        return indices

    def _mask_points(self, pred_masks: torch.Tensor, target: Dict) -> Dict[str, torch.Tensor]:
        """The same random points in every frame of predictions and targets."""
        coords = torch.rand(1, self.num_points, 2, device=pred_masks.device)
        return {
            "pred_mask_points": sample_clip_points(pred_masks, coords),
            "tgt_mask_points": sample_clip_points(target["masks"].to(pred_masks), coords),
        }
