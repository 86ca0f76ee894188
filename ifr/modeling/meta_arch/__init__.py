"""Meta-architectures, one module per system (registered in detectron2's
``META_ARCH_REGISTRY``, chosen by ``MODEL.META_ARCHITECTURE``)."""
from .ifr import IFR

__all__ = ["IFR"]
