"""The IFR model. Importing this package registers the meta-architecture ``IFR``, the
``D2SwinTransformer`` backbone, the pixel decoder and the transformer decoder."""
from . import backbone  # noqa: F401
from .criterion import VideoSetCriterion, build_weight_dict
from .matcher import VideoHungarianMatcher
from .meta_arch import IFR
from .pixel_decoder import MSDeformAttnPixelDecoder
from .registry import (
    PIXEL_DECODER_REGISTRY,
    TRANSFORMER_DECODER_REGISTRY,
    build_pixel_decoder,
    build_transformer_decoder,
)
from .transformer_decoder import IFRTransformerDecoder

__all__ = [
    "IFR",
    "IFRTransformerDecoder",
    "MSDeformAttnPixelDecoder",
    "VideoHungarianMatcher",
    "VideoSetCriterion",
    "build_weight_dict",
    "build_pixel_decoder",
    "build_transformer_decoder",
    "PIXEL_DECODER_REGISTRY",
    "TRANSFORMER_DECODER_REGISTRY",
]
