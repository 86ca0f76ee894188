"""Pieces shared by the transformer decoders: size checks, stacks of attention/FFN
blocks, input projections, the feature cast to the parameters' device and dtype, the
prediction heads on normalised queries, input checks and the masked-attention mask of one
frame."""

import math
from typing import Dict, Optional, Sequence, Tuple, Type

import fvcore.nn.weight_init as weight_init
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...layers.classification import CLASS_ACTIVATIONS, configured_class_activation
from ..attention import FFNLayer

NUM_FEATURE_LEVELS = 3  # the pixel decoder's strides 32, 16, 8, lowest resolution first


def query_decoder_args(cfg, in_channels: int, mask_dim: int) -> dict:
    """The ``from_config`` arguments shared by the query decoders configured by
    ``MODEL.VIS.*`` (IFR, Mask2Former-VIS, IFC): sizes, L and the norm placement."""
    model = cfg.MODEL.VIS
    return {
        "in_channels": in_channels,
        "mask_dim": mask_dim,
        "num_classes": model.NUM_CLASSES,
        "hidden_dim": model.HIDDEN_DIM,
        "num_queries": model.NUM_QUERIES,
        "nheads": model.NHEADS,
        "dim_feedforward": model.DIM_FEEDFORWARD,
        "dec_layers": model.DEC_LAYERS,
        "pre_norm": model.PRE_NORM,
    }


def masked_decoder_args(cfg, in_channels: int, mask_dim: int, own_class_activation: str) -> dict:
    """The ``from_config`` arguments shared by the Mask2Former-style decoders (IFR and
    Mask2Former-VIS): ``query_decoder_args``, ``enforce_input_project`` and the
    ``class_activation`` of ``MODEL.VIS.CLASS_LOSS`` (``own_class_activation``, the
    decoder's own, when it is ""). ``dec_layers`` is L itself (Mask2Former's DEC_LAYERS
    counts the initial prediction too)."""
    return {
        **query_decoder_args(cfg, in_channels, mask_dim),
        "enforce_input_project": cfg.MODEL.VIS.ENFORCE_INPUT_PROJ,
        "class_activation": configured_class_activation(cfg, own_class_activation),
    }


def class_head(hidden_dim: int, num_classes: int, activation: str) -> nn.Linear:
    """The class logits of the queries: K columns for "sigmoid" (focal loss), with every
    class starting at probability 0.01 (RetinaNet's prior, so that the many background
    queries do not swamp the loss); K + 1 for "softmax", the last "no-object", with
    PyTorch's default initialisation (as Mask2Former)."""
    if activation not in CLASS_ACTIVATIONS:
        raise ValueError(f"class activation must be one of {CLASS_ACTIVATIONS}, got {activation!r}")
    if activation == "softmax":
        return nn.Linear(hidden_dim, num_classes + 1)
    head = nn.Linear(hidden_dim, num_classes)
    nn.init.constant_(head.bias, -math.log((1 - 0.01) / 0.01))
    return head


def check_decoder_sizes(dec_layers: int, hidden_dim: int, nheads: int) -> None:
    """Raise ValueError naming the MODEL.VIS key at fault: L >= 1, d even (sine position
    embedding of d / 2 per axis) and divisible by the heads."""
    if dec_layers < 1:
        raise ValueError(f"MODEL.VIS.DEC_LAYERS must be >= 1, got {dec_layers}")
    if hidden_dim % 2 or hidden_dim % nheads:
        raise ValueError(
            f"MODEL.VIS.HIDDEN_DIM ({hidden_dim}) must be even and divisible by "
            f"MODEL.VIS.NHEADS ({nheads})"
        )


def attention_stack(
    block_class: Type[nn.Module],
    num_layers: int,
    hidden_dim: int,
    nheads: int,
    dropout: float = 0.0,
    pre_norm: bool = False,
) -> nn.ModuleList:
    """``num_layers`` x ``block_class(hidden_dim, nheads, dropout, pre_norm)``
    (``SelfAttentionLayer`` or ``CrossAttentionLayer``), one per layer."""
    return nn.ModuleList(
        block_class(hidden_dim, nheads, dropout=dropout, normalize_before=pre_norm)
        for _ in range(num_layers)
    )


def ffn_stack(
    num_layers: int,
    hidden_dim: int,
    dim_feedforward: int,
    dropout: float = 0.0,
    pre_norm: bool = False,
) -> nn.ModuleList:
    """``num_layers`` x ``FFNLayer(hidden_dim, dim_feedforward, dropout, pre_norm)``."""
    return nn.ModuleList(
        FFNLayer(hidden_dim, dim_feedforward, dropout=dropout, normalize_before=pre_norm)
        for _ in range(num_layers)
    )


def make_input_proj(in_channels: int, hidden_dim: int, enforce: bool) -> nn.Module:
    """1x1 conv from the pixel decoder's channels to d (identity when they are equal and
    ``enforce`` is False), as Mask2Former's ``input_proj``."""
    if in_channels == hidden_dim and not enforce:
        return nn.Sequential()
    conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
    weight_init.c2_xavier_fill(conv)
    return conv


def make_input_projs(
    in_channels: int, hidden_dim: int, enforce: bool, num_levels: int = NUM_FEATURE_LEVELS
) -> nn.ModuleList:
    """One ``make_input_proj`` per feature level (Mask2Former's ``input_proj.{level}``)."""
    return nn.ModuleList(
        make_input_proj(in_channels, hidden_dim, enforce) for _ in range(num_levels)
    )


def batch_embedding(embedding: nn.Embedding, batch_size: int) -> Tensor:
    """(N, d) learnt queries -> (N, B, d), the sequence-first layout of the blocks."""
    return embedding.weight.unsqueeze(1).repeat(1, batch_size, 1)


def predict_heads(
    queries: Tensor, decoder_norm: nn.Module, class_embed: nn.Module, mask_embed: nn.Module
) -> Tuple[Tensor, Tensor]:
    """Mask2Former's heads on the queries (N, B, d) after ``decoder_norm``: class logits
    (B, N, K') and mask embeddings (B, N, C)."""
    decoded = decoder_norm(queries).transpose(0, 1)  # (B, N, d)
    return class_embed(decoded), mask_embed(decoded)


class ComputeCastMixin:
    """``device`` and ``_to_compute`` of a decoder whose stored input features (any
    device, float32 or float16) are cast to the device and dtype of its parameter
    ``self.<compute_reference>.weight``."""

    compute_reference = "query_embed"

    @property
    def device(self) -> torch.device:
        return getattr(self, self.compute_reference).weight.device

    def _to_compute(self, features: Tensor) -> Tensor:
        """Stored features -> the parameters' device and dtype."""
        reference = getattr(self, self.compute_reference).weight
        return features.to(reference.device, reference.dtype, non_blocking=True)


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
    ``nn.MultiheadAttention`` expects; a query masked everywhere attends everywhere.

    Elementwise (no boolean-mask indexing, whose nonzero() waits for the device)."""
    masked = masked & ~masked.all(dim=-1, keepdim=True)
    return masked.repeat_interleave(num_heads, dim=0)


def masks_as_embeddings(masks: Tensor) -> Dict[str, Tensor]:
    """Masks a decoder predicts directly (VisTR's fused masks, TeViT's pasted RoI masks),
    (B, N, T, h, w) logits, in the shared inference interface, where query q's mask in
    frame t is ``pred_mask_embeds[:, q, t] . mask_features[:, t]``: the mask features are
    the masks themselves, one channel per query, ``mask_features`` (B, T, N, h, w), and
    query q's embedding selects its channel, ``pred_mask_embeds`` (B, N, T, N) one-hot.
    The product is exactly ``masks``."""
    batch, num_queries, frames = masks.shape[:3]
    select = torch.eye(num_queries, device=masks.device, dtype=masks.dtype)
    return {
        "pred_mask_embeds": select[None, :, None].expand(batch, -1, frames, -1),
        "mask_features": masks.transpose(1, 2),
    }


def padding_mask(
    image_sizes: Sequence[Tuple[int, int]], grid: Tuple[int, int], stride: int, device
) -> Tensor:
    """(B, h, w) bool, True at the cells of a stride-``stride`` grid of size ``grid`` that
    lie in the padding of each (h_b, w_b) image (beyond ceil(h_b / stride) rows and
    ceil(w_b / stride) columns, as IFC's ``MaskedBackbone``)."""
    mask = torch.ones((len(image_sizes), *grid), dtype=torch.bool, device=device)
    for index, (height, width) in enumerate(image_sizes):
        mask[index, : math.ceil(height / stride), : math.ceil(width / stride)] = False
    return mask


def clip_padding_mask(
    image_sizes: Optional[Sequence[Tuple[int, int]]], features: Tensor, stride: int
) -> Optional[Tensor]:
    """(B, T, h, w) ``padding_mask`` of clip features (B, T, C, h, w) at ``stride``, the
    same for every frame of a clip; None without ``image_sizes``."""
    if image_sizes is None:
        return None
    batch, frames = features.shape[:2]
    mask = padding_mask(image_sizes, tuple(features.shape[-2:]), stride, features.device)
    return mask[:, None].expand(batch, frames, *mask.shape[-2:])
