"""TeViT's clip matching (its ``TeViTHungarianAssigner``): a query is one instance in every
frame; cost per (query, instance) = mean over the frames where the instance is present of
``COST_CLASS * focal cost + COST_BBOX * L1(xyxy) + COST_GIOU * (-GIoU)``, the focal cost
mmdetection's ``FocalLossCost``."""

from typing import Dict, List, Tuple

import torch
from detectron2.config import configurable
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou

from ...config import FOCAL_ALPHA, FOCAL_GAMMA
from ...layers.matching_cost import empty_match, hungarian_match
from ...layers.matching_cost import focal_class_cost as shared_focal_class_cost

__all__ = ["TeViTMatcher", "focal_class_cost"]


def focal_class_cost(logits: Tensor, labels: Tensor) -> Tensor:
    """mmdetection's ``FocalLossCost``: (Q, K) logits, (M,) labels -> (Q, M) cost
    ``pos - neg`` of the focal loss at the target class (its eps 1e-12)."""
    return shared_focal_class_cost(logits.sigmoid(), labels, FOCAL_ALPHA, FOCAL_GAMMA, eps=1e-12)


class TeViTMatcher(nn.Module):
    """TeViT's clip matching (see the module docstring)."""

    @configurable
    def __init__(self, *, cost_class: float, cost_bbox: float, cost_giou: float):
        super().__init__()
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou

    @classmethod
    def from_config(cls, cfg) -> dict:
        t = cfg.MODEL.TEVIT
        return {"cost_class": t.COST_CLASS, "cost_bbox": t.COST_BBOX, "cost_giou": t.COST_GIOU}

    def cost(
        self, logits: Tensor, boxes: Tensor, labels: Tensor, tgt_boxes: Tensor, present: Tensor
    ) -> Tensor:
        """logits (N, T, K), boxes (N, T, 4), labels (M,), tgt_boxes (M, T, 4), present
        (M, T) -> (N, M) cost, each frame's cost averaged over the present frames."""
        total = logits.new_zeros((logits.shape[0], labels.shape[0]))
        for t in range(logits.shape[1]):
            frame = (
                self.cost_class * focal_class_cost(logits[:, t], labels)
                + self.cost_bbox * torch.cdist(boxes[:, t], tgt_boxes[:, t], p=1)
                - self.cost_giou * generalized_box_iou(boxes[:, t], tgt_boxes[:, t])
            )
            total = total + frame * present[:, t].to(frame)[None]
        return total / present.sum(1).clamp(min=1).to(total)[None]

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]
    ) -> List[Tuple[Tensor, Tensor]]:
        """B pairs (query indices, instance indices) of int64 on the CPU."""
        indices = []
        for b, target in enumerate(targets):
            if target["labels"].numel() == 0:
                indices.append(empty_match())
                continue
            cost = self.cost(
                outputs["pred_logits"][b].float(),
                outputs["pred_boxes"][b].float(),
                target["labels"],
                target["boxes"],
                target["present"],
            ).cpu()
            if not torch.isfinite(cost).all():
                raise FloatingPointError(f"TeViTMatcher: non-finite matching cost for video {b}")
            indices.append(hungarian_match(cost))
        return indices
