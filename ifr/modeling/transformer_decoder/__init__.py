"""Transformer decoders, one module per system (registered in
``TRANSFORMER_DECODER_REGISTRY``, chosen by ``MODEL.TRANSFORMER_DECODER.NAME``):
``IFRTransformerDecoder`` (IFR), ``VideoMultiScaleMaskedTransformerDecoder``
(Mask2Former-VIS), ``IFCTransformerDecoder`` (IFC), ``VisTRTransformerDecoder`` (VisTR)
and ``TeViTSTQIHead`` (TeViT). Each says how its logits become class probabilities
(``class_activation``, see ``ifr.layers.classification``)."""

from .ifc import IFCTransformerDecoder
from .ifr import IFRTransformerDecoder
from .m2f_vis import VideoMultiScaleMaskedTransformerDecoder
from .tevit import TeViTSTQIHead
from .vistr import VisTRTransformerDecoder

__all__ = [
    "IFCTransformerDecoder",
    "IFRTransformerDecoder",
    "TeViTSTQIHead",
    "VideoMultiScaleMaskedTransformerDecoder",
    "VisTRTransformerDecoder",
]
