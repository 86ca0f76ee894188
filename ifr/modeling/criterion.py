"""Training losses of IFR, Eq. (5)-(7): focal class loss, per-frame BCE + Dice mask losses
and the cross-frame mask losses, on every decoder output (deep supervision).

The criterion returns raw loss terms; their weights live in ``weight_dict`` (see
``build_weight_dict``) and the meta-architecture multiplies ``losses[k] * weight_dict[k]``.
"""

from typing import Dict, List, Tuple

import torch
import torch.distributed as dist
from detectron2.config import configurable
from detectron2.projects.point_rend.point_features import (
    get_uncertain_point_coords_with_randomness,
    point_sample,
)
from detectron2.utils import comm
from torch import nn

from ..layers.point_sampling import sample_frame_points
from .losses import dice_loss, sigmoid_ce_loss, sigmoid_focal_loss
from .matcher import VideoHungarianMatcher

CROSS_FRAME_LOSSES = ("loss_mask_cross", "loss_dice_cross")

Indices = List[Tuple[torch.Tensor, torch.Tensor]]


def build_weight_dict(
    class_weight: float, mask_weight: float, dice_weight: float, lambda_e: float, num_aux: int
) -> Dict[str, float]:
    """
    Weights of the loss terms of Eq. (5)-(7) for the final output and ``num_aux`` auxiliary
    outputs (keys suffixed ``_0`` .. ``_{num_aux-1}``).

    ``loss_mask_cross`` / ``loss_dice_cross`` get ``lambda_e * lambda_m`` /
    ``lambda_e * lambda_D``; with ``lambda_e == 0`` they are left out, as the criterion
    does not compute them then.
    """
    if lambda_e < 0:
        raise ValueError(f"build_weight_dict: lambda_e must be >= 0, got {lambda_e}")
    weights = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
    if lambda_e > 0:
        weights["loss_mask_cross"] = lambda_e * mask_weight
        weights["loss_dice_cross"] = lambda_e * dice_weight
    aux_weights = {f"{k}_{i}": v for i in range(num_aux) for k, v in weights.items()}
    return {**weights, **aux_weights}


def mask_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of mask logits for importance sampling: ``-|logit|``, highest at 0."""
    return -logits.abs()


def cross_frame_point_logits(
    mask_embeds: torch.Tensor, mask_features: torch.Tensor, point_coords: torch.Tensor
) -> torch.Tensor:
    """
    Cross-frame mask logits ``mask_embed(Q^{t1}) . mask_features_{t2}`` of Eq. (6)-(7) at the
    points where frame t2 is supervised.

    Args:
        mask_embeds: (M, T, C) mask embedding of each instance's frame-level query per frame.
        mask_features: (T, C, h, w) mask features of the instances' video.
        point_coords: (M, T, P, 2) normalised (x, y) points of instance m in frame t2.

    Returns:
        (M, T, T, P): entry [m, t1, t2, p] is the logit of the query of frame t1 for frame
        t2 at point ``point_coords[m, t2, p]``. The diagonal t1 == t2 is each frame's own
        mask.
    """
    num_instances, num_frames, num_points = point_coords.shape[:3]
    # The (M, T1, T2, h, w) logit maps are cheaper than sampling the C-channel features at
    # every point (C * P > T * h * w at training sizes), and sampling is linear, so
    # sample(embed . features) == embed . sample(features).
    logit_maps = torch.einsum("mac,bchw->mbahw", mask_embeds, mask_features)
    logit_maps = logit_maps.flatten(0, 1)  # (M * T2, T1, h, w)
    point_logits = point_sample(logit_maps, point_coords.flatten(0, 1), align_corners=False)
    point_logits = point_logits.view(num_instances, num_frames, num_frames, num_points)
    return point_logits.transpose(1, 2)  # (M, T1, T2, P)


def off_diagonal_frame_pairs(pair_values: torch.Tensor) -> torch.Tensor:
    """(M, T, T, P) values of frame pairs (t1, t2) -> (M * T * (T - 1), P), pairs t1 != t2."""
    num_frames = pair_values.shape[1]
    off_diagonal = ~torch.eye(num_frames, dtype=torch.bool, device=pair_values.device)
    return pair_values[:, off_diagonal].flatten(0, 1)


class VideoSetCriterion(nn.Module):
    """
    Eq. (5)-(7) on matched queries. Returns (unweighted):

    - ``loss_ce``: focal loss over all queries and classes; unmatched queries have all-zero
      targets.
    - ``loss_mask``, ``loss_dice``: per frame t1, the mask of frame t1 from Q^{t1} against
      the ground truth of t1; summed over frames and matched instances.
    - ``loss_mask_cross``, ``loss_dice_cross`` (only if ``lambda_e > 0``): for every ordered
      pair t1 != t2, the mask ``mask_embed(Q^{t1}) . mask_features_{t2}`` against the ground
      truth of t2; summed over pairs and matched instances. The lambda_e factor is in
      ``weight_dict``.

    Sums are divided by the number of ground-truth instances in the batch, averaged over
    processes. A frame where an instance is absent has an all-zero ground-truth mask and is
    supervised as such (as Mask2Former-VIS). Auxiliary outputs give the same keys with the
    suffix ``_{i}``.
    """

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: Dict[str, float],
        lambda_e: float,
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        deep_supervision: bool = True,
    ):
        """
        Args:
            num_classes: K.
            matcher: returns per video ``(pred_idx, tgt_idx)`` (``VideoHungarianMatcher``).
            weight_dict: loss weights (``build_weight_dict``); must contain the cross-frame
                keys if ``lambda_e > 0``.
            lambda_e: weight of the cross-frame terms; 0 skips computing them.
            num_points: points sampled per frame mask.
            oversample_ratio, importance_sample_ratio: of the uncertainty-based point
                sampling (PointRend / Mask2Former).
            focal_alpha, focal_gamma: of the focal class loss.
            deep_supervision: also supervise ``outputs["aux_outputs"]``.
        """
        super().__init__()
        if lambda_e < 0:
            raise ValueError(f"VideoSetCriterion: lambda_e must be >= 0, got {lambda_e}")
        missing = [k for k in CROSS_FRAME_LOSSES if lambda_e > 0 and k not in weight_dict]
        if missing:
            raise ValueError(
                f"VideoSetCriterion: lambda_e={lambda_e} but weight_dict has no {missing}; "
                "build it with build_weight_dict(..., lambda_e, ...)"
            )
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.lambda_e = lambda_e
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.deep_supervision = deep_supervision

    @classmethod
    def from_config(cls, cfg) -> dict:
        ifr = cfg.MODEL.IFR
        # The decoder's auxiliary outputs: the initial queries and every layer but the last.
        num_aux = ifr.DEC_LAYERS if ifr.DEEP_SUPERVISION else 0
        return {
            "num_classes": ifr.NUM_CLASSES,
            "matcher": VideoHungarianMatcher(cfg),
            "weight_dict": build_weight_dict(
                ifr.CLASS_WEIGHT, ifr.MASK_WEIGHT, ifr.DICE_WEIGHT, ifr.LAMBDA_E, num_aux
            ),
            "lambda_e": ifr.LAMBDA_E,
            "num_points": ifr.TRAIN_NUM_POINTS,
            "oversample_ratio": ifr.OVERSAMPLE_RATIO,
            "importance_sample_ratio": ifr.IMPORTANCE_SAMPLE_RATIO,
            "focal_alpha": ifr.FOCAL_ALPHA,
            "focal_gamma": ifr.FOCAL_GAMMA,
            "deep_supervision": ifr.DEEP_SUPERVISION,
        }

    def forward(
        self, outputs: Dict[str, object], targets: List[Dict[str, torch.Tensor]]
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            outputs: ``pred_logits (B, N, K)``, ``pred_masks (B, N, T, h, w)`` logits,
                ``pred_mask_embeds (B, N, T, C)``, ``mask_features (B, T, C, h, w)`` and, with
                deep supervision, ``aux_outputs``: a list of dicts with the same keys.
            targets: B dicts with ``labels (M,) int64`` and ``masks (M, T, H, W) float``
                (zero where the instance is absent), H = 4h and W = 4w.

        Returns:
            dict of scalar losses, unweighted.
        """
        self._check_outputs(outputs, len(targets), "outputs")
        num_frames = outputs["pred_masks"].shape[2]
        for b, target in enumerate(targets):
            _check_target(target, b, num_frames, self.num_classes)
        num_masks = self._num_masks_across_processes(targets, outputs["pred_logits"].device)
        losses = self._losses_of_output(outputs, targets, num_masks)
        if self.deep_supervision:
            for i, aux_outputs in enumerate(outputs.get("aux_outputs", [])):
                self._check_outputs(aux_outputs, len(targets), f"aux_outputs[{i}]")
                aux_losses = self._losses_of_output(aux_outputs, targets, num_masks)
                losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return losses

    def _losses_of_output(
        self,
        outputs: Dict[str, torch.Tensor],
        targets: List[Dict[str, torch.Tensor]],
        num_masks: float,
    ) -> Dict[str, torch.Tensor]:
        indices = self.matcher(outputs, targets)
        losses = {"loss_ce": self.loss_classes(outputs["pred_logits"], targets, indices, num_masks)}
        losses.update(self.loss_masks(outputs, targets, indices, num_masks))
        return losses

    def loss_classes(
        self,
        pred_logits: torch.Tensor,
        targets: List[Dict[str, torch.Tensor]],
        indices: Indices,
        num_masks: float,
    ) -> torch.Tensor:
        """Eq. (5) L_cls. pred_logits: (B, N, K); matched queries get their one-hot class."""
        onehot = torch.zeros_like(pred_logits)
        batch_idx, query_idx = _matched_query_index(indices)
        labels = torch.cat([t["labels"][tgt] for t, (_, tgt) in zip(targets, indices)])
        onehot[
            batch_idx.to(onehot.device), query_idx.to(onehot.device), labels.to(onehot.device)
        ] = 1
        return sigmoid_focal_loss(
            pred_logits, onehot, num_masks, self.focal_alpha, self.focal_gamma
        )

    def loss_masks(
        self,
        outputs: Dict[str, torch.Tensor],
        targets: List[Dict[str, torch.Tensor]],
        indices: Indices,
        num_masks: float,
    ) -> Dict[str, torch.Tensor]:
        """Eq. (6)-(7): per-frame BCE and Dice, and with lambda_e > 0 the cross-frame terms."""
        pred_masks = outputs["pred_masks"]
        batch_idx, query_idx = _matched_query_index(indices)
        batch_idx, query_idx = batch_idx.to(pred_masks.device), query_idx.to(pred_masks.device)
        if len(batch_idx) == 0:
            return self._zero_mask_losses(outputs)

        src_masks = pred_masks[batch_idx, query_idx]  # (M, T, h, w)
        tgt_masks = torch.cat([t["masks"][tgt] for t, (_, tgt) in zip(targets, indices)])
        tgt_masks = tgt_masks.to(src_masks)  # (M, T, H, W)
        num_frames = src_masks.shape[1]

        point_coords = self._sample_uncertain_points(src_masks)  # (M, T, P, 2)
        point_labels = sample_frame_points(tgt_masks, point_coords)  # (M, T, P)
        point_logits = sample_frame_points(src_masks, point_coords)
        frame_logits, frame_labels = point_logits.flatten(0, 1), point_labels.flatten(0, 1)
        losses = {
            "loss_mask": sigmoid_ce_loss(frame_logits, frame_labels, num_masks),  # Eq. (6), t1
            "loss_dice": dice_loss(frame_logits, frame_labels, num_masks),  # Eq. (7), t1
        }
        if self.lambda_e > 0:  # the lambda_e sums over t2 != t1 of Eq. (6)-(7)
            cross_logits = self._cross_frame_logits(outputs, batch_idx, query_idx, point_coords)
            # The query of frame t1 predicting frame t2 is compared with the truth of t2.
            cross_labels = point_labels[:, None].expand(-1, num_frames, -1, -1)  # (M, T1, T2, P)
            cross_logits = off_diagonal_frame_pairs(cross_logits)
            cross_labels = off_diagonal_frame_pairs(cross_labels)
            losses["loss_mask_cross"] = sigmoid_ce_loss(cross_logits, cross_labels, num_masks)
            losses["loss_dice_cross"] = dice_loss(cross_logits, cross_labels, num_masks)
        return losses

    def _sample_uncertain_points(self, src_masks: torch.Tensor) -> torch.Tensor:
        """src_masks: (M, T, h, w) logits -> (M, T, P, 2) points, chosen per frame mask."""
        num_instances, num_frames = src_masks.shape[:2]
        with torch.no_grad():
            point_coords = get_uncertain_point_coords_with_randomness(
                src_masks.flatten(0, 1)[:, None],
                mask_uncertainty,
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
            )
        return point_coords.view(num_instances, num_frames, self.num_points, 2)

    def _cross_frame_logits(
        self,
        outputs: Dict[str, torch.Tensor],
        batch_idx: torch.Tensor,
        query_idx: torch.Tensor,
        point_coords: torch.Tensor,
    ) -> torch.Tensor:
        """Cross-frame logits (M, T1, T2, P) of the matched queries, one video at a time."""
        mask_embeds, mask_features = outputs["pred_mask_embeds"], outputs["mask_features"]
        logits_per_video = []
        for b in batch_idx.unique(sorted=True).tolist():
            in_video = batch_idx == b
            logits_per_video.append(
                cross_frame_point_logits(
                    mask_embeds[b, query_idx[in_video]],
                    mask_features[b].to(mask_embeds),
                    point_coords[in_video],
                )
            )
        # _matched_query_index lists videos in order, so this keeps the row order.
        return torch.cat(logits_per_video)

    def _zero_mask_losses(self, outputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """No instance in the batch: zero losses that keep every mask input in the graph."""
        zero = outputs["pred_masks"].sum() * 0.0
        losses = {"loss_mask": zero, "loss_dice": zero.clone()}
        if self.lambda_e > 0:
            cross_zero = (outputs["pred_mask_embeds"].sum() + outputs["mask_features"].sum()) * 0.0
            losses["loss_mask_cross"] = cross_zero
            losses["loss_dice_cross"] = cross_zero.clone()
        return losses

    @staticmethod
    def _num_masks_across_processes(targets: List[Dict[str, torch.Tensor]], device) -> float:
        """Ground-truth instances in the batch, averaged over processes, at least 1."""
        num_masks = torch.as_tensor(
            [float(sum(len(t["labels"]) for t in targets))], dtype=torch.float, device=device
        )
        if comm.get_world_size() > 1:
            dist.all_reduce(num_masks)
        return torch.clamp(num_masks / comm.get_world_size(), min=1).item()

    def _check_outputs(self, outputs: Dict[str, torch.Tensor], batch_size: int, where: str) -> None:
        required = ["pred_logits", "pred_masks"]
        if self.lambda_e > 0:
            required += ["pred_mask_embeds", "mask_features"]
        missing = [k for k in required if k not in outputs]
        if missing:
            raise KeyError(f"VideoSetCriterion: {where} lacks {missing}")
        num_videos, _, num_classes = outputs["pred_logits"].shape
        if num_classes != self.num_classes:
            raise ValueError(
                f"VideoSetCriterion: {where}['pred_logits'] has {num_classes} classes, "
                f"expected {self.num_classes}"
            )
        if num_videos != batch_size:
            raise ValueError(
                f"VideoSetCriterion: {batch_size} targets for {num_videos} videos in {where}"
            )


def _check_target(
    target: Dict[str, torch.Tensor], video: int, num_frames: int, num_classes: int
) -> None:
    labels, masks = target["labels"], target["masks"]
    if masks.dim() != 4 or masks.shape[0] != labels.shape[0] or masks.shape[1] != num_frames:
        raise ValueError(
            f"VideoSetCriterion: targets[{video}]['masks'] has shape {tuple(masks.shape)}, "
            f"expected ({labels.shape[0]}, {num_frames}, H, W)"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"VideoSetCriterion: targets[{video}]['labels'] has classes outside "
            f"[0, {num_classes}): {labels.tolist()}"
        )


def _matched_query_index(indices: Indices) -> Tuple[torch.Tensor, torch.Tensor]:
    """(batch_idx, query_idx) of all matched queries, video by video, as int64 tensors."""
    batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
    query_idx = torch.cat([src for src, _ in indices])
    return batch_idx, query_idx
