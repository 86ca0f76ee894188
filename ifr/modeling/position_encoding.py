"""Sine position embeddings of feature maps: 2-D (DETR, as used by Mask2Former) and 3-D
(clips, as Mask2Former-VIS)."""

import math
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine embedding of the (y, x) position of every pixel of a feature map.

    Channel ``2k`` of a half is ``sin(p / T^(2k/F))`` and channel ``2k+1`` is
    ``cos(p / T^(2k/F))``, with ``F = num_pos_feats`` and ``T = temperature``; the first
    ``F`` output channels embed y, the last ``F`` embed x. With ``normalize`` the position
    ``p`` is the 1-based pixel count divided by the map's extent and scaled to
    ``(0, scale]`` (``scale`` defaults to 2*pi), so the embedding does not depend on the
    resolution. The same layout and formula as Mask2Former, so pretrained weights that
    learnt on these embeddings keep working.
    """

    def __init__(
        self,
        num_pos_feats: int = 128,
        temperature: float = 10000,
        normalize: bool = True,
        scale: Optional[float] = None,
    ):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: scale is only used with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            x: (B, C, H, W) feature map; only its shape, device and dtype are used.
            mask: optional (B, H, W) bool, True at padded pixels (they are not counted).
        Returns:
            (B, 2 * num_pos_feats, H, W) embeddings, dtype of ``x``.
        """
        if mask is None:
            mask = torch.zeros(
                (x.shape[0], x.shape[2], x.shape[3]), device=x.device, dtype=torch.bool
            )
        y_embed, x_embed = self._positions(mask, (1, 2))
        pos_y = self._embed_coordinate(y_embed)
        pos_x = self._embed_coordinate(x_embed)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).to(x.dtype)

    def _positions(self, mask: Tensor, dims: Sequence[int]) -> List[Tensor]:
        """Positions along each of ``dims`` of a bool ``mask`` (True = padded): the 1-based
        count of unpadded entries, float32, of ``mask``'s shape; with ``normalize`` divided
        by the count at the end of the dim and scaled to ``(0, scale]``."""
        not_mask = ~mask
        embeds = [not_mask.cumsum(dim, dtype=torch.float32) for dim in dims]
        if self.normalize:
            eps = 1e-6
            embeds = [
                e / (e.narrow(dim, e.shape[dim] - 1, 1) + eps) * self.scale
                for e, dim in zip(embeds, dims)
            ]
        return embeds

    def _clip_positions(self, x: Tensor, mask: Optional[Tensor], name: str) -> List[Tensor]:
        """(t, y, x) positions of a clip's pixels, each (B, T, H, W) (``_positions``).

        Args:
            x: (B, T, C, H, W) clip features; only shape and device are used.
            mask: optional (B, T, H, W) bool, True at padded pixels.
            name: the embedding named in the error when ``x`` is not 5-D.
        """
        if x.dim() != 5:
            raise ValueError(f"{name} needs (B, T, C, H, W), got {tuple(x.shape)}")
        batch, frames, _, height, width = x.shape
        if mask is None:
            mask = torch.zeros((batch, frames, height, width), device=x.device, dtype=torch.bool)
        return self._positions(mask, (1, 2, 3))

    def _embed_coordinate(self, coord: Tensor, num_feats: Optional[int] = None) -> Tensor:
        """(...) positions -> (..., num_feats) (default ``num_pos_feats``), sin and cos
        interleaved."""
        num_feats = num_feats or self.num_pos_feats
        k = torch.arange(num_feats, dtype=torch.float32, device=coord.device)
        dim_t = self.temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / num_feats)
        angles = coord[..., None] / dim_t
        return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)

    def extra_repr(self) -> str:
        return (
            f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
            f"normalize={self.normalize}, scale={self.scale}"
        )


class PositionEmbeddingSine3D(PositionEmbeddingSine):
    """Sine embedding of the (t, y, x) position of every pixel of a clip's feature maps, as
    Mask2Former-VIS (``PositionEmbeddingSine3D``): the 2-D embedding of (y, x) above
    (``2 * num_pos_feats`` channels, y first) plus a time embedding of the same width,
    whose channel ``2k`` / ``2k+1`` is ``sin`` / ``cos(z / T^(2k / (2F)))``. With
    ``normalize`` the frame position z is the 1-based frame index divided by the number
    of frames, scaled to ``(0, scale]``, like y and x.
    """

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            x: (B, T, C, H, W) feature maps of a clip; only shape, device, dtype are used.
            mask: optional (B, T, H, W) bool, True at padded pixels.
        Returns:
            (B, T, 2 * num_pos_feats, H, W) embeddings, dtype of ``x``.
        """
        z_embed, y_embed, x_embed = self._clip_positions(x, mask, "PositionEmbeddingSine3D")
        spatial = torch.cat(
            (self._embed_coordinate(y_embed), self._embed_coordinate(x_embed)), dim=-1
        )
        time = self._embed_coordinate(z_embed, 2 * self.num_pos_feats)
        return (spatial + time).permute(0, 1, 4, 2, 3).to(x.dtype)
