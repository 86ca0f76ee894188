"""VisTR's instance-sequence matching and losses (Wang et al., CVPR 2021, Sec. 3.2).

A prediction is an instance *sequence*: slot i of every frame (``pred_*[:, i, t]``). The
matcher assigns the n sequences of a video to its M ground-truth instances by Hungarian
matching on ``ifr.layers.matching_cost.sequence_matching_cost`` (class, box L1, GIoU and,
when weighted, mask terms). The losses then supervise, for each matched pair, the frames
where the instance is present: class (softmax cross-entropy, every other slot and frame
has "no object" as target), box L1 and GIoU, and mask focal + Dice at the target's
resolution. As VisTR (and DETR), sums are divided by the number of (instance, frame)
entries of the batch, absent frames included (``num_boxes``), and the auxiliary decoder
layers get the class and box losses only.

Targets (``VisTR.prepare_targets``): ``labels (M,)``, ``masks (M, T, H, W)`` at the
padded size, ``boxes (M, T, 4)`` normalised (cx, cy, w, h) tight boxes of the masks, and
``valid (M, T)`` bool (instance present in the frame).
"""

from typing import Dict, List

import torch
from detectron2.config import configurable
from torch import nn
from torch.nn import functional as F
from torchvision.ops import box_convert, generalized_box_iou_loss

from ...layers.matching_cost import Indices
from ..losses import dice_loss, sigmoid_focal_loss
from ..matcher.vistr import VisTRSequenceMatcher
from .base import (
    aux_weight_dict,
    mean_count_across_processes,
    no_object_class_weight,
    no_object_cross_entropy,
    zero_losses,
)

BOX_LOSSES = ("loss_ce", "loss_bbox", "loss_giou")  # also given for auxiliary layers


class VisTRCriterion(nn.Module):
    """Returns (unweighted) ``loss_ce``, ``loss_bbox``, ``loss_giou``, ``loss_mask`` (focal),
    ``loss_dice`` and, with deep supervision, ``loss_ce_{i}``, ``loss_bbox_{i}``,
    ``loss_giou_{i}`` for the auxiliary decoder layers."""

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: Dict[str, float],
        eos_coef: float,
        deep_supervision: bool = True,
    ):
        super().__init__()
        empty_weight = no_object_class_weight(num_classes, eos_coef, "MODEL.VISTR.NO_OBJECT_WEIGHT")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.deep_supervision = deep_supervision
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        vistr = cfg.MODEL.VISTR
        weights = {
            "loss_ce": vistr.CLASS_WEIGHT,
            "loss_bbox": vistr.BBOX_WEIGHT,
            "loss_giou": vistr.GIOU_WEIGHT,
            "loss_mask": vistr.MASK_WEIGHT,
            "loss_dice": vistr.DICE_WEIGHT,
        }
        # The auxiliary decoder layers get the class and box losses only.
        num_aux = vistr.DEC_LAYERS - 1 if vistr.DEEP_SUPERVISION else 0
        aux_weights = aux_weight_dict({k: weights[k] for k in BOX_LOSSES}, num_aux)
        return {
            "num_classes": cfg.MODEL.VIS.NUM_CLASSES,
            "matcher": VisTRSequenceMatcher(cfg),
            "weight_dict": {**weights, **aux_weights},
            "eos_coef": vistr.NO_OBJECT_WEIGHT,
            "deep_supervision": vistr.DEEP_SUPERVISION,
        }

    def forward(self, outputs: Dict, targets: List[Dict]) -> Dict[str, torch.Tensor]:
        """outputs: the decoder's (``VisTRTransformerDecoder``); targets: B dicts (module
        docstring). Returns a dict of scalar losses, unweighted."""
        num_frames = outputs["pred_logits"].shape[2]
        for b, target in enumerate(targets):
            self._check_target(target, b, num_frames)
        num_boxes = self._num_boxes_across_processes(targets, outputs["pred_logits"].device)
        indices = self.matcher(outputs, targets)
        losses = self._class_and_box_losses(outputs, targets, indices, num_boxes)
        losses.update(self._mask_losses(outputs, targets, indices, num_boxes))
        if self.deep_supervision:
            for i, aux in enumerate(outputs.get("aux_outputs", [])):
                aux_indices = self.matcher(aux, targets)
                aux_losses = self._class_and_box_losses(aux, targets, aux_indices, num_boxes)
                losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return losses

    def _class_and_box_losses(
        self, outputs: Dict, targets: List[Dict], indices: Indices, num_boxes: float
    ) -> Dict[str, torch.Tensor]:
        logits, pred_boxes = outputs["pred_logits"], outputs["pred_boxes"]
        batch_idx, slot_idx, frame_idx, tgt_labels, tgt_boxes, _ = matched_frames(
            targets, indices, logits.device
        )
        loss_ce = no_object_cross_entropy(
            logits, (batch_idx, slot_idx, frame_idx), tgt_labels, self.empty_weight
        )
        src_boxes = pred_boxes[batch_idx, slot_idx, frame_idx].float()
        if len(src_boxes) == 0:
            return {"loss_ce": loss_ce, **zero_losses(pred_boxes, ("loss_bbox", "loss_giou"))}
        loss_giou = generalized_box_iou_loss(
            box_convert(src_boxes, "cxcywh", "xyxy"),
            box_convert(tgt_boxes, "cxcywh", "xyxy"),
            reduction="sum",
        )
        return {
            "loss_ce": loss_ce,
            "loss_bbox": F.l1_loss(src_boxes, tgt_boxes, reduction="sum") / num_boxes,
            "loss_giou": loss_giou / num_boxes,
        }

    def _mask_losses(
        self, outputs: Dict, targets: List[Dict], indices: Indices, num_boxes: float
    ) -> Dict[str, torch.Tensor]:
        """Focal and Dice of the matched (slot, frame) masks, upsampled (bilinear) to the
        targets' size, on the frames where the instance is present."""
        pred_masks = outputs["pred_masks"]
        batch_idx, slot_idx, frame_idx, _, _, tgt_masks = matched_frames(
            targets, indices, pred_masks.device, with_masks=True
        )
        if len(batch_idx) == 0:
            return zero_losses(pred_masks, ("loss_mask", "loss_dice"))
        src = pred_masks[batch_idx, slot_idx, frame_idx][:, None].float()
        src = F.interpolate(src, size=tgt_masks.shape[-2:], mode="bilinear", align_corners=False)
        src, tgt = src.flatten(1), tgt_masks.flatten(1).to(src)
        return {
            # sum over pixels / (num_boxes * pixels) = per-mask mean, summed, / num_boxes
            "loss_mask": sigmoid_focal_loss(src, tgt, num_boxes * src.shape[1]),
            "loss_dice": dice_loss(src, tgt, num_boxes),
        }

    @staticmethod
    def _num_boxes_across_processes(targets: List[Dict], device) -> float:
        """(instance, frame) entries in the batch, averaged over processes, at least 1."""
        return mean_count_across_processes(float(sum(t["valid"].numel() for t in targets)), device)

    def _check_target(self, target: Dict, video: int, num_frames: int) -> None:
        labels, num = target["labels"], target["labels"].shape[0]
        for key in ("masks", "boxes", "valid"):
            if key not in target or tuple(target[key].shape[:2]) != (num, num_frames):
                shape = tuple(target[key].shape) if key in target else None
                raise ValueError(
                    f"VisTRCriterion: targets[{video}][{key!r}] has shape {shape}, expected "
                    f"({num}, {num_frames}, ...)"
                )
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"VisTRCriterion: targets[{video}]['labels'] has classes outside "
                f"[0, {self.num_classes}): {labels.tolist()}"
            )


def matched_frames(targets: List[Dict], indices: Indices, device, with_masks: bool = False):
    """Every (video, slot, frame) of a matched pair where the instance is present.

    Returns:
        batch_idx, slot_idx, frame_idx: (P,) int64; labels (P,) int64; boxes (P, 4);
        masks (P, H, W) (None unless ``with_masks``).
    """
    parts = {"b": [], "slot": [], "frame": [], "labels": [], "boxes": [], "masks": []}
    for b, (target, (slots, instances)) in enumerate(zip(targets, indices)):
        for slot, instance in zip(slots.tolist(), instances.tolist()):
            frames = torch.nonzero(target["valid"][instance], as_tuple=False)[:, 0]
            parts["b"].append(torch.full_like(frames, b))
            parts["slot"].append(torch.full_like(frames, slot))
            parts["frame"].append(frames)
            parts["labels"].append(target["labels"][instance].expand(len(frames)))
            parts["boxes"].append(target["boxes"][instance][frames])
            if with_masks:
                parts["masks"].append(target["masks"][instance][frames])
    if not parts["b"]:
        empty = torch.empty(0, dtype=torch.int64, device=device)
        return empty, empty, empty, empty, torch.empty(0, 4, device=device), None
    index = [torch.cat(parts[k]).to(device) for k in ("b", "slot", "frame", "labels")]
    boxes = torch.cat(parts["boxes"]).float().to(device)
    masks = torch.cat(parts["masks"]).to(device) if with_masks else None
    return (*index, boxes, masks)
