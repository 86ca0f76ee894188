"""Mask2Former-VIS's criterion: softmax cross-entropy over K classes + "no-object", with
the no-object class weighted by ``eos_coef`` (``MODEL.M2F_VIS.NO_OBJECT_WEIGHT``, 0.1),
on top of the shared set criterion (matching, per-frame BCE + Dice, deep supervision)."""

from typing import Optional

import torch
from detectron2.config import configurable
from torch import nn

from ...layers.classification import configured_class_activation
from .base import (
    VideoSetCriterion,
    class_mask_dice_weight_dict,
    num_masked_decoder_aux,
    point_set_criterion_args,
)
from .class_losses import NoObjectClassLoss, point_set_class_loss


class VideoMaskFormerCriterion(VideoSetCriterion):
    """
    Returns (unweighted) ``loss_ce``: the class-weighted mean cross-entropy over all
    (video, query) pairs, unmatched queries having the no-object class K as target
    (``NoObjectClassLoss``; ``FocalClassLoss`` with ``MODEL.VIS.CLASS_LOSS focal``); and
    ``loss_mask``, ``loss_dice`` as ``VideoSetCriterion``.

    Mask2Former's checkpoints hold the no-object weights as ``criterion.empty_weight``;
    here they are a buffer not saved in checkpoints (``NoObjectClassLoss``), and
    ``ifr.checkpoint`` drops that key on load.
    """

    # The config key of ``eos_coef``, named when it is out of [0, 1].
    no_object_weight_key = "MODEL.M2F_VIS.NO_OBJECT_WEIGHT"

    @configurable
    def __init__(
        self,
        *,
        eos_coef: float = 0.1,
        class_loss: Optional[nn.Module] = None,
        **set_criterion_args,
    ):
        """
        Args:
            eos_coef: weight of the no-object class in the cross-entropy, in [0, 1]; used
                when ``class_loss`` is None.
            class_loss: the class loss; None: ``NoObjectClassLoss(K, eos_coef)``.
            set_criterion_args: the other keyword arguments of ``VideoSetCriterion``.
        """
        if class_loss is None:
            num_classes = set_criterion_args["num_classes"]
            class_loss = NoObjectClassLoss(num_classes, eos_coef, self.no_object_weight_key)
        super().__init__(class_loss=class_loss, **set_criterion_args)

    @classmethod
    def from_config(cls, cfg) -> dict:
        activation = configured_class_activation(cfg, "softmax")
        return {
            **point_set_criterion_args(cfg, class_activation=activation),
            "weight_dict": class_mask_dice_weight_dict(
                cfg.MODEL.VIS, num_masked_decoder_aux(cfg.MODEL.VIS)
            ),
            "class_loss": point_set_class_loss(cfg, activation),
        }

    @property
    def empty_weight(self) -> torch.Tensor:
        """(K + 1,) weights of the cross-entropy's classes (``NoObjectClassLoss``)."""
        return self.class_loss.empty_weight
