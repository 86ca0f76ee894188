"""Attention blocks shared by the transformer decoders.

Layout: sequence-first, ``(S, B, C)``, the default of ``nn.MultiheadAttention`` and of
Mask2Former, so that a decoder can mix these blocks with Mask2Former's without
transposes. Submodule names (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``,
``norm``, ``dropout``, ``layers``) are Mask2Former's, so its COCO weights load into them.

Each block is a residual unit with one LayerNorm: post-norm by default
(``x = norm(x + f(x))``), pre-norm with ``normalize_before=True`` (``x = x + f(norm(x))``).
"""

from typing import Optional

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["SelfAttentionLayer", "CrossAttentionLayer", "FFNLayer", "MLP"]


def _with_pos_embed(tensor: Tensor, pos: Optional[Tensor]) -> Tensor:
    return tensor if pos is None else tensor + pos


def _xavier_init_matrices(module: nn.Module) -> None:
    """Xavier-uniform init of every weight matrix, as Mask2Former's decoder layers."""
    for parameter in module.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)


class _ResidualBlock(nn.Module):
    """A residual unit ``f`` with one LayerNorm ``norm``, dropout ``dropout`` on f's output,
    post-norm (``norm(x + f(x))``) or, with ``normalize_before``, pre-norm
    (``x + f(norm(x))``)."""

    normalize_before: bool

    def _block_input(self, tgt: Tensor) -> Tensor:
        """What ``f`` reads: ``norm(tgt)`` in pre-norm, ``tgt`` in post-norm."""
        return self.norm(tgt) if self.normalize_before else tgt

    def _residual_output(self, tgt: Tensor, update: Tensor) -> Tensor:
        """``tgt + dropout(update)``, then ``norm`` in post-norm."""
        out = tgt + self.dropout(update)
        return out if self.normalize_before else self.norm(out)


class _AttentionBlock(_ResidualBlock):
    """``f`` a multi-head attention, held as ``self.<attention_name>`` (Mask2Former's name,
    so its weights load)."""

    attention_name: str

    def __init__(
        self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False
    ):
        super().__init__()
        attention = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        setattr(self, self.attention_name, attention)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_init_matrices(self)


class SelfAttentionLayer(_AttentionBlock):
    """Multi-head self-attention with residual connection and LayerNorm.

    Queries and keys get ``query_pos`` added; values do not (DETR convention).
    """

    attention_name = "self_attn"

    def forward(
        self,
        tgt: Tensor,
        tgt_mask: Optional[Tensor] = None,
        tgt_key_padding_mask: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
    ) -> Tensor:
        """
        Args:
            tgt: (S, B, C) tokens.
            tgt_mask: (S, S) or (B * nhead, S, S) bool, True = may not attend.
            tgt_key_padding_mask: (B, S) bool, True = padding.
            query_pos: (S, B, C) positional embedding added to queries and keys.

        Returns:
            (S, B, C) updated tokens.
        """
        x = self._block_input(tgt)
        q = k = _with_pos_embed(x, query_pos)
        attended = self.self_attn(
            q, k, value=x, attn_mask=tgt_mask, key_padding_mask=tgt_key_padding_mask
        )[0]
        return self._residual_output(tgt, attended)


class CrossAttentionLayer(_AttentionBlock):
    """Multi-head cross-attention from queries to a memory, with residual and LayerNorm.

    With ``memory_mask`` it is the masked attention of Mask2Former (Eq. 1 of docs/method.md):
    a query only attends to the memory positions its mask lets through.
    """

    attention_name = "multihead_attn"

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_mask: Optional[Tensor] = None,
        pos: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        *,
        memory_key_padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """
        Args:
            tgt: (L, B, C) queries.
            memory: (S, B, C) keys/values (e.g. a flattened feature map, S = h * w).
            memory_mask: (L, S) or (B * nhead, L, S) bool, True = may not attend.
            pos: (S, B, C) positional embedding added to the keys.
            query_pos: (L, B, C) positional embedding added to the queries.
            memory_key_padding_mask: (B, S) bool, True = padding.

        Returns:
            (L, B, C) updated queries.
        """
        x = self._block_input(tgt)
        attended = self.multihead_attn(
            query=_with_pos_embed(x, query_pos),
            key=_with_pos_embed(memory, pos),
            value=memory,
            attn_mask=memory_mask,
            key_padding_mask=memory_key_padding_mask,
        )[0]
        return self._residual_output(tgt, attended)


class FFNLayer(_ResidualBlock):
    """Two-layer feed-forward block (ReLU) with residual connection and LayerNorm."""

    def __init__(
        self,
        d_model: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.0,
        normalize_before: bool = False,
    ):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_init_matrices(self)

    def forward(self, tgt: Tensor) -> Tensor:
        """tgt: (..., C) tokens -> (..., C)."""
        hidden = self.dropout(F.relu(self.linear1(self._block_input(tgt))))
        return self._residual_output(tgt, self.linear2(hidden))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (none after the last)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP needs num_layers >= 1, got {num_layers}")
        self.num_layers = num_layers
        in_dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        out_dims = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(in_dims, out_dims))

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., input_dim) -> (..., output_dim)."""
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < self.num_layers - 1:
                x = F.relu(x)
        return x
