"""The models of the five systems. Importing this package registers their
meta-architectures (``IFR``, ``VideoMaskFormer`` = Mask2Former-VIS, ``IFC``, ``VisTR``,
``TeViT``), backbones (``D2SwinTransformer``, ``D2MsgShifT``), pixel decoders and
transformer decoders."""

from . import backbone  # noqa: F401
from .criterion import IFRCriterion, VideoMaskFormerCriterion, VideoSetCriterion, build_weight_dict
from .matcher import VideoHungarianMatcher
from .meta_arch import IFR, VideoMaskFormer
from .pixel_decoder import MSDeformAttnPixelDecoder
from .registry import (
    PIXEL_DECODER_REGISTRY,
    TRANSFORMER_DECODER_REGISTRY,
    build_pixel_decoder,
    build_transformer_decoder,
)
from .transformer_decoder import IFRTransformerDecoder, VideoMultiScaleMaskedTransformerDecoder

__all__ = [
    "IFR",
    "IFRCriterion",
    "IFRTransformerDecoder",
    "VideoMaskFormer",
    "VideoMaskFormerCriterion",
    "VideoMultiScaleMaskedTransformerDecoder",
    "MSDeformAttnPixelDecoder",
    "VideoHungarianMatcher",
    "VideoSetCriterion",
    "build_weight_dict",
    "build_pixel_decoder",
    "build_transformer_decoder",
    "PIXEL_DECODER_REGISTRY",
    "TRANSFORMER_DECODER_REGISTRY",
]
