"""Backbones. Importing this package registers ``D2SwinTransformer`` in detectron2's
``BACKBONE_REGISTRY``; ResNets come from detectron2's ``build_resnet_backbone``."""

from .msgshift import D2MsgShifT, MsgShifT
from .swin import D2SwinTransformer, SwinTransformer

__all__ = ["D2MsgShifT", "D2SwinTransformer", "MsgShifT", "SwinTransformer"]
