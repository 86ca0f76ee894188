"""The IFR meta-architecture: backbone -> pixel decoder -> IFR transformer decoder.

Training: a batch of B clips of T frames each; losses of Eq. (5)-(7).
Inference: one video at a time through ``ifr.inference.run_inference``.
"""

import torch
from detectron2.modeling import META_ARCH_REGISTRY

from ..criterion import IFRCriterion
from .base import VideoMaskClassifier


@META_ARCH_REGISTRY.register()
class IFR(VideoMaskClassifier):
    """IFR: sigmoid class logits (``IFRTransformerDecoder``) and ``IFRCriterion``."""

    class_activation = "sigmoid"
    swappable_class_loss = True
    criterion_class = IFRCriterion

    def prepare_outputs_for_loss(self, outputs: dict, mask_features: torch.Tensor) -> None:
        """The cross-frame loss (Eq. 6-7) needs the mask features of every frame."""
        outputs["mask_features"] = mask_features
        for aux in outputs.get("aux_outputs", []):
            aux["mask_features"] = mask_features
