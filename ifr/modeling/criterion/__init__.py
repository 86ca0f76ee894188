"""Set criteria: the shared machinery (``base``) and one small module per system's class
loss and extra terms: ``IFRCriterion`` (Eq. 5-7), ``VideoMaskFormerCriterion``
(Mask2Former-VIS), ``IFCCriterion``, ``VisTRCriterion`` and ``TeViTCriterion``. Their
matchers are in ``ifr.modeling.matcher``."""

from .base import VideoSetCriterion, aux_weight_dict
from .ifr import CROSS_FRAME_LOSSES, IFRCriterion, build_weight_dict
from .m2f_vis import VideoMaskFormerCriterion

__all__ = [
    "CROSS_FRAME_LOSSES",
    "IFRCriterion",
    "VideoMaskFormerCriterion",
    "VideoSetCriterion",
    "aux_weight_dict",
    "build_weight_dict",
]
