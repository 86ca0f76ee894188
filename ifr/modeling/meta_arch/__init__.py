"""Meta-architectures, one module per system (registered in detectron2's
``META_ARCH_REGISTRY``, chosen by ``MODEL.META_ARCHITECTURE``): ``IFR``,
``VideoMaskFormer`` (Mask2Former-VIS), ``IFC``, ``VisTR`` and ``TeViT``, all on the shared
``VideoMaskClassifier``, which meets the inference contract
(``ifr.inference.contract.VideoModel``) once for all of them."""

from .base import VideoMaskClassifier
from .ifc import IFC
from .ifr import IFR
from .m2f_vis import VideoMaskFormer
from .tevit import TeViT
from .vistr import VisTR

__all__ = ["IFC", "IFR", "TeViT", "VideoMaskClassifier", "VideoMaskFormer", "VisTR"]
