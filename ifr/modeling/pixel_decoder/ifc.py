"""IFC's per-frame stage after the backbone: 1x1 projections of res5, res4 and res3 to d
channels (Hwang et al., "Video Instance Segmentation using Inter-Frame Communication
Transformers", NeurIPS 2021).

IFC has no pixel decoder: its transformer reads the stride-32 features (``input_proj`` of
res5) and its mask head fuses the encoder's output with res4 and res3 (its ``adapter1``,
``adapter2``). Everything after these projections needs the whole clip (the encoder's
memory tokens communicate between frames, and the mask head reads the encoder's output),
so it lives in the transformer decoder (``transformer_decoder/ifc.py``). What is per frame
is here, in the pixel decoder's slot, so that inference encodes a long video a chunk of
frames at a time and stores d-channel features instead of the backbone's 2048/1024/512.

Output of ``forward_features`` (the pixel decoder contract of docs/design.md, with IFC's
levels): ``mask_features`` = adapter2(res3) (BT, d, H/8, W/8), the finest level the mask
head fuses (the mask features proper are computed by the decoder); ``multi_scale`` = two
tensors, input_proj(res5) (BT, d, H/32, W/32) and adapter1(res4) (BT, d, H/16, W/16).
"""

from typing import Dict, List, Tuple

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import Tensor, nn

from ..registry import PIXEL_DECODER_REGISTRY

__all__ = ["IFCInputProjection"]

# Backbone levels IFC reads: res3 (stride 8), res4 (16), res5 (32).
IFC_IN_FEATURES = ("res3", "res4", "res5")


def _kaiming_conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    """1x1 conv initialised as IFC's mask head (Kaiming uniform, a=1; zero bias)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
    nn.init.kaiming_uniform_(conv.weight, a=1)
    nn.init.constant_(conv.bias, 0)
    return conv


@PIXEL_DECODER_REGISTRY.register()
class IFCInputProjection(nn.Module):
    """Per-frame 1x1 projections of IFC (``input_proj``, ``adapter1``, ``adapter2``)."""

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, conv_dim: int):
        """
        Args:
            input_shape: the backbone's output shapes; must hold res3, res4 and res5.
            conv_dim: d, channels of every projection (the transformer's width).
        """
        super().__init__()
        missing = [name for name in IFC_IN_FEATURES if name not in input_shape]
        if missing:
            raise ValueError(
                f"IFCInputProjection needs backbone features {list(IFC_IN_FEATURES)}; "
                f"the backbone gives {sorted(input_shape)} (MODEL.RESNETS.OUT_FEATURES or "
                "MODEL.SWIN.OUT_FEATURES)"
            )
        res3, res4, res5 = (input_shape[name].channels for name in IFC_IN_FEATURES)
        # DETR's input projection (PyTorch's default init, as IFC).
        self.input_proj = nn.Conv2d(res5, conv_dim, kernel_size=1)
        self.adapter1 = _kaiming_conv1x1(res4, conv_dim)
        self.adapter2 = _kaiming_conv1x1(res3, conv_dim)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        return {"input_shape": input_shape, "conv_dim": cfg.MODEL.PIXEL_DECODER.CONVS_DIM}

    def forward_features(self, features: Dict[str, Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """
        Args:
            features: backbone outputs of BT frames, ``res3`` (BT, C3, H/8, W/8), ``res4``,
                ``res5``.

        Returns:
            adapter2(res3) (BT, d, H/8, W/8) and [input_proj(res5) (BT, d, H/32, W/32),
            adapter1(res4) (BT, d, H/16, W/16)].
        """
        return self.adapter2(features["res3"]), [
            self.input_proj(features["res5"]),
            self.adapter1(features["res4"]),
        ]
