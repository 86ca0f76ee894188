"""IFR's criterion, Eq. (5)-(7): the focal class loss and the cross-frame mask losses on
top of the shared set criterion (``ifr.modeling.criterion.base``)."""

from typing import Dict, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.projects.point_rend.point_features import point_sample
from torch import nn

from ...layers.classification import configured_class_activation
from ..losses import dice_loss, sigmoid_ce_loss
from .base import (
    VideoSetCriterion,
    aux_weight_dict,
    num_masked_decoder_aux,
    point_set_criterion_args,
)
from .class_losses import FocalClassLoss, point_set_class_loss

CROSS_FRAME_LOSSES = ("loss_mask_cross", "loss_dice_cross")
CLIP_MASK_LOSSES = ("loss_mask_clip", "loss_dice_clip")


def build_weight_dict(
    class_weight: float,
    mask_weight: float,
    dice_weight: float,
    lambda_e: float,
    num_aux: int,
    clip_mask_weight: float = 0.0,
) -> Dict[str, float]:
    """
    Weights of the loss terms of Eq. (5)-(7) for the final output and ``num_aux`` auxiliary
    outputs (keys suffixed ``_0`` .. ``_{num_aux-1}``).

    ``loss_mask_cross`` / ``loss_dice_cross`` get ``lambda_e * lambda_m`` /
    ``lambda_e * lambda_D``; with ``lambda_e == 0`` they are left out, as the criterion
    does not compute them then. ``loss_mask_clip`` / ``loss_dice_clip`` (the clip-level
    queries' masks, not in the paper) likewise get ``clip_mask_weight`` times
    ``lambda_m`` / ``lambda_D``, and only when it is > 0.
    """
    for name, value in (("lambda_e", lambda_e), ("clip_mask_weight", clip_mask_weight)):
        if value < 0:
            raise ValueError(f"build_weight_dict: {name} must be >= 0, got {value}")
    weights = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
    if lambda_e > 0:
        weights["loss_mask_cross"] = lambda_e * mask_weight
        weights["loss_dice_cross"] = lambda_e * dice_weight
    if clip_mask_weight > 0:
        weights["loss_mask_clip"] = clip_mask_weight * mask_weight
        weights["loss_dice_clip"] = clip_mask_weight * dice_weight
    return aux_weight_dict(weights, num_aux)


def cross_frame_point_logits(
    mask_embeds: torch.Tensor, mask_features: torch.Tensor, point_coords: torch.Tensor
) -> torch.Tensor:
    """
    Cross-frame mask logits ``mask_embed(Q^{t1}) . mask_features_{t2}`` of Eq. (6)-(7) at the
    points where frame t2 is supervised.

    Args:
        mask_embeds: (M, T1, C) mask embedding of each instance's frame-level query per
            frame (T1 = T), or (M, 1, C) of its clip-level query.
        mask_features: (T, C, h, w) mask features of the instances' video.
        point_coords: (M, T, P, 2) normalised (x, y) points of instance m in frame t2.

    Returns:
        (M, T1, T, P): entry [m, t1, t2, p] is the logit of the query of frame t1 for frame
        t2 at point ``point_coords[m, t2, p]``. The diagonal t1 == t2 is each frame's own
        mask.
    """
    num_instances, num_frames, num_points = point_coords.shape[:3]
    num_query_frames = mask_embeds.shape[1]
    # The (M, T1, T2, h, w) logit maps are cheaper than sampling the C-channel features at
    # every point (C * P > T * h * w at training sizes), and sampling is linear, so
    # sample(embed . features) == embed . sample(features).
    logit_maps = torch.einsum("mac,bchw->mbahw", mask_embeds, mask_features)
    logit_maps = logit_maps.flatten(0, 1)  # (M * T2, T1, h, w)
    point_logits = point_sample(logit_maps, point_coords.flatten(0, 1), align_corners=False)
    point_logits = point_logits.view(num_instances, num_frames, num_query_frames, num_points)
    return point_logits.transpose(1, 2)  # (M, T1, T2, P)


def off_diagonal_frame_pairs(pair_values: torch.Tensor) -> torch.Tensor:
    """(M, T, T, P) values of frame pairs (t1, t2) -> (M * T * (T - 1), P), pairs t1 != t2."""
    num_frames = pair_values.shape[1]
    off_diagonal = ~torch.eye(num_frames, dtype=torch.bool, device=pair_values.device)
    return pair_values[:, off_diagonal].flatten(0, 1)


class IFRCriterion(VideoSetCriterion):
    """
    Eq. (5)-(7) on matched queries. Returns (unweighted):

    - ``loss_ce``: focal loss over all queries and classes; unmatched queries have all-zero
      targets (``FocalClassLoss``; ``NoObjectClassLoss`` with ``MODEL.VIS.CLASS_LOSS
      softmax_ce``).
    - ``loss_mask``, ``loss_dice``: per frame t1, the mask of frame t1 from Q^{t1} against
      the ground truth of t1; summed over frames and matched instances.
    - ``loss_mask_cross``, ``loss_dice_cross`` (only if ``lambda_e > 0``): for every ordered
      pair t1 != t2, the mask ``mask_embed(Q^{t1}) . mask_features_{t2}`` against the ground
      truth of t2; summed over pairs and matched instances. The lambda_e factor is in
      ``weight_dict``.
    - ``loss_mask_clip``, ``loss_dice_clip`` (only if ``clip_mask_weight > 0``; not in the
      paper): per frame, the mask ``mask_embed(Q) . mask_features_t`` of the matched
      clip-level query Q against the ground truth of t, at the points of the per-frame
      terms.

    Normalisation, absent frames and deep supervision as ``VideoSetCriterion``.
    """

    @configurable
    def __init__(
        self,
        *,
        lambda_e: float,
        class_loss: Optional[nn.Module] = None,
        clip_mask_weight: float = 0.0,
        **set_criterion_args,
    ):
        """
        Args:
            lambda_e: weight of the cross-frame terms; 0 skips computing them.
            class_loss: L_cls; None: ``FocalClassLoss()`` (alpha 0.25, gamma 2).
            clip_mask_weight: > 0 computes the clip-level queries' mask terms (needs
                ``pred_clip_mask_embeds``); their weights are in ``weight_dict``.
            set_criterion_args: the other keyword arguments of ``VideoSetCriterion``;
                ``weight_dict`` (``build_weight_dict``) must contain the cross-frame keys
                if ``lambda_e > 0``.
        """
        super().__init__(class_loss=class_loss or FocalClassLoss(), **set_criterion_args)
        if lambda_e < 0:
            raise ValueError(f"IFRCriterion: lambda_e must be >= 0, got {lambda_e}")
        if clip_mask_weight < 0:
            raise ValueError(f"IFRCriterion: clip_mask_weight must be >= 0, got {clip_mask_weight}")
        for name, value, keys in (
            ("lambda_e", lambda_e, CROSS_FRAME_LOSSES),
            ("clip_mask_weight", clip_mask_weight, CLIP_MASK_LOSSES),
        ):
            missing = [k for k in keys if value > 0 and k not in self.weight_dict]
            if missing:
                raise ValueError(
                    f"IFRCriterion: {name}={value} but weight_dict has no {missing}; "
                    f"build it with build_weight_dict(..., {name}=...)"
                )
        self.lambda_e = lambda_e
        self.clip_mask_weight = clip_mask_weight
        if lambda_e > 0 or clip_mask_weight > 0:
            self.required_outputs = (*self.required_outputs, "pred_mask_embeds", "mask_features")
        if clip_mask_weight > 0:
            self.required_outputs = (*self.required_outputs, "pred_clip_mask_embeds")

    @classmethod
    def from_config(cls, cfg) -> dict:
        vis, ifr = cfg.MODEL.VIS, cfg.MODEL.IFR
        num_aux = num_masked_decoder_aux(vis)
        activation = configured_class_activation(cfg, "sigmoid")
        return {
            **point_set_criterion_args(cfg, class_activation=activation),
            "weight_dict": build_weight_dict(
                vis.CLASS_WEIGHT,
                vis.MASK_WEIGHT,
                vis.DICE_WEIGHT,
                ifr.LAMBDA_E,
                num_aux,
                clip_mask_weight=ifr.CLIP_MASK_WEIGHT,
            ),
            "lambda_e": ifr.LAMBDA_E,
            "clip_mask_weight": ifr.CLIP_MASK_WEIGHT,
            "class_loss": point_set_class_loss(cfg, activation),
        }

    def extra_mask_losses(
        self,
        outputs: Dict[str, torch.Tensor],
        matched: Tuple[torch.Tensor, torch.Tensor],
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        num_masks: float,
    ) -> Dict[str, torch.Tensor]:
        """The lambda_e sums over t2 != t1 of Eq. (6)-(7) (none with lambda_e == 0) and the
        clip-level queries' mask terms (none with clip_mask_weight == 0)."""
        losses = {}
        if self.lambda_e > 0:
            num_frames = point_labels.shape[1]
            cross_logits = self._matched_point_logits(
                outputs["pred_mask_embeds"], outputs["mask_features"], *matched, point_coords
            )
            # The query of frame t1 predicting frame t2 is compared with the truth of t2.
            cross_labels = point_labels[:, None].expand(-1, num_frames, -1, -1)  # (M, T1, T2, P)
            cross_logits = off_diagonal_frame_pairs(cross_logits)
            cross_labels = off_diagonal_frame_pairs(cross_labels)
            losses["loss_mask_cross"] = sigmoid_ce_loss(cross_logits, cross_labels, num_masks)
            losses["loss_dice_cross"] = dice_loss(cross_logits, cross_labels, num_masks)
        if self.clip_mask_weight > 0:
            clip_embeds = outputs["pred_clip_mask_embeds"][:, :, None]  # (B, N, 1, C)
            clip_logits = self._matched_point_logits(
                clip_embeds, outputs["mask_features"], *matched, point_coords
            )
            clip_logits, clip_labels = clip_logits[:, 0].flatten(0, 1), point_labels.flatten(0, 1)
            losses["loss_mask_clip"] = sigmoid_ce_loss(clip_logits, clip_labels, num_masks)
            losses["loss_dice_clip"] = dice_loss(clip_logits, clip_labels, num_masks)
        return losses

    def zero_extra_mask_losses(self, outputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        losses = {}
        if self.lambda_e > 0:
            zero = (outputs["pred_mask_embeds"].sum() + outputs["mask_features"].sum()) * 0.0
            losses.update(dict.fromkeys(CROSS_FRAME_LOSSES, zero))
        if self.clip_mask_weight > 0:
            zero = (outputs["pred_clip_mask_embeds"].sum() + outputs["mask_features"].sum()) * 0.0
            losses.update(dict.fromkeys(CLIP_MASK_LOSSES, zero))
        return {k: v.clone() for k, v in losses.items()}

    def _matched_point_logits(
        self,
        mask_embeds: torch.Tensor,
        mask_features: torch.Tensor,
        batch_idx: torch.Tensor,
        query_idx: torch.Tensor,
        point_coords: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (M, T1, T2, P) of the matched queries' embeddings ``mask_embeds``
        (B, N, T1, C) on every frame t2's ``mask_features`` (B, T2, C, h, w), at frame t2's
        points ``point_coords`` (M, T2, P, 2); one video
        at a time. ``batch_idx`` must be ascending (``matched_query_index`` lists videos in
        order), so each video's rows are one contiguous run."""
        if bool((batch_idx[1:] < batch_idx[:-1]).any()):
            raise ValueError("IFRCriterion: matched queries must be listed video by video")
        # One unbind and one index for all videos, then split: indexing mask_features[b]
        # per video costs a zero-filled gradient of the whole (B, T, C, h, w) tensor per video
        # in backward. The values are the same.
        features_per_video = mask_features.to(mask_embeds).unbind(0)
        rows_per_video = torch.bincount(batch_idx, minlength=len(features_per_video)).tolist()
        embeds_per_video = mask_embeds[batch_idx, query_idx].split(rows_per_video)
        coords_per_video = point_coords.split(rows_per_video)
        logits_per_video = [
            cross_frame_point_logits(embeds, features, coords)
            for embeds, features, coords, rows in zip(
                embeds_per_video, features_per_video, coords_per_video, rows_per_video
            )
            if rows > 0
        ]
        return torch.cat(logits_per_video)

    def extra_repr(self) -> str:
        return f"lambda_e={self.lambda_e}, clip_mask_weight={self.clip_mask_weight}"
