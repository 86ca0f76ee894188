"""Per-frame pixel decoder: a multi-scale deformable-attention encoder (Deformable DETR)
over strides 8/16/32 plus an FPN-style lateral at stride 4 for the mask features.

Frames are batch items: every frame is encoded independently (docs/method.md, "Model").
Submodule names follow Mask2Former's ``MSDeformAttnPixelDecoder`` so that COCO-pretrained
Mask2Former checkpoints load (``sem_seg_head.pixel_decoder.*`` there).
"""

import copy
from contextlib import nullcontext
from typing import Dict, List, Tuple

import fvcore.nn.weight_init as weight_init
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import Tensor, nn
from torch.nn import functional as F

from ...utils.errors import UserInputError
from ..ops.ms_deform_attn import MSDA_IMPLS, MSDeformAttn
from ..position_encoding import PositionEmbeddingSine
from ..registry import PIXEL_DECODER_REGISTRY

__all__ = ["MSDeformAttnEncoderLayer", "MSDeformAttnTransformerEncoder", "MSDeformAttnPixelDecoder"]


class MSDeformAttnEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention, then a ReLU FFN."""

    def __init__(
        self,
        d_model: int,
        d_ffn: int,
        dropout: float,
        n_levels: int,
        n_heads: int,
        n_points: int,
        msda_impl: str = "auto",
    ):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points, impl=msda_impl)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        reference_points: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
    ) -> Tensor:
        """src, pos: (B, S, d_model); reference_points: (B, S, L, 2) -> (B, S, d_model)."""
        attended = self.self_attn(
            src + pos, reference_points, src, spatial_shapes, level_start_index
        )
        src = self.norm1(src + self.dropout1(attended))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class _EncoderStack(nn.Module):
    """The stack of encoder layers (``encoder.layers.{i}`` in checkpoints)."""

    def __init__(self, layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index):
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index)
        return src


class MSDeformAttnTransformerEncoder(nn.Module):
    """Flattens L feature levels, adds level embeddings and runs the deformable encoder.

    Frames are never padded inside a batch here (the meta-architecture pads the clip
    once), so every pixel is valid and the reference point of a pixel is its centre.
    """

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        num_feature_levels: int = 3,
        enc_n_points: int = 4,
        msda_impl: str = "auto",
    ):
        super().__init__()
        layer = MSDeformAttnEncoderLayer(
            d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points, msda_impl
        )
        self.encoder = _EncoderStack(layer, num_encoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(
        self, srcs: List[Tensor], pos_embeds: List[Tensor]
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """
        Args:
            srcs, pos_embeds: L tensors (B, d_model, H_l, W_l), level order of ``level_embed``.
        Returns:
            memory (B, S, d_model) with S = sum H_l * W_l, spatial_shapes (L, 2) long,
            level_start_index (L,) long.
        """
        device = srcs[0].device
        spatial_shapes = torch.as_tensor(
            [src.shape[-2:] for src in srcs], dtype=torch.long, device=device
        )
        areas = spatial_shapes[:, 0] * spatial_shapes[:, 1]
        level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])

        src_flatten = torch.cat([src.flatten(2).transpose(1, 2) for src in srcs], 1)
        pos_flatten = torch.cat(
            [
                pos.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                for lvl, pos in enumerate(pos_embeds)
            ],
            1,
        )
        reference_points = self._pixel_centres(spatial_shapes, src_flatten)
        memory = self.encoder(
            src_flatten, pos_flatten, reference_points, spatial_shapes, level_start_index
        )
        return memory, spatial_shapes, level_start_index

    @staticmethod
    def _pixel_centres(spatial_shapes: Tensor, like: Tensor) -> Tensor:
        """(B, S, L, 2): the normalised (x, y) centre of every pixel, the same for all levels."""
        centres = []
        for height, width in spatial_shapes.tolist():
            ys = (torch.arange(height, dtype=like.dtype, device=like.device) + 0.5) / height
            xs = (torch.arange(width, dtype=like.dtype, device=like.device) + 0.5) / width
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            centres.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1))
        points = torch.cat(centres, 0)  # (S, 2)
        num_levels = spatial_shapes.shape[0]
        return points[None, :, None, :].expand(like.shape[0], -1, num_levels, -1)


def _float32_under_fp16_autocast(device_type: str):
    """Autocast off where fp16 autocast is on for ``device_type``; otherwise no change."""
    fp16 = (
        torch.is_autocast_enabled(device_type)
        and torch.get_autocast_dtype(device_type) == torch.float16
    )
    return torch.autocast(device_type=device_type, enabled=False) if fp16 else nullcontext()


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(nn.Module):
    """Mask2Former's pixel decoder, applied to every frame independently.

    ``forward_features(features)`` returns ``mask_features (B, mask_dim, H/4, W/4)`` and
    ``multi_scale_features``: 3 tensors ``(B, conv_dim, h_l, w_l)`` at strides 32, 16, 8
    (the encoder's outputs), where B counts frames.
    """

    num_multi_scale_levels = 3

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        transformer_dropout: float,
        transformer_nheads: int,
        transformer_dim_feedforward: int,
        transformer_enc_layers: int,
        transformer_n_points: int,
        conv_dim: int,
        mask_dim: int,
        norm: str,
        transformer_in_features: List[str],
        common_stride: int,
        msda_impl: str = "auto",
    ):
        """
        Args:
            input_shape: backbone output shapes, e.g. ``res2..res5``.
            transformer_in_features: the levels the deformable encoder reads (res3..res5).
            conv_dim: hidden width of the encoder and of the multi-scale outputs.
            mask_dim: channels of the mask features.
            norm: norm of the FPN convs ("GN", "", ...).
            common_stride: stride of the mask features (4).
            msda_impl: deformable-attention implementation, "auto", "pytorch" or "triton"
                (``ifr.modeling.ops.ms_deform_attn.resolve_msda_impl``).
        """
        super().__init__()
        missing = [f for f in transformer_in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"MSDeformAttnPixelDecoder: DEFORMABLE_IN_FEATURES {missing} are not among the "
                f"backbone outputs {sorted(input_shape)}"
            )
        by_stride = sorted(input_shape.items(), key=lambda item: item[1].stride)
        self.in_features = [name for name, _ in by_stride]  # res2, res3, ... (stride ascending)
        encoder_shapes = [
            (name, spec) for name, spec in by_stride if name in transformer_in_features
        ]
        # Mask2Former orders the encoder levels from the lowest resolution to the highest.
        self.transformer_in_features = [name for name, _ in encoder_shapes][::-1]
        self.transformer_num_feature_levels = len(self.transformer_in_features)
        if self.transformer_num_feature_levels < self.num_multi_scale_levels:
            raise ValueError(
                f"MSDeformAttnPixelDecoder: need at least {self.num_multi_scale_levels} "
                f"DEFORMABLE_IN_FEATURES, got {transformer_in_features}"
            )
        self.conv_dim = conv_dim
        self.mask_dim = mask_dim
        self.common_stride = common_stride

        self.input_proj = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(spec.channels, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim)
                )
                for _, spec in encoder_shapes[::-1]
            ]
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)

        self.transformer = MSDeformAttnTransformerEncoder(
            d_model=conv_dim,
            nhead=transformer_nheads,
            num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward,
            dropout=transformer_dropout,
            num_feature_levels=self.transformer_num_feature_levels,
            enc_n_points=transformer_n_points,
            msda_impl=msda_impl,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1)
        weight_init.c2_xavier_fill(self.mask_features)

        min_encoder_stride = min(spec.stride for _, spec in encoder_shapes)
        self.num_fpn_levels = int(np.log2(min_encoder_stride) - np.log2(common_stride))
        self._build_fpn(input_shape, conv_dim, norm)

    def _build_fpn(self, input_shape: Dict[str, ShapeSpec], conv_dim: int, norm: str) -> None:
        """Lateral (``adapter_i``) and output (``layer_i``) convs for the levels finer than
        the encoder's, from the coarsest of them (i = 1) to the finest."""
        use_bias = norm == ""
        self.lateral_convs = []
        self.output_convs = []
        for idx, name in enumerate(self.in_features[: self.num_fpn_levels][::-1]):
            lateral = Conv2d(
                input_shape[name].channels,
                conv_dim,
                kernel_size=1,
                bias=use_bias,
                norm=get_norm(norm, conv_dim),
            )
            output = Conv2d(
                conv_dim,
                conv_dim,
                kernel_size=3,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, conv_dim),
                activation=F.relu,
            )
            weight_init.c2_xavier_fill(lateral)
            weight_init.c2_xavier_fill(output)
            self.add_module(f"adapter_{idx + 1}", lateral)
            self.add_module(f"layer_{idx + 1}", output)
            self.lateral_convs.append(lateral)
            self.output_convs.append(output)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        pd = cfg.MODEL.PIXEL_DECODER
        if pd.MSDA_IMPL not in MSDA_IMPLS:
            raise UserInputError(
                f"MODEL.PIXEL_DECODER.MSDA_IMPL: {pd.MSDA_IMPL!r} is not one of "
                f"{', '.join(MSDA_IMPLS)}"
            )
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in pd.IN_FEATURES},
            "transformer_dropout": pd.DROPOUT,
            "transformer_nheads": pd.NHEADS,
            "transformer_dim_feedforward": pd.DIM_FEEDFORWARD,
            "transformer_enc_layers": pd.ENC_LAYERS,
            "transformer_n_points": pd.N_POINTS,
            "conv_dim": pd.CONVS_DIM,
            "mask_dim": pd.MASK_DIM,
            "norm": pd.NORM,
            "transformer_in_features": list(pd.DEFORMABLE_IN_FEATURES),
            "common_stride": pd.COMMON_STRIDE,
            "msda_impl": pd.MSDA_IMPL,
        }

    def forward_features(self, features: Dict[str, Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """
        Args:
            features: backbone outputs, ``name -> (B, C_name, H_l, W_l)``; B counts frames.
        Returns:
            mask_features: (B, mask_dim, H_2, W_2), at the resolution of the finest input
                (stride ``common_stride``).
            multi_scale_features: 3 tensors (B, conv_dim, h_l, w_l), strides 32, 16, 8.
        """
        self._check_features(features)
        device_type = next(iter(features.values())).device.type
        # Under fp16 autocast the pixel decoder runs in float32, as Mask2Former under AMP
        # (fp16's range); under bf16 autocast (MODEL.PRECISION) it runs in bf16.
        with _float32_under_fp16_autocast(device_type):
            encoded = self._encode(features)
            outputs = self._fpn(features, encoded)
            mask_features = self.mask_features(outputs[-1])
        return mask_features, outputs[: self.num_multi_scale_levels]

    def _check_features(self, features: Dict[str, Tensor]) -> None:
        missing = [name for name in self.in_features if name not in features]
        if missing:
            raise KeyError(
                f"MSDeformAttnPixelDecoder: backbone features {missing} are missing; "
                f"got {sorted(features)}"
            )

    def _encode(self, features: Dict[str, Tensor]) -> List[Tensor]:
        """Deformable encoder over the encoder levels -> L maps (B, conv_dim, H_l, W_l),
        coarsest first."""
        srcs, pos = [], []
        for level, name in enumerate(self.transformer_in_features):
            x = features[name].float()
            srcs.append(self.input_proj[level](x))
            pos.append(self.pe_layer(x))
        memory, spatial_shapes, level_start_index = self.transformer(srcs, pos)
        batch = memory.shape[0]
        sizes = (spatial_shapes[:, 0] * spatial_shapes[:, 1]).tolist()
        maps = []
        for chunk, (height, width) in zip(
            torch.split(memory, sizes, dim=1), spatial_shapes.tolist()
        ):
            maps.append(chunk.transpose(1, 2).reshape(batch, -1, height, width))
        return maps

    def _fpn(self, features: Dict[str, Tensor], encoded: List[Tensor]) -> List[Tensor]:
        """Adds the finer levels top-down: lateral conv + upsampled coarser level, 3x3 conv."""
        outputs = list(encoded)
        for idx, name in enumerate(self.in_features[: self.num_fpn_levels][::-1]):
            lateral = self.lateral_convs[idx](features[name].float())
            coarser = F.interpolate(
                outputs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            outputs.append(self.output_convs[idx](lateral + coarser))
        return outputs

    def forward(self, features: Dict[str, Tensor]) -> Tuple[Tensor, List[Tensor]]:
        return self.forward_features(features)
