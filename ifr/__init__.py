"""ifr: video instance segmentation with Inter-Frame Recurrent attention, on Detectron2.

``import ifr`` registers every component: the datasets, the meta-architecture, the
backbones and heads.
"""

__version__ = "0.1.0"

from . import (
    data,  # noqa: F401  (registers datasets)
    modeling,  # noqa: F401  (registers the model's components)
)
from .config import add_ifr_config  # noqa: F401
