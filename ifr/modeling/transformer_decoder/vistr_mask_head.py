"""VisTR's mask head: per-frame mask features of every instance slot (DETR's box attention +
FPN-style convolutional head), then the instance's features over the clip fused by 3-D
convolutions into one mask logit per frame ("instance sequence segmentation").

Shape shorthand: B videos, T frames, n instance slots per frame, d transformer width,
(h, w) the stride-32 size of the encoder memory, (H4, W4) the stride-4 size of the masks.

The last FPN stage is VisTR's 3x3 deformable convolution (``dcn``, no bias) with its
offsets predicted by a 1x1 convolution (``conv_offset``, zero at initialisation, so the
stage starts as a plain convolution); torchvision's ``deform_conv2d`` computes it, with
the offset layout of VisTR's DCN operator ((dy, dx) per kernel position, row-major).

Differences from VisTR's ``segmentation.py``, all deliberate:
- GroupNorm groups are ``gcd(8, channels)`` (``gcd(4, channels)`` in the 3-D fusion), equal
  to VisTR's 8 (4) at its widths (d = 384), so narrow models also build;
- all frames go through the 2-D head as one batch (VisTR loops over frames; GroupNorm is
  per sample, so the result is the same).
"""

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import deform_conv2d


def _group_norm(channels: int, max_groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(max_groups, channels), channels)


class BoxAttentionMap(nn.Module):
    """DETR's ``MHAttentionMap``: the attention weights (no values) of each query over the
    encoder memory of its frame, softmax over heads and positions together."""

    def __init__(self, hidden_dim: int, nheads: int):
        super().__init__()
        if hidden_dim % nheads:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by nheads {nheads}")
        self.nheads = nheads
        self.q_linear = nn.Linear(hidden_dim, hidden_dim)
        self.k_linear = nn.Linear(hidden_dim, hidden_dim)
        for linear in (self.q_linear, self.k_linear):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        self.scale = float(hidden_dim / nheads) ** -0.5

    def forward(self, queries: Tensor, memory: Tensor, padding: Optional[Tensor] = None) -> Tensor:
        """queries: (F, Q, d); memory: (F, d, h, w); padding: optional (F, h, w) bool, True
        at memory positions of the padding (weight 0, as DETR's) -> weights
        (F, Q, nheads, h, w)."""
        num_maps, num_queries, dim = queries.shape
        head_dim = dim // self.nheads
        q = self.q_linear(queries).view(num_maps, num_queries, self.nheads, head_dim)
        k = F.conv2d(memory, self.k_linear.weight[:, :, None, None], self.k_linear.bias)
        k = k.view(num_maps, self.nheads, head_dim, *memory.shape[-2:])
        weights = torch.einsum("fqnc,fnchw->fqnhw", q * self.scale, k)
        if padding is not None:
            weights = weights.masked_fill(padding[:, None, None], float("-inf"))
        return weights.flatten(2).softmax(-1).view_as(weights)


class DeformConv3x3(nn.Module):
    """VisTR's ``DeformConv`` (3x3, padding 1, one offset group, no bias): ``weight``
    (C_out, C_in, 3, 3), Kaiming-uniform initialised as VisTR's."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def forward(self, x: Tensor, offset: Tensor) -> Tensor:
        """x: (N, C_in, H, W); offset: (N, 18, H, W), (dy, dx) of the 9 kernel positions
        -> (N, C_out, H, W) in x's dtype. Half-precision inputs are computed in float32
        (torchvision's CPU kernel has no half versions), as the other sampling operators
        under autocast; float32 and float64 in their own precision."""
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        with torch.autocast(x.device.type, enabled=False):
            out = deform_conv2d(
                x.to(dtype), offset.to(dtype), self.weight.to(dtype), padding=(1, 1)
            )
        return out.to(x.dtype)


class FrameMaskHead(nn.Module):
    """DETR's ``MaskHeadSmallConv``: the memory of a frame, repeated per query and
    concatenated with the query's attention maps, upsampled to stride 4 by three FPN
    steps over the backbone's stride-16, 8 and 4 features."""

    def __init__(self, hidden_dim: int, nheads: int, fpn_dims: Sequence[int]):
        super().__init__()
        dim = hidden_dim + nheads
        widths = [dim, hidden_dim // 2, hidden_dim // 4, hidden_dim // 8, hidden_dim // 16]
        if widths[-1] < 1:
            raise ValueError(f"MODEL.VISTR.HIDDEN_DIM {hidden_dim} is too small (< 16)")
        self.lay1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.gn1 = _group_norm(dim, 8)
        self.lay2 = nn.Conv2d(dim, widths[1], 3, padding=1)
        self.gn2 = _group_norm(widths[1], 8)
        self.lay3 = nn.Conv2d(widths[1], widths[2], 3, padding=1)
        self.gn3 = _group_norm(widths[2], 8)
        self.lay4 = nn.Conv2d(widths[2], widths[3], 3, padding=1)
        self.gn4 = _group_norm(widths[3], 8)
        self.conv_offset = nn.Conv2d(widths[3], 18, 1)  # (dy, dx) of the 3x3 kernel
        self.dcn = DeformConv3x3(widths[3], widths[4])
        self.gn5 = _group_norm(widths[4], 8)
        self.adapter1 = nn.Conv2d(fpn_dims[0], widths[1], 1)
        self.adapter2 = nn.Conv2d(fpn_dims[1], widths[2], 1)
        self.adapter3 = nn.Conv2d(fpn_dims[2], widths[3], 1)
        self.out_channels = widths[4]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.conv_offset.weight)  # offsets start at 0, as VisTR

    def forward(self, memory: Tensor, attention: Tensor, fpns: Sequence[Tensor]) -> Tensor:
        """
        Args:
            memory: (F, d, h, w) encoder memory of F frames.
            attention: (F, Q, nheads, h, w) box attention of Q queries per frame.
            fpns: backbone features (F, C_l, H_l, W_l) at strides 16, 8, 4.
        Returns:
            (F, Q, C_out, H4, W4) per-query mask features, C_out = d // 16.
        """
        num_maps, num_queries = attention.shape[:2]
        repeated = memory[:, None].expand(-1, num_queries, -1, -1, -1).flatten(0, 1)
        x = torch.cat([repeated, attention.flatten(0, 1)], dim=1)
        x = F.relu(self.gn1(self.lay1(x)))
        x = F.relu(self.gn2(self.lay2(x)))
        stages = ((self.adapter1, self.lay3, self.gn3), (self.adapter2, self.lay4, self.gn4))
        for (adapter, conv, norm), fpn in zip(stages, fpns[:2]):
            x = self._add_lateral(x, adapter(fpn), num_queries)
            x = F.relu(norm(conv(x)))
        x = self._add_lateral(x, self.adapter3(fpns[2]), num_queries)
        x = F.relu(self.gn5(self.dcn(x, self.conv_offset(x))))
        return x.view(num_maps, num_queries, *x.shape[1:])

    @staticmethod
    def _add_lateral(x: Tensor, lateral: Tensor, num_queries: int) -> Tensor:
        """x (F * Q, C, h, w) upsampled (nearest) onto lateral (F, C, H, W), added."""
        lateral = lateral.repeat_interleave(num_queries, dim=0)
        return lateral + F.interpolate(x, size=lateral.shape[-2:], mode="nearest")


class MaskFusion3D(nn.Module):
    """VisTR's ``insmask_head``: three dilated 3x3x3 convolutions + GroupNorm + ReLU and a
    1x1x1 convolution, over (frames, height, width) of one instance's mask features."""

    def __init__(self, in_channels: int):
        super().__init__()
        width = max(in_channels // 2, 1)
        layers = []
        for index in range(3):
            layers += [
                nn.Conv3d(in_channels if index == 0 else width, width, 3, padding=2, dilation=2),
                _group_norm(width, 4),
                nn.ReLU(),
            ]
        layers.append(nn.Conv3d(width, 1, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        """features: (R, C, T, H4, W4) -> mask logits (R, T, H4, W4)."""
        return self.layers(features)[:, 0]


class VisTRMaskHead(nn.Module):
    """Mask logits of every instance sequence: per-frame features from the frame's memory
    and its n instance queries, fused over the clip by ``MaskFusion3D``."""

    def __init__(self, hidden_dim: int, nheads: int, fpn_dims: Sequence[int]):
        """fpn_dims: channels of the backbone's stride-16, 8 and 4 features."""
        super().__init__()
        self.bbox_attention = BoxAttentionMap(hidden_dim, nheads)
        self.mask_head = FrameMaskHead(hidden_dim, nheads, fpn_dims)
        self.insmask_head = MaskFusion3D(self.mask_head.out_channels)

    def forward(
        self,
        queries: Tensor,
        memory: Tensor,
        fpns: Sequence[Tensor],
        padding: Optional[Tensor] = None,
    ) -> Tensor:
        """
        Args:
            queries: (B, T, n, d) decoder output of the slot of instance i in frame t.
            memory: (B, T, d, h, w) encoder memory.
            fpns: backbone features (B, T, C_l, H_l, W_l) at strides 16, 8, 4.
            padding: optional (B, T, h, w) bool, True at memory cells of the padding.
        Returns:
            (B, n, T, H4, W4) mask logits.
        """
        batch, frames, num_instances = queries.shape[:3]
        flat_memory = memory.flatten(0, 1)
        flat_padding = None if padding is None else padding.flatten(0, 1)
        attention = self.bbox_attention(queries.flatten(0, 1), flat_memory, flat_padding)
        features = self.mask_head(flat_memory, attention, [f.flatten(0, 1) for f in fpns])
        features = features.view(batch, frames, num_instances, *features.shape[2:])
        per_instance = features.permute(0, 2, 3, 1, 4, 5).flatten(0, 1)  # (B * n, C, T, H, W)
        logits = self.insmask_head(per_instance)
        return logits.view(batch, num_instances, frames, *logits.shape[-2:])
