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
    return aux_weight_dict(weights, num_aux)


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


class IFRCriterion(VideoSetCriterion):
    """
    Eq. (5)-(7) on matched queries. Returns (unweighted):

    - ``loss_ce``: focal loss over all queries and classes; unmatched queries have all-zero
      targets (``FocalClassLoss``; ``NoObjectClassLoss`` with ``MODEL.IFR.CLASS_LOSS
      softmax_ce``).
    - ``loss_mask``, ``loss_dice``: per frame t1, the mask of frame t1 from Q^{t1} against
      the ground truth of t1; summed over frames and matched instances.
    - ``loss_mask_cross``, ``loss_dice_cross`` (only if ``lambda_e > 0``): for every ordered
      pair t1 != t2, the mask ``mask_embed(Q^{t1}) . mask_features_{t2}`` against the ground
      truth of t2; summed over pairs and matched instances. The lambda_e factor is in
      ``weight_dict``.

    Normalisation, absent frames and deep supervision as ``VideoSetCriterion``.
    """

    @configurable
    def __init__(
        self,
        *,
        lambda_e: float,
        class_loss: Optional[nn.Module] = None,
        **set_criterion_args,
    ):
        """
        Args:
            lambda_e: weight of the cross-frame terms; 0 skips computing them.
            class_loss: L_cls; None: ``FocalClassLoss()`` (alpha 0.25, gamma 2).
            set_criterion_args: the other keyword arguments of ``VideoSetCriterion``;
                ``weight_dict`` (``build_weight_dict``) must contain the cross-frame keys
                if ``lambda_e > 0``.
        """
        super().__init__(class_loss=class_loss or FocalClassLoss(), **set_criterion_args)
        if lambda_e < 0:
            raise ValueError(f"IFRCriterion: lambda_e must be >= 0, got {lambda_e}")
        missing = [k for k in CROSS_FRAME_LOSSES if lambda_e > 0 and k not in self.weight_dict]
        if missing:
            raise ValueError(
                f"IFRCriterion: lambda_e={lambda_e} but weight_dict has no {missing}; "
                "build it with build_weight_dict(..., lambda_e, ...)"
            )
        self.lambda_e = lambda_e
        if lambda_e > 0:
            self.required_outputs = (*self.required_outputs, "pred_mask_embeds", "mask_features")

    @classmethod
    def from_config(cls, cfg) -> dict:
        ifr = cfg.MODEL.IFR
        num_aux = num_masked_decoder_aux(ifr)
        activation = configured_class_activation(cfg, "sigmoid")
        return {
            **point_set_criterion_args(cfg, class_activation=activation),
            "weight_dict": build_weight_dict(
                ifr.CLASS_WEIGHT, ifr.MASK_WEIGHT, ifr.DICE_WEIGHT, ifr.LAMBDA_E, num_aux
            ),
            "lambda_e": ifr.LAMBDA_E,
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
        """The lambda_e sums over t2 != t1 of Eq. (6)-(7) (none with lambda_e == 0)."""
        if self.lambda_e <= 0:
            return {}
        num_frames = point_labels.shape[1]
        cross_logits = self._cross_frame_logits(outputs, *matched, point_coords)
        # The query of frame t1 predicting frame t2 is compared with the truth of t2.
        cross_labels = point_labels[:, None].expand(-1, num_frames, -1, -1)  # (M, T1, T2, P)
        cross_logits = off_diagonal_frame_pairs(cross_logits)
        cross_labels = off_diagonal_frame_pairs(cross_labels)
        return {
            "loss_mask_cross": sigmoid_ce_loss(cross_logits, cross_labels, num_masks),
            "loss_dice_cross": dice_loss(cross_logits, cross_labels, num_masks),
        }

    def zero_extra_mask_losses(self, outputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if self.lambda_e <= 0:
            return {}
        cross_zero = (outputs["pred_mask_embeds"].sum() + outputs["mask_features"].sum()) * 0.0
        return {"loss_mask_cross": cross_zero, "loss_dice_cross": cross_zero.clone()}

    def _cross_frame_logits(
        self,
        outputs: Dict[str, torch.Tensor],
        batch_idx: torch.Tensor,
        query_idx: torch.Tensor,
        point_coords: torch.Tensor,
    ) -> torch.Tensor:
        """Cross-frame logits (M, T1, T2, P) of the matched queries, one video at a time.
        ``batch_idx`` must be ascending (``matched_query_index`` lists videos in order), so
        each video's rows are one contiguous run."""
        mask_embeds, mask_features = outputs["pred_mask_embeds"], outputs["mask_features"]
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
        return f"lambda_e={self.lambda_e}"
