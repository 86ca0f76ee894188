"""The two class losses of the point-set criteria, one per class activation:

- ``FocalClassLoss`` ("sigmoid", K columns): IFR's L_cls of Eq. (5);
- ``NoObjectClassLoss`` ("softmax", K + 1 columns): Mask2Former-VIS's cross-entropy with a
  "no-object" class weighted ``eos_coef``.

``IFRCriterion`` and ``VideoMaskFormerCriterion`` hold one each by default and take the
other with ``MODEL.VIS.CLASS_LOSS`` (``point_set_class_loss``).
"""

from typing import Dict, List

import torch
from torch import nn

from ...config import FOCAL_ALPHA, FOCAL_GAMMA
from ..losses import sigmoid_focal_loss
from .base import (
    Indices,
    matched_labels,
    matched_query_index,
    no_object_class_weight,
    no_object_cross_entropy,
)

# The config key of eos_coef when the class loss is built from the config.
NO_OBJECT_WEIGHT_KEY = "MODEL.M2F_VIS.NO_OBJECT_WEIGHT"


class FocalClassLoss(nn.Module):
    """Eq. (5) L_cls: sigmoid focal loss over every (query, class) pair, matched queries
    having their one-hot class as target and the others all zeros, divided by the number
    of ground-truth instances."""

    activation = "sigmoid"

    def __init__(self, alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA):
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma

    @staticmethod
    def num_columns(num_classes: int) -> int:
        return num_classes

    def forward(
        self,
        pred_logits: torch.Tensor,
        targets: List[Dict[str, torch.Tensor]],
        indices: Indices,
        num_masks: float,
    ) -> torch.Tensor:
        """pred_logits: (B, N, K) -> scalar."""
        onehot = torch.zeros_like(pred_logits)
        device = onehot.device
        batch_idx, query_idx = matched_query_index(indices, device)
        onehot[batch_idx, query_idx, matched_labels(targets, indices).to(device)] = 1
        return sigmoid_focal_loss(pred_logits, onehot, num_masks, self.alpha, self.gamma)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}"


class NoObjectClassLoss(nn.Module):
    """Softmax cross-entropy over K classes + "no-object", unmatched queries having
    no-object as target: ``sum_q w_{c_q} CE_q / sum_q w_{c_q}`` over all (video, query)
    pairs with ``w = empty_weight`` (1 for the K classes, ``eos_coef`` for no-object).

    ``empty_weight`` is a buffer, as in Mask2Former, but not saved in checkpoints: it is a
    constant of the loss set by the config.
    """

    activation = "softmax"

    def __init__(self, num_classes: int, eos_coef: float, key: str = NO_OBJECT_WEIGHT_KEY):
        """``key``: the config key of ``eos_coef``, named when it is out of [0, 1]."""
        super().__init__()
        self.eos_coef = eos_coef
        empty_weight = no_object_class_weight(num_classes, eos_coef, key)
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    @staticmethod
    def num_columns(num_classes: int) -> int:
        return num_classes + 1

    def forward(
        self,
        pred_logits: torch.Tensor,
        targets: List[Dict[str, torch.Tensor]],
        indices: Indices,
        num_masks: float,
    ) -> torch.Tensor:
        """pred_logits: (B, N, K + 1) -> scalar. ``num_masks`` is not used: the loss is a
        weighted mean over queries, as Mask2Former's."""
        device = pred_logits.device
        return no_object_cross_entropy(
            pred_logits,
            matched_query_index(indices, device),
            matched_labels(targets, indices).to(device),
            self.empty_weight,
        )

    def extra_repr(self) -> str:
        return f"eos_coef={self.eos_coef}"


def point_set_class_loss(cfg, activation: str) -> nn.Module:
    """The class loss of ``activation`` with its config: ``FocalClassLoss`` with
    ``MODEL.VIS.FOCAL_ALPHA/GAMMA`` or ``NoObjectClassLoss`` with
    ``MODEL.M2F_VIS.NO_OBJECT_WEIGHT``."""
    vis = cfg.MODEL.VIS
    if activation == "sigmoid":
        return FocalClassLoss(vis.FOCAL_ALPHA, vis.FOCAL_GAMMA)
    if activation == "softmax":
        return NoObjectClassLoss(vis.NUM_CLASSES, cfg.MODEL.M2F_VIS.NO_OBJECT_WEIGHT)
    raise ValueError(f"no point-set class loss for class activation {activation!r}")
