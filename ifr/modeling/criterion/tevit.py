"""TeViT's matcher and losses (its ``TeViTHungarianAssigner`` and the per-stage losses of
``TeViTRoIHead``), every stage supervised with the same weights.

Shape shorthand: B clips, N queries, T frames, K classes, M ground-truth instances of a
clip, P matched (query, frame) pairs where the instance is present.

- Targets: an instance's box in a frame is the box of its mask (xyxy / padded size); a
  frame where its mask is empty has no box and the instance is absent there.
- Matching, per clip (a query is one instance in every frame): cost per (query, instance)
  = mean over the frames where the instance is present of
  ``COST_CLASS * focal cost + COST_BBOX * L1(xyxy) + COST_GIOU * (-GIoU)``; the focal cost
  is mmdetection's ``FocalLossCost`` (alpha 0.25, gamma 2).
- Losses, normalised by P (averaged over processes): ``loss_ce`` the sigmoid focal loss of
  every (query, frame) (the matched instance's class where it is present, background
  elsewhere); ``loss_bbox`` the L1 and ``loss_giou`` the 1 - GIoU of the P boxes;
  ``loss_dice`` the Dice loss (mmdetection's, squared denominator, eps 1e-5) of the P
  28x28 masks predicted in the stage's (detached) boxes (read from the target class's
  channel when masks are class-specific) against the ground-truth masks RoIAligned
  (sampling ratio 0) into the same boxes clipped to the image, binarised at 0.5.
TeViT's mask loss is Dice only (weight 8), so there is no BCE mask term here.
"""

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou, masks_to_boxes, roi_align

from ...config import FOCAL_ALPHA, FOCAL_GAMMA
from ..losses import sigmoid_focal_loss
from ..matcher.tevit import TeViTMatcher
from .base import aux_weight_dict, mean_count_across_processes

__all__ = ["TeViTCriterion", "mask_dice_loss", "clip_boxes"]


def mask_dice_loss(logits: Tensor, targets: Tensor, eps: float = 1e-5) -> Tensor:
    """mmdetection's Dice loss per mask: ``1 - 2 sum(p t) / (sum(p^2) + sum(t^2) + 2 eps)``
    with p = sigmoid(logits); (R, ...) -> (R,)."""
    p, t = logits.sigmoid().flatten(1), targets.flatten(1).to(logits.dtype)
    numerator = 2 * (p * t).sum(1)
    return 1 - numerator / ((p * p).sum(1) + eps + (t * t).sum(1) + eps)


def clip_boxes(
    masks: Tensor, image_size: Optional[Tuple[int, int]] = None
) -> Tuple[Tensor, Tensor]:
    """(M, T, H, W) masks -> boxes (M, T, 4) xyxy / (w, h, w, h) of ``image_size`` (the
    clip's size before padding, as TeViT; default the masks' (H, W)) and present (M, T)
    bool (a non-empty mask); absent boxes are 0."""
    num, frames, height, width = masks.shape
    if image_size is not None:
        height, width = image_size
    flat = masks.flatten(0, 1) > 0.5
    present = flat.flatten(1).any(1)
    boxes = masks.new_zeros((num * frames, 4))
    if present.any():
        found = masks_to_boxes(flat[present].float())
        found[:, 2:] += 1  # inclusive pixel index -> exclusive edge
        boxes[present] = found / masks.new_tensor([width, height, width, height])
    return boxes.view(num, frames, 4), present.view(num, frames)


def box_scales(targets: List[Dict[str, Tensor]], like: Tensor) -> Tensor:
    """(B, 4) (w, h, w, h) each clip's boxes are normalised by: its ``image_size``, or the
    padded size of its masks."""
    sizes = [t.get("image_size", tuple(t["masks"].shape[-2:])) for t in targets]
    return like.new_tensor([[w, h, w, h] for h, w in sizes])


class TeViTCriterion(nn.Module):
    """TeViT's losses of every stage (see the module docstring); returns unweighted terms,
    the weights are in ``weight_dict`` (suffix ``_{i}`` for the earlier stages)."""

    def __init__(self, cfg):
        super().__init__()
        t = cfg.MODEL.TEVIT
        self.num_classes = cfg.MODEL.VIS.NUM_CLASSES
        self.matcher = TeViTMatcher(cfg)
        weights = {
            "loss_ce": t.CLASS_WEIGHT,
            "loss_bbox": t.BBOX_WEIGHT,
            "loss_giou": t.GIOU_WEIGHT,
            "loss_dice": t.DICE_WEIGHT,
        }
        self.weight_dict = aux_weight_dict(weights, t.NUM_STAGES - 1)

    def forward(
        self, outputs: Dict[str, object], targets: List[Dict[str, Tensor]]
    ) -> Dict[str, Tensor]:
        """
        Args:
            outputs: of ``TeViTSTQIHead`` in training (``pred_logits``, ``pred_boxes``,
                ``attn_feats``, ``stage``, ``aux_outputs``, ``roi_mask_logits``).
            targets: B dicts with ``labels (M,)``, ``masks (M, T, H, W)`` at the padded
                size and ``image_size`` (h, w) before padding, by which boxes are
                normalised (the padded size without it).
        """
        targets = [
            dict(t, **dict(zip(("boxes", "present"), clip_boxes(t["masks"], t.get("image_size")))))
            for t in targets
        ]
        num_pos = self._num_positives(targets, outputs["pred_logits"].device)
        losses = self._stage_losses(outputs, outputs, targets, num_pos)
        for aux in outputs.get("aux_outputs", []):
            stage_losses = self._stage_losses(aux, outputs, targets, num_pos)
            losses.update({f"{k}_{aux['stage']}": v for k, v in stage_losses.items()})
        return losses

    @staticmethod
    def _num_positives(targets: List[Dict[str, Tensor]], device) -> float:
        """(instance, frame) pairs present in the batch, averaged over processes, >= 1."""
        return mean_count_across_processes(
            float(sum(t["present"].sum().item() for t in targets)), device
        )

    def _stage_losses(
        self,
        stage: Dict[str, Tensor],
        outputs: Dict[str, object],
        targets: List[Dict[str, Tensor]],
        num_pos: float,
    ) -> Dict[str, Tensor]:
        logits, boxes = stage["pred_logits"], stage["pred_boxes"]  # (B, N, T, K), (B, N, T, 4)
        indices = self.matcher(stage, targets)
        class_targets = torch.zeros_like(logits)
        b_idx, q_idx, t_idx, tgt_boxes, tgt_masks, tgt_labels = [], [], [], [], [], []
        for b, ((queries, instances), target) in enumerate(zip(indices, targets)):
            present = target["present"][instances]  # (m, T)
            m_idx, frames = torch.nonzero(present, as_tuple=True)
            q = queries.to(logits.device)[m_idx]
            labels = target["labels"][instances][m_idx]
            class_targets[b, q, frames, labels] = 1.0
            b_idx.append(torch.full_like(q, b))
            q_idx.append(q)
            t_idx.append(frames)
            tgt_boxes.append(target["boxes"][instances][m_idx, frames])
            tgt_masks.append(target["masks"][instances][m_idx, frames])
            tgt_labels.append(labels)
        loss_ce = sigmoid_focal_loss(logits, class_targets, num_pos, FOCAL_ALPHA, FOCAL_GAMMA)
        b_idx, q_idx, t_idx = torch.cat(b_idx), torch.cat(q_idx), torch.cat(t_idx)
        if b_idx.numel() == 0:
            zero = boxes.sum() * 0.0 + stage["attn_feats"].sum() * 0.0
            return {
                "loss_ce": loss_ce,
                "loss_bbox": zero,
                "loss_giou": zero.clone(),
                "loss_dice": zero.clone(),
            }
        pred_boxes = boxes[b_idx, q_idx, t_idx]  # (P, 4)
        gt_boxes = torch.cat(tgt_boxes).to(pred_boxes)
        loss_bbox = (pred_boxes - gt_boxes).abs().sum() / num_pos
        giou = torch.diag(generalized_box_iou(pred_boxes, gt_boxes))
        loss_giou = (1 - giou).sum() / num_pos
        loss_dice = self._mask_loss(
            stage,
            outputs,
            (b_idx, q_idx, t_idx),
            torch.cat(tgt_labels),
            torch.cat(tgt_masks),
            num_pos,
            box_scales(targets, pred_boxes)[b_idx],
        )
        return {
            "loss_ce": loss_ce,
            "loss_bbox": loss_bbox,
            "loss_giou": loss_giou,
            "loss_dice": loss_dice,
        }

    @staticmethod
    def _mask_loss(
        stage,
        outputs,
        positives,
        labels: Tensor,
        gt_masks: Tensor,
        num_pos: float,
        scales: Optional[Tensor] = None,
    ) -> Tensor:
        """Dice of the P masks predicted in the detached boxes, each read from its target
        class's channel when masks are class-specific (as mmdetection's mask loss).

        positives: (batch, query, frame) indices, each (P,); labels (P,); gt_masks (P, H, W)
        at the padded size, to which the boxes are clipped for the targets (as
        mmdetection's ``mask_target``); scales (P, 4): the (w, h, w, h) the boxes are
        normalised by (default the padded size)."""
        b_idx, q_idx, t_idx = positives
        frames = stage["pred_logits"].shape[2]
        boxes = stage["pred_boxes"][b_idx, q_idx, t_idx].detach()
        queries = stage["attn_feats"][b_idx, q_idx, t_idx]
        logits = outputs["roi_mask_logits"](
            stage["stage"], b_idx * frames + t_idx, boxes, queries, labels
        )
        height, width = gt_masks.shape[-2:]
        padded = boxes.new_tensor([width, height, width, height])
        pixels = boxes * (padded if scales is None else scales.to(boxes))
        clipped = torch.min(pixels.clamp(min=0), padded)
        index = torch.arange(len(boxes), device=boxes.device)[:, None].to(boxes)
        with torch.no_grad():  # mmdetection's BitmapMasks.crop_and_resize: sampling ratio 0
            targets = (
                roi_align(
                    gt_masks[:, None].to(boxes),
                    torch.cat([index, clipped], dim=1),
                    logits.shape[-1],
                    1.0,
                    sampling_ratio=0,
                    aligned=True,
                )[:, 0]
                >= 0.5
            )
        return mask_dice_loss(logits, targets).sum() / num_pos
