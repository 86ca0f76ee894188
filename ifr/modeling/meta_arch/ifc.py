"""IFC (Hwang et al., "Video Instance Segmentation using Inter-Frame Communication
Transformers", NeurIPS 2021) as a meta-architecture of this codebase: backbone ->
``IFCInputProjection`` (per frame) -> ``IFCTransformerDecoder`` (encoder with memory
tokens, decoder, class and dynamic mask heads) -> ``IFCCriterion`` (training).

Everything else is the shared ``VideoMaskClassifier``: preprocessing, targets, training
forward, and inference (``ifr.inference``): a whole video as one clip
(``MODEL.IFR.TEST.MODE video``, IFC's offline setting, T = 36 covers a YouTube-VIS 2019
video) or clips linked by IFC's clip matching (``MODE clip``, IFC's near-online setting);
the top-k (query, class) pairs of ``softmax(logits)[..., :-1]``.
"""

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ..criterion.ifc import IFCCriterion
from ..pixel_decoder_ifc import IFCInputProjection
from ..transformer_decoder.ifc import IFCTransformerDecoder
from .base import VideoMaskClassifier

# (config key, constructor argument, the class IFC needs there)
_IFC_PARTS = (
    ("MODEL.PIXEL_DECODER.NAME", "pixel_decoder", IFCInputProjection),
    ("MODEL.TRANSFORMER_DECODER.NAME", "transformer_decoder", IFCTransformerDecoder),
)


@META_ARCH_REGISTRY.register()
class IFC(VideoMaskClassifier):
    """IFC: ``IFCInputProjection`` + ``IFCTransformerDecoder`` and ``IFCCriterion``."""

    class_activation = "softmax"

    @configurable
    def __init__(self, **kwargs):
        """Arguments of ``VideoMaskClassifier``; the pixel decoder an ``IFCInputProjection``,
        the transformer decoder an ``IFCTransformerDecoder``, ``criterion`` an
        ``IFCCriterion``."""
        for key, argument, expected in _IFC_PARTS:
            if not isinstance(kwargs[argument], expected):
                raise ValueError(
                    f"IFC needs {key} {expected.__name__!r}, got "
                    f"{type(kwargs[argument]).__name__}"
                )
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {**cls.shared_from_config(cfg), "criterion": IFCCriterion(cfg)}
