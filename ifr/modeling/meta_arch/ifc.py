"""IFC (Hwang et al., "Video Instance Segmentation using Inter-Frame Communication
Transformers", NeurIPS 2021) as a meta-architecture of this codebase: backbone ->
``IFCInputProjection`` (per frame) -> ``IFCTransformerDecoder`` (encoder with memory
tokens, decoder, class and dynamic mask heads) -> ``IFCCriterion`` (training).

Everything else is the shared ``VideoMaskClassifier``: preprocessing, targets, training
forward, and inference (``ifr.inference``): a whole video as one clip
(``MODEL.VIS.TEST.MODE video``, IFC's offline setting, T = 36 covers a YouTube-VIS 2019
video) or clips linked by IFC's clip matching (``MODE clip``, IFC's near-online setting);
the top-k (query, class) pairs of ``softmax(logits)[..., :-1]``.

Official IFC checkpoints (``detr.*`` names, e.g. its YouTube-VIS R-50/R-101 models) load
with every tensor used: ``rename_official_ifc_keys`` maps their names onto these modules.
"""

from typing import Any, Dict

from detectron2.modeling import META_ARCH_REGISTRY

from ...checkpoint.ifc import rename_official_ifc_keys
from ..criterion.ifc import IFCCriterion
from ..pixel_decoder import IFCInputProjection
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
    criterion_class = IFCCriterion
    required_parts = _IFC_PARTS

    @staticmethod
    def rename_checkpoint_keys(state_dict: Dict[str, Any]) -> Dict[str, Any]:
        """Called by ``ifr.checkpoint.IFRCheckpointer`` on every loaded state dict."""
        return rename_official_ifc_keys(state_dict)
