"""TeViT's neck in the pixel decoder's slot: an FPN over the four backbone stages (as
mmdetection's ``FPN`` with ``start_level=0, num_outs=4``: 1x1 laterals, nearest top-down
upsampling and sums, 3x3 output convolutions), per frame.

Output of ``forward_features`` (the pixel decoder contract of docs/design.md):
``mask_features`` = P2 (BT, d, H/4, W/4) and ``multi_scale`` = [P5, P4, P3] (strides 32,
16, 8), so the shared inference stores all four levels; the TeViT head reads them back
as [P2, P3, P4, P5] for its RoI features.
"""

from typing import Dict, List, Tuple

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import Tensor, nn
from torch.nn import functional as F

from ..registry import PIXEL_DECODER_REGISTRY

__all__ = ["TeViTFPN"]

FPN_IN_FEATURES = ("res2", "res3", "res4", "res5")


@PIXEL_DECODER_REGISTRY.register()
class TeViTFPN(nn.Module):
    """FPN P2-P5 of TeViT's neck (d channels, no normalisation, as mmdetection's FPN)."""

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, conv_dim: int):
        """
        Args:
            input_shape: the backbone's output shapes; must hold res2..res5.
            conv_dim: d, the FPN's channels (TeViT: 256).
        """
        super().__init__()
        missing = [n for n in FPN_IN_FEATURES if n not in input_shape]
        if missing:
            raise ValueError(
                f"TeViTFPN needs backbone features {list(FPN_IN_FEATURES)}; the backbone "
                f"gives {sorted(input_shape)} (MODEL.MSGSHIFT.OUT_FEATURES)"
            )
        channels = [input_shape[n].channels for n in FPN_IN_FEATURES]
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, conv_dim, 1) for c in channels)
        self.output_convs = nn.ModuleList(
            nn.Conv2d(conv_dim, conv_dim, 3, padding=1) for _ in channels
        )
        for conv in [*self.lateral_convs, *self.output_convs]:  # mmdetection's xavier init
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        return {"input_shape": input_shape, "conv_dim": cfg.MODEL.TEVIT.FPN_DIM}

    def forward_features(self, features: Dict[str, Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """res2..res5 (BT, C_l, H/s, W/s) -> P2 (BT, d, H/4, W/4), [P5, P4, P3]."""
        laterals = [conv(features[n]) for conv, n in zip(self.lateral_convs, FPN_IN_FEATURES)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        p2, p3, p4, p5 = [conv(x) for conv, x in zip(self.output_convs, laterals)]
        return p2, [p5, p4, p3]
