"""The Inter-Frame Recurrent (IFR) transformer decoder (docs/method.md, "Model",
Eq. 1-3).

Layer i (L layers) reads feature level ``i % 3`` (lowest resolution first, as
Mask2Former) and works in two stages:

1. Frame recurrence, frames t = 1..n in order, with ``Q_i^0 = Q_i``::

       A = CrossAttn(Q_i^{t-1}, F_t),  B = CrossAttn(Q_i, F_t)   # Eq. (1)-(2), masked
       Q_i^t = FFN(SelfAttn([A, B])[:N])                          # Eq. (3)

   One cross-attention module computes both A and B (the two query sets go through it
   as one sequence of 2N queries; attention rows are independent, so this is the same as
   two calls). The attention mask of frame t is the previous prediction's mask of frame
   t, as Mask2Former.
2. Clip update: ``Q_{i+1} = FFN(SelfAttn(CrossAttn(Q_i, {Q_i^1..Q_i^n})))``.

Positional embeddings (the paper is silent; choices made here):
- queries of A, of B and the clip queries all get ``query_embed`` (query slot q keeps its
  identity across frame and clip level, which is what loads from Mask2Former);
- in the self-attention over ``Q' = [A, B]`` the two halves get ``query_embed`` plus a
  learned group embedding (``pair_group_embed``, 2 rows, zero at init so the layer starts
  as Mask2Former's self-attention on each half) so attention can tell the frame-level
  half from the clip-level half;
- in the temporal cross-attention, the key ``Q_i^t[q]`` gets ``query_embed[q]`` and no
  temporal embedding: the decoder is trained on 2-frame clips and run on whole videos of
  any length, and frame order already enters through the recurrence.

Layout inside: sequence-first ``(S, B, d)`` as ``ifr.modeling.attention``. Feature tensors
may live on another device than the parameters (long videos on CPU); one frame at a time
is moved to the parameters' device.

The step of stage 1 (``frame_step``, run L x T times in sequence) makes no host
synchronisation, and ``MODEL.IFR.COMPILE_FRAME_STEP`` runs it through ``torch.compile``.
"""

from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from torch import Tensor, nn

from ..attention import MLP, CrossAttentionLayer, SelfAttentionLayer
from ..position_encoding import PositionEmbeddingSine
from ..registry import TRANSFORMER_DECODER_REGISTRY
from .common import (
    NUM_FEATURE_LEVELS,
    ComputeCastMixin,
    attention_stack,
    batch_embedding,
    check_decoder_inputs,
    check_decoder_sizes,
    class_head,
    ffn_stack,
    frame_attention_mask,
    make_input_projs,
    masked_decoder_args,
    unmask_empty_rows,
)

__all__ = ["IFRTransformerDecoder", "FrameStepBlocks", "frame_step", "compiled_frame_step"]


class FrameStepBlocks(NamedTuple):
    """The modules of one decoder layer that one step of the frame recurrence runs."""

    input_proj: nn.Module  # 1x1 projection of the level's features to d
    cross_attention: CrossAttentionLayer  # A and B, Eq. (1)-(2)
    self_attention: SelfAttentionLayer  # over Q' = [A, B], Eq. (3)
    ffn: nn.Module  # FFN of Eq. (3)
    num_heads: int


def frame_step(
    blocks: FrameStepBlocks,
    level_embed: Tensor,
    prev_frame_queries: Tensor,
    clip_queries: Tensor,
    frame_map: Tensor,
    frame_pos: Tensor,
    mask_embeds: Tensor,
    frame_mask_features: Tensor,
    query_pos: Tensor,
    pair_pos: Tensor,
) -> Tensor:
    """One step of the frame recurrence, Q_i^t from Q_i^{t-1}, Q_i and frame t (Eq. 1-3).

    No host synchronisation: no ``.item()``, no boolean-mask indexing, no shape that
    depends on tensor values, so a GPU runs the L x T steps without waiting for the host,
    and ``torch.compile`` captures the step as one graph (``compiled_frame_step``).

    Args:
        blocks: the layer's modules; level_embed: (d,) the level's embedding.
        prev_frame_queries, clip_queries: (N, B, d) Q_i^{t-1} and Q_i.
        frame_map: (B, C_in, h_l, w_l) frame t's features at the layer's level;
            frame_pos: (h_l * w_l, B, d) their sine embedding.
        mask_embeds: (B, N, C) the previous prediction's mask embeddings of frame t;
            frame_mask_features: (B, C, h, w) frame t's mask features (attention mask).
        query_pos: (2N, B, d) query_embed for A's and B's queries; pair_pos: (2N, B, d).

    Returns:
        (N, B, d) Q_i^t.
    """
    attn_mask = frame_step_attention_mask(
        mask_embeds, frame_mask_features, tuple(frame_map.shape[-2:]), blocks.num_heads
    )
    source = blocks.input_proj(frame_map) + level_embed[None, :, None, None]
    source = source.flatten(2).permute(2, 0, 1)  # (h_l * w_l, B, d)
    # A and B (Eq. 1-2) in one call; the output is already Q' = [A, B] of Eq. (2).
    pair = cross_attend_pair(
        blocks.cross_attention,
        prev_frame_queries,
        clip_queries,
        source,
        frame_pos,
        attn_mask,
        query_pos,
    )
    pair = blocks.self_attention(pair, query_pos=pair_pos)
    frame_queries = pair[: clip_queries.shape[0]]  # Chunk: keep the first group, Eq. (3)
    return blocks.ffn(frame_queries)


def frame_step_attention_mask(
    mask_embeds: Tensor, frame_mask_features: Tensor, size: Tuple[int, int], num_heads: int
) -> Tensor:
    """(B * num_heads, N, h_l * w_l) bool masked-attention mask of one frame (Eq. 1, as
    Mask2Former), True = masked; a query whose mask is empty at this size attends
    everywhere instead."""
    masked = frame_attention_mask(mask_embeds, frame_mask_features, size)
    return unmask_empty_rows(masked, num_heads)


def cross_attend_pair(
    cross_attention: CrossAttentionLayer,
    prev_frame_queries: Tensor,
    clip_queries: Tensor,
    source: Tensor,
    source_pos: Tensor,
    attn_mask: Tensor,
    query_pos: Tensor,
) -> Tensor:
    """[A; B] = Attn([Q_i^{t-1}; Q_i], F_t) with one module (Eq. 1-2): attention rows are
    independent, so this is two calls in one. Queries (N, B, d) -> (2N, B, d)."""
    return cross_attention(
        torch.cat([prev_frame_queries, clip_queries], dim=0),
        source,
        memory_mask=attn_mask.repeat(1, 2, 1),
        pos=source_pos,
        query_pos=query_pos,
    )


# torch.compile modes offered for the frame step (MODEL.IFR.COMPILE_MODE).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
_COMPILED_FRAME_STEPS: Dict[str, Callable] = {}


def compiled_frame_step(mode: str = "default") -> Callable:
    """``torch.compile(frame_step, mode=mode)``, built once per mode and shared by every
    decoder and layer (the layer's modules are arguments, so layers share one graph; a
    new input shape, e.g. another feature level, compiles once more)."""
    if mode not in _COMPILED_FRAME_STEPS:
        _allow_frame_step_graphs(_FRAME_STEP_GRAPHS)
        _COMPILED_FRAME_STEPS[mode] = torch.compile(frame_step, mode=mode)
    return _COMPILED_FRAME_STEPS[mode]


# Graphs torch.compile may keep for frame_step: one per feature-level shape (static, then
# dynamic), batch size, autograd on/off, autocast dtype and compile mode add up to more
# than its default limit of 8, past which it would silently run the step eagerly.
_FRAME_STEP_GRAPHS = 64


def _allow_frame_step_graphs(count: int) -> None:
    """Raise torch.compile's per-function graph limit to at least ``count``."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), count))


def frame_step_function(compile_step: bool, mode: str = "default") -> Callable:
    """The frame step to run: ``frame_step`` itself, or compiled in ``mode``.

    "reduce-overhead" (CUDA graphs) is used without autograd only (inference); with
    autograd the step compiles in "default" mode. A CUDA graph's outputs are overwritten
    by its next replay, so each replay starts a new step and its output is copied out
    (the recurrence keeps every frame's queries)."""
    if not compile_step:
        return frame_step
    if mode == "reduce-overhead" and torch.is_grad_enabled():
        mode = "default"
    compiled = compiled_frame_step(mode)
    if mode != "reduce-overhead":
        return compiled

    def replay(*args) -> Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args).clone()

    return replay


@TRANSFORMER_DECODER_REGISTRY.register()
class IFRTransformerDecoder(ComputeCastMixin, nn.Module):
    """IFR decoder: clip-level class logits and per-frame mask embeddings.

    Submodules with a Mask2Former counterpart carry its name (``query_feat``,
    ``query_embed``, ``level_embed``, ``input_proj``, ``transformer_cross_attention_layers``,
    ``transformer_self_attention_layers``, ``transformer_ffn_layers``, ``decoder_norm``,
    ``class_embed``, ``mask_embed``) so COCO weights load; the IFR-only modules are
    ``pair_group_embed``, ``temporal_cross_attention_layers``,
    ``clip_self_attention_layers`` and ``clip_ffn_layers``.
    """

    compute_reference = "query_feat"
    num_feature_levels = NUM_FEATURE_LEVELS
    # K sigmoid classes, no no-object column; "softmax" (K + 1) with MODEL.VIS.CLASS_LOSS.
    class_activation = "sigmoid"

    @configurable
    def __init__(
        self,
        in_channels: int,
        *,
        mask_dim: int,
        num_classes: int,
        hidden_dim: int,
        num_queries: int,
        nheads: int,
        dim_feedforward: int,
        dec_layers: int,
        pre_norm: bool,
        enforce_input_project: bool,
        dropout: float = 0.0,
        test_recurrence: bool = True,
        compile_frame_step: bool = False,
        compile_mode: str = "default",
        class_activation: str = "sigmoid",
        shared_class_head: bool = True,
        temporal_slot_bias: float = 0.0,
        clip_mask_embeds: bool = False,
    ):
        """
        Args:
            in_channels: channels of the pixel decoder's multi-scale features.
            mask_dim: channels of the mask features (C of ``pred_mask_embeds``).
            num_classes: K, columns of ``pred_logits`` (no "no-object" column; K + 1 with
                ``class_activation`` "softmax").
            hidden_dim: d.
            num_queries: N clip-level queries.
            nheads: attention heads.
            dim_feedforward: hidden size of the FFN blocks.
            dec_layers: L, IFR decoder layers (L + 1 predictions with the initial one).
            pre_norm: pre-LayerNorm blocks instead of post-LayerNorm.
            enforce_input_project: a 1x1 conv input projection even when
                ``in_channels == hidden_dim``.
            dropout: dropout of every attention and FFN block.
            test_recurrence: in eval mode, False replaces Q_i^{t-1} by Q_i in Eq. (1)
                (recurrence off: frame t's queries do not depend on frame t-1), a
                diagnostic of what the recurrence contributes. Training always recurs.
            compile_frame_step: run the frame recurrence's step (``frame_step``) through
                ``torch.compile`` (``compile_mode``: "default", "reduce-overhead" = CUDA
                graphs, "max-autotune"); same results up to float rounding.
            class_activation: "sigmoid" (IFR's focal head) or "softmax" (``class_head``).
            shared_class_head: one class head for the initial prediction and every layer
                (Mask2Former's); False gives each of the L + 1 predictions its own.
            temporal_slot_bias: added to the temporal cross-attention's logits where a clip
                query attends to its own slot's frame queries (0: none, the paper's
                uniform start over all N x T frame queries).
            clip_mask_embeds: every prediction also gives ``pred_clip_mask_embeds``
                (B, N, C), the clip-level queries' own mask embeddings (for the clip mask
                loss, ``MODEL.IFR.CLIP_MASK_WEIGHT``).
        """
        super().__init__()
        self.class_activation = class_activation
        check_decoder_sizes(dec_layers, hidden_dim, nheads)
        self.in_channels = in_channels
        self.mask_dim = mask_dim
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.num_queries = num_queries
        self.test_recurrence = test_recurrence
        if compile_mode not in COMPILE_MODES:
            raise ValueError(
                f"MODEL.IFR.COMPILE_MODE must be one of {', '.join(COMPILE_MODES)}; "
                f"got {compile_mode!r}"
            )
        self.compile_frame_step = compile_frame_step
        self.compile_mode = compile_mode

        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)

        def attention_blocks(block_class):
            return attention_stack(block_class, dec_layers, hidden_dim, nheads, dropout, pre_norm)

        def ffn_blocks():
            return ffn_stack(dec_layers, hidden_dim, dim_feedforward, dropout, pre_norm)

        # Frame recurrence: the A/B cross-attention, the self-attention over Q' and its FFN.
        self.transformer_cross_attention_layers = attention_blocks(CrossAttentionLayer)
        self.transformer_self_attention_layers = attention_blocks(SelfAttentionLayer)
        self.transformer_ffn_layers = ffn_blocks()
        # Clip update.
        self.temporal_cross_attention_layers = attention_blocks(CrossAttentionLayer)
        self.clip_self_attention_layers = attention_blocks(SelfAttentionLayer)
        self.clip_ffn_layers = ffn_blocks()

        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.pair_group_embed = nn.Embedding(2, hidden_dim)
        nn.init.zeros_(self.pair_group_embed.weight)
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)
        self.input_proj = make_input_projs(in_channels, hidden_dim, enforce_input_project)

        if shared_class_head:
            self.class_embed = class_head(hidden_dim, num_classes, class_activation)
        else:
            self.class_embed = nn.ModuleList(
                class_head(hidden_dim, num_classes, class_activation) for _ in range(dec_layers + 1)
            )
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.temporal_slot_bias = float(temporal_slot_bias)
        self.clip_mask_embeds = clip_mask_embeds

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_dim: int) -> dict:
        return {
            **masked_decoder_args(cfg, in_channels, mask_dim, cls.class_activation),
            "dropout": cfg.MODEL.VIS.DROPOUT,
            "test_recurrence": cfg.MODEL.IFR.TEST.RECURRENCE,
            "compile_frame_step": cfg.MODEL.IFR.COMPILE_FRAME_STEP,
            "compile_mode": cfg.MODEL.IFR.COMPILE_MODE,
            "shared_class_head": cfg.MODEL.IFR.SHARED_CLASS_HEAD,
            "temporal_slot_bias": cfg.MODEL.IFR.TEMPORAL_SLOT_BIAS,
            "clip_mask_embeds": cfg.MODEL.IFR.CLIP_MASK_WEIGHT > 0,
        }

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        multi_scale_features: Sequence[Tensor],
        mask_features: Tensor,
        return_masks: bool = True,
    ) -> Dict:
        """
        Args:
            multi_scale_features: 3 tensors (B, T, C_in, h_l, w_l), stride 32, 16, 8.
            mask_features: (B, T, C, h, w), C = mask_dim.
            return_masks: also return ``pred_masks`` (B, N, T, h, w); without it no
                (B, N, T, h, w) tensor is ever built.

        Returns:
            dict with ``pred_logits`` (B, N, K) clip-level logits, ``pred_mask_embeds``
            (B, N, T, C), ``pred_clip_mask_embeds`` (B, N, C) if ``clip_mask_embeds``,
            ``pred_masks`` (B, N, T, h, w) logits if ``return_masks``, and
            ``aux_outputs``: L dicts of the same keys, for the prediction from the initial
            queries and after every layer but the last (training mode only; empty in eval
            mode, so inference memory does not grow with L x T).
        """
        self._check_inputs(multi_scale_features, mask_features)
        batch_size, num_frames = mask_features.shape[:2]

        clip_queries = batch_embedding(self.query_feat, batch_size)  # (N, B, d)
        # The initial prediction uses the initial clip queries as every frame's queries.
        frame_queries = clip_queries.permute(1, 0, 2).unsqueeze(2).expand(-1, -1, num_frames, -1)
        predictions = [self._predict(0, clip_queries, frame_queries, mask_features, return_masks)]
        for layer in range(self.num_layers):
            frame_queries = self._frame_recurrence(
                layer,
                clip_queries,
                multi_scale_features,
                mask_features,
                predictions[-1]["pred_mask_embeds"],
            )
            clip_queries = self._clip_update(layer, clip_queries, frame_queries)
            predictions.append(
                self._predict(layer + 1, clip_queries, frame_queries, mask_features, return_masks)
            )
            if not self.training:  # aux predictions only serve deep supervision
                del predictions[:-1]

        outputs = predictions[-1]
        outputs["aux_outputs"] = predictions[:-1]
        return outputs

    def _check_inputs(self, multi_scale_features: Sequence[Tensor], mask_features: Tensor) -> None:
        name = type(self).__name__
        check_decoder_inputs(
            name, multi_scale_features, mask_features, self.in_channels, self.mask_dim
        )

    # ------------------------------------------------------ frame recurrence
    def _frame_recurrence(
        self,
        layer: int,
        clip_queries: Tensor,
        multi_scale_features: Sequence[Tensor],
        mask_features: Tensor,
        prev_mask_embeds: Tensor,
    ) -> Tensor:
        """Frame-level queries of one layer, frames in order (Eq. 1-3).

        Args:
            layer: decoder layer i; it reads feature level ``i % 3``.
            clip_queries: (N, B, d) clip-level queries Q_i.
            multi_scale_features: 3 tensors (B, T, C_in, h_l, w_l), any device.
            mask_features: (B, T, C, h, w), any device.
            prev_mask_embeds: (B, N, T, C) mask embeddings of the previous prediction;
                they give each frame's attention mask.

        Returns:
            (B, N, T, d) frame-level queries Q_i^1..Q_i^T.
        """
        level = layer % self.num_feature_levels
        level_features = multi_scale_features[level]
        batch_size = clip_queries.shape[1]
        blocks = self._step_blocks(layer)
        level_embed = self.level_embed.weight[level]
        query_pos = self._query_pos(batch_size).repeat(2, 1, 1)  # A's and B's queries
        pair_pos = self._pair_query_pos(batch_size)
        step = frame_step_function(self.compile_frame_step, self.compile_mode)
        frame_pos = None

        recurrent = self.training or self.test_recurrence
        # Q_i^0 = Q_i. Compiled: a copy, as a graph is specialised on which inputs alias.
        initial = clip_queries.clone() if self.compile_frame_step else clip_queries
        prev_frame_queries = initial
        per_frame = []
        for t in range(level_features.shape[1]):
            frame_map = self._to_compute(level_features[:, t])
            if frame_pos is None:  # the sine embedding depends only on the map's shape
                frame_pos = self.pe_layer(frame_map).flatten(2).permute(2, 0, 1)
            prev_frame_queries = step(
                blocks,
                level_embed,
                prev_frame_queries,
                clip_queries,
                frame_map,
                frame_pos,
                prev_mask_embeds[:, :, t],
                self._to_compute(mask_features[:, t]),
                query_pos,
                pair_pos,
            )
            per_frame.append(prev_frame_queries)
            if not recurrent:  # recurrence off: every frame starts from Q_i
                prev_frame_queries = initial
        return torch.stack(per_frame, dim=0).permute(2, 1, 0, 3)  # (T, N, B, d) -> (B, N, T, d)

    def _step_blocks(self, layer: int) -> FrameStepBlocks:
        """The modules layer ``layer``'s frame step runs (it reads level ``layer % 3``)."""
        return FrameStepBlocks(
            input_proj=self.input_proj[layer % self.num_feature_levels],
            cross_attention=self.transformer_cross_attention_layers[layer],
            self_attention=self.transformer_self_attention_layers[layer],
            ffn=self.transformer_ffn_layers[layer],
            num_heads=self.num_heads,
        )

    # ------------------------------------------------------------ clip update
    def _clip_update(self, layer: int, clip_queries: Tensor, frame_queries: Tensor) -> Tensor:
        """Q_{i+1} from Q_i and all frame-level queries.

        Args:
            clip_queries: (N, B, d) Q_i.
            frame_queries: (B, N, T, d) Q_i^1..Q_i^T.

        Returns:
            (N, B, d) Q_{i+1}.
        """
        batch_size, num_queries, num_frames, hidden_dim = frame_queries.shape
        memory = frame_queries.permute(2, 1, 0, 3).reshape(
            num_frames * num_queries, batch_size, hidden_dim
        )
        query_pos = self._query_pos(batch_size)
        clip_queries = self.temporal_cross_attention_layers[layer](
            clip_queries,
            memory,
            memory_mask=self._temporal_slot_prior(num_frames, memory.dtype, memory.device),
            pos=query_pos.repeat(num_frames, 1, 1),
            query_pos=query_pos,
        )
        clip_queries = self.clip_self_attention_layers[layer](clip_queries, query_pos=query_pos)
        return self.clip_ffn_layers[layer](clip_queries)

    def _temporal_slot_prior(
        self, num_frames: int, dtype: torch.dtype, device: torch.device
    ) -> Optional[Tensor]:
        """(N, T * N) float added to the temporal cross-attention's logits:
        ``temporal_slot_bias`` where clip query n meets frame query (t, n), else 0; None
        without a bias. The memory is ordered frame by frame (index t * N + n)."""
        if self.temporal_slot_bias == 0.0:
            return None
        own_slot = torch.eye(self.num_queries, dtype=dtype, device=device).repeat(1, num_frames)
        return own_slot * self.temporal_slot_bias

    # ------------------------------------------------------------- heads
    def _predict(
        self,
        index: int,
        clip_queries: Tensor,
        frame_queries: Tensor,
        mask_features: Tensor,
        return_masks: bool,
    ) -> Dict[str, Tensor]:
        """Heads of prediction ``index`` (0: the initial queries', l: layer l's) on clip
        queries (N, B, d) and frame queries (B, N, T, d)."""
        head = self.class_embed
        if isinstance(head, nn.ModuleList):
            head = head[index]
        prediction = {
            "pred_logits": head(self.decoder_norm(clip_queries)).transpose(0, 1),
            "pred_mask_embeds": self.mask_embed(self.decoder_norm(frame_queries)),
        }
        if self.clip_mask_embeds:
            clip_embeds = self.mask_embed(self.decoder_norm(clip_queries))  # (N, B, C)
            prediction["pred_clip_mask_embeds"] = clip_embeds.transpose(0, 1)
        if return_masks:
            prediction["pred_masks"] = self._masks_from_embeds(
                prediction["pred_mask_embeds"], mask_features
            )
        return prediction

    def _masks_from_embeds(self, mask_embeds: Tensor, mask_features: Tensor) -> Tensor:
        """(B, N, T, C) embeds . (B, T, C, h, w) features -> (B, N, T, h, w) mask logits."""
        per_frame = [
            torch.einsum(
                "bnc,bchw->bnhw",
                mask_embeds[:, :, t],
                self._to_compute(mask_features[:, t]),
            )
            for t in range(mask_embeds.shape[2])
        ]
        return torch.stack(per_frame, dim=2)

    # ---------------------------------------------------- positional embeddings
    def _query_pos(self, batch_size: int) -> Tensor:
        return batch_embedding(self.query_embed, batch_size)  # (N, B, d)

    def _pair_query_pos(self, batch_size: int) -> Tensor:
        """(2N, B, d): query_embed for both halves of Q' plus their group embedding."""
        query_pos = self._query_pos(batch_size)
        groups = self.pair_group_embed.weight[:, None, None, :]  # (2, 1, 1, d)
        return (query_pos.unsqueeze(0) + groups).flatten(0, 1)
