"""Mask2Former-VIS as a baseline, registered as ``VideoMaskFormer`` (the name of its
official meta-architecture, so ``MODEL.META_ARCHITECTURE: "VideoMaskFormer"`` reads as in
Mask2Former's configs): backbone -> pixel decoder -> ``VideoMultiScaleMaskedTransformerDecoder``,
trained with ``VideoMaskFormerCriterion`` (softmax cross-entropy with a no-object class).

Everything else (preprocessing, targets, training forward, inference, evaluation) is the
shared ``VideoMaskClassifier``: inference keeps the top-k (query, class) pairs of
``softmax(logits)[..., :-1]`` (top-10 in Mask2Former-VIS: ``MODEL.VIS.TEST.TOP_K``).
"""

from detectron2.modeling import META_ARCH_REGISTRY

from ..criterion import VideoMaskFormerCriterion
from .base import VideoMaskClassifier


@META_ARCH_REGISTRY.register()
class VideoMaskFormer(VideoMaskClassifier):
    """Mask2Former-VIS: softmax class logits (K + 1) and ``VideoMaskFormerCriterion``."""

    class_activation = "softmax"
    swappable_class_loss = True
    criterion_class = VideoMaskFormerCriterion
