"""Pieces shared by the transformer decoders: input projection, input checks, the
masked-attention mask of one frame, and masks from mask embeddings."""

from typing import Sequence, Tuple

import fvcore.nn.weight_init as weight_init
import torch
from torch import Tensor, nn
from torch.nn import functional as F

NUM_FEATURE_LEVELS = 3  # the pixel decoder's strides 32, 16, 8, lowest resolution first


def make_input_proj(in_channels: int, hidden_dim: int, enforce: bool) -> nn.Module:
    """1x1 conv from the pixel decoder's channels to d (identity when they are equal and
    ``enforce`` is False), as Mask2Former's ``input_proj``."""
    if in_channels == hidden_dim and not enforce:
        return nn.Sequential()
    conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
    weight_init.c2_xavier_fill(conv)
    return conv


def check_decoder_inputs(
    name: str,
    multi_scale_features: Sequence[Tensor],
    mask_features: Tensor,
    in_channels: int,
    mask_dim: int,
) -> None:
    """Raise ValueError naming the decoder and the input at fault."""
    if len(multi_scale_features) != NUM_FEATURE_LEVELS:
        raise ValueError(
            f"{name} needs {NUM_FEATURE_LEVELS} feature levels, got {len(multi_scale_features)}"
        )
    if mask_features.dim() != 5 or mask_features.shape[2] != mask_dim:
        raise ValueError(
            f"mask_features must be (B, T, {mask_dim}, h, w), got {tuple(mask_features.shape)}"
        )
    if mask_features.shape[1] < 1:
        raise ValueError("mask_features has no frame (T == 0)")
    for level, features in enumerate(multi_scale_features):
        expected = (*mask_features.shape[:2], in_channels)
        if features.dim() != 5 or tuple(features.shape[:3]) != expected:
            raise ValueError(
                f"multi_scale_features[{level}] must be (B, T, C_in, h, w) = "
                f"({expected[0]}, {expected[1]}, {expected[2]}, h, w) like mask_features, "
                f"got {tuple(features.shape)}"
            )


@torch.no_grad()
def frame_attention_mask(
    mask_embeds: Tensor, frame_mask_features: Tensor, size: Tuple[int, int]
) -> Tensor:
    """Masked attention (Mask2Former) of one frame: where the previous prediction's mask,
    resized bilinearly to the attended level, has probability < 0.5.

    Args:
        mask_embeds: (B, N, C) mask embeddings of the previous prediction.
        frame_mask_features: (B, C, h, w) the frame's mask features.
        size: (h_l, w_l) of the level attended to.

    Returns:
        (B, N, h_l * w_l) bool, True = the query may not attend there.
    """
    mask_logits = torch.einsum("bnc,bchw->bnhw", mask_embeds, frame_mask_features)
    mask_logits = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
    return mask_logits.sigmoid().flatten(2) < 0.5


def unmask_empty_rows(masked: Tensor, num_heads: int) -> Tensor:
    """(B, N, S) bool attention mask -> (B * num_heads, N, S), batch-major as
    ``nn.MultiheadAttention`` expects; a query masked everywhere attends everywhere."""
    masked[masked.all(dim=-1)] = False
    return masked.repeat_interleave(num_heads, dim=0)
