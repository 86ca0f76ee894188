"""Mask2Former-VIS's criterion: softmax cross-entropy over K classes + "no-object", with
the no-object class weighted by ``eos_coef`` (``MODEL.M2F_VIS.NO_OBJECT_WEIGHT``, 0.1),
on top of the shared set criterion (matching, per-frame BCE + Dice, deep supervision)."""

from typing import Dict, List

import torch
from detectron2.config import configurable

from .base import (
    Indices,
    VideoSetCriterion,
    class_mask_dice_weight_dict,
    matched_labels,
    matched_query_index,
    no_object_class_weight,
    no_object_cross_entropy,
    num_masked_decoder_aux,
    point_set_criterion_args,
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

    # The config key of ``eos_coef``, named when it is out of [0, 1].
    no_object_weight_key = "MODEL.M2F_VIS.NO_OBJECT_WEIGHT"

    @configurable
    def __init__(self, *, eos_coef: float, **set_criterion_args):
        """
        Args:
            eos_coef: weight of the no-object class in the cross-entropy, in [0, 1].
            set_criterion_args: the keyword arguments of ``VideoSetCriterion``.
        """
        super().__init__(**set_criterion_args)
        empty_weight = no_object_class_weight(self.num_classes, eos_coef, self.no_object_weight_key)
        self.eos_coef = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {
            **point_set_criterion_args(cfg, class_activation="softmax"),
            "weight_dict": class_mask_dice_weight_dict(
                cfg.MODEL.IFR, num_masked_decoder_aux(cfg.MODEL.IFR)
            ),
            "eos_coef": cfg.MODEL.M2F_VIS.NO_OBJECT_WEIGHT,
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
