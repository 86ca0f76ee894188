"""Mask2Former-VIS's criterion: softmax cross-entropy over K classes + "no-object", with
the no-object class weighted by ``eos_coef`` (``MODEL.M2F_VIS.NO_OBJECT_WEIGHT``, 0.1),
on top of the shared set criterion (matching, per-frame BCE + Dice, deep supervision)."""

from typing import Dict, List

import torch
from detectron2.config import configurable

from ..matcher import VideoHungarianMatcher
from .base import (
    Indices,
    VideoSetCriterion,
    class_mask_dice_weight_dict,
    matched_labels,
    matched_query_index,
    no_object_class_weight,
    no_object_cross_entropy,
)


class VideoMaskFormerCriterion(VideoSetCriterion):
    """
    Returns (unweighted) ``loss_ce``: the class-weighted mean cross-entropy over all
    (video, query) pairs, unmatched queries having the no-object class K as target,
    i.e. ``sum_q w_{c_q} CE_q / sum_q w_{c_q}`` with ``w = empty_weight`` (1 for the K
    classes, ``eos_coef`` for no-object); and ``loss_mask``, ``loss_dice`` as
    ``VideoSetCriterion``.

    ``empty_weight`` is a buffer, as in Mask2Former, but not saved in checkpoints: it is
    a constant of the loss set by the config. Mask2Former's checkpoints hold it as
    ``criterion.empty_weight``; ``ifr.checkpoint`` drops that key on load.
    """

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        matcher: VideoHungarianMatcher,
        weight_dict: Dict[str, float],
        eos_coef: float,
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
        deep_supervision: bool = True,
    ):
        """
        Args:
            eos_coef: weight of the no-object class in the cross-entropy, in [0, 1].
            others: as ``VideoSetCriterion``.
        """
        super().__init__(
            num_classes=num_classes,
            matcher=matcher,
            weight_dict=weight_dict,
            num_points=num_points,
            oversample_ratio=oversample_ratio,
            importance_sample_ratio=importance_sample_ratio,
            deep_supervision=deep_supervision,
        )
        empty_weight = no_object_class_weight(
            num_classes, eos_coef, "MODEL.M2F_VIS.NO_OBJECT_WEIGHT"
        )
        self.eos_coef = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        ifr = cfg.MODEL.IFR
        # Auxiliary outputs: the initial queries and every layer but the last.
        num_aux = ifr.DEC_LAYERS if ifr.DEEP_SUPERVISION else 0
        return {
            "num_classes": ifr.NUM_CLASSES,
            "matcher": VideoHungarianMatcher(cfg, class_activation="softmax"),
            "weight_dict": class_mask_dice_weight_dict(ifr, num_aux),
            "eos_coef": cfg.MODEL.M2F_VIS.NO_OBJECT_WEIGHT,
            "num_points": ifr.TRAIN_NUM_POINTS,
            "oversample_ratio": ifr.OVERSAMPLE_RATIO,
            "importance_sample_ratio": ifr.IMPORTANCE_SAMPLE_RATIO,
            "deep_supervision": ifr.DEEP_SUPERVISION,
        }

    @property
    def num_logit_columns(self) -> int:
        return self.num_classes + 1

    def loss_classes(
        self,
        pred_logits: torch.Tensor,
        targets: List[Dict[str, torch.Tensor]],
        indices: Indices,
        num_masks: float,
    ) -> torch.Tensor:
        """pred_logits: (B, N, K + 1). ``num_masks`` is not used: the loss is a weighted
        mean over queries, as Mask2Former's."""
        device = pred_logits.device
        return no_object_cross_entropy(
            pred_logits,
            matched_query_index(indices, device),
            matched_labels(targets, indices).to(device),
            self.empty_weight,
        )

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, eos_coef={self.eos_coef}"
