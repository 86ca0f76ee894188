"""The Mask2Former-VIS transformer decoder (Cheng et al., "Mask2Former for Video Instance
Segmentation", 2021), the baseline IFR builds on.

N clip-level queries, each predicting one class and one mask embedding for the whole
clip. Layer i (L layers) reads feature level ``i % 3`` of EVERY frame at once:

    Q = FFN(SelfAttn(MaskedCrossAttn(Q, [F_1 .. F_T])))

The cross-attention keys are the T * h_l * w_l tokens of the level, with the 3-D sine
embedding of (t, y, x) (``PositionEmbeddingSine3D``) and a level embedding; the attention
mask is the previous prediction's mask over the whole clip (probability < 0.5 after
bilinear resizing to the level; a query masked everywhere attends everywhere). There are
L + 1 predictions (the initial queries' and one per layer): Mask2Former-VIS's
``DEC_LAYERS: 10`` is ``L = 9`` (``MODEL.VIS.DEC_LAYERS: 9``).

Heads: ``class_embed`` Linear(d, K + 1), the last column the "no-object" class (softmax);
``mask_embed`` a 3-layer MLP; masks ``einsum("bqc,btchw->bqthw")``: one embedding per
query for all frames.

Output contract (docs/design.md, shared with IFR so inference is shared):
``pred_mask_embeds`` (B, N, T, C) is the query's one embedding REPEATED over the T frames.

Submodule names are Mask2Former-VIS's (``sem_seg_head.predictor.*`` of its checkpoints),
so its model-zoo weights load with every tensor used (``ifr.checkpoint``).
"""

from typing import Dict, List, Sequence, Tuple

import torch
from detectron2.config import configurable
from torch import Tensor, nn

from ..attention import MLP, CrossAttentionLayer, SelfAttentionLayer
from ..position_encoding import PositionEmbeddingSine3D
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
    predict_heads,
    unmask_empty_rows,
)

__all__ = ["VideoMultiScaleMaskedTransformerDecoder"]


@TRANSFORMER_DECODER_REGISTRY.register()
class VideoMultiScaleMaskedTransformerDecoder(ComputeCastMixin, nn.Module):
    """Mask2Former-VIS decoder: clip-level class logits (K + 1 columns) and masks."""

    compute_reference = "query_feat"
    num_feature_levels = NUM_FEATURE_LEVELS
    # K classes + no-object, softmax; "sigmoid" (K, focal) with MODEL.VIS.CLASS_LOSS.
    class_activation = "softmax"

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
        class_activation: str = "softmax",
    ):
        """
        Args:
            in_channels: channels of the pixel decoder's multi-scale features.
            mask_dim: channels of the mask features (C of the mask embeddings).
            num_classes: K; ``pred_logits`` has K + 1 columns, the last "no-object" (K
                with ``class_activation`` "sigmoid").
            hidden_dim: d.
            num_queries: N.
            nheads: attention heads.
            dim_feedforward: hidden size of the FFN blocks.
            dec_layers: L decoder layers (Mask2Former-VIS's DEC_LAYERS minus 1).
            pre_norm: pre-LayerNorm blocks instead of post-LayerNorm.
            enforce_input_project: a 1x1 conv input projection even when
                ``in_channels == hidden_dim``.
            class_activation: "softmax" (Mask2Former's head) or "sigmoid" (``class_head``).
        """
        super().__init__()
        check_decoder_sizes(dec_layers, hidden_dim, nheads)
        self.in_channels = in_channels
        self.mask_dim = mask_dim
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.num_queries = num_queries
        self.class_activation = class_activation

        self.pe_layer = PositionEmbeddingSine3D(hidden_dim // 2, normalize=True)
        self.transformer_self_attention_layers = attention_stack(
            SelfAttentionLayer, dec_layers, hidden_dim, nheads, pre_norm=pre_norm
        )
        self.transformer_cross_attention_layers = attention_stack(
            CrossAttentionLayer, dec_layers, hidden_dim, nheads, pre_norm=pre_norm
        )
        self.transformer_ffn_layers = ffn_stack(
            dec_layers, hidden_dim, dim_feedforward, pre_norm=pre_norm
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)
        self.input_proj = make_input_projs(in_channels, hidden_dim, enforce_input_project)
        self.class_embed = class_head(hidden_dim, num_classes, class_activation)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_dim: int) -> dict:
        # dec_layers is L: Mask2Former-VIS's DEC_LAYERS (10) counts the initial prediction.
        return masked_decoder_args(cfg, in_channels, mask_dim, cls.class_activation)

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
            return_masks: also return ``pred_masks`` (B, N, T, h, w).

        Returns:
            dict with ``pred_logits`` (B, N, K + 1), ``pred_mask_embeds`` (B, N, T, C) (one
            embedding per query, repeated over T), ``pred_masks`` (B, N, T, h, w) logits if
            ``return_masks``, and ``aux_outputs``: L dicts of the same keys for the
            initial prediction and every layer but the last (training mode only; empty in
            eval mode).
        """
        check_decoder_inputs(
            type(self).__name__,
            multi_scale_features,
            mask_features,
            self.in_channels,
            self.mask_dim,
        )
        batch_size, num_frames = mask_features.shape[:2]
        sources, positions, sizes = self._sources(multi_scale_features)
        query_pos = batch_embedding(self.query_embed, batch_size)  # (N, B, d)
        queries = batch_embedding(self.query_feat, batch_size)

        predictions = [self._predict(queries, num_frames)]
        for layer in range(self.num_layers):
            level = layer % self.num_feature_levels
            attn_mask = self._attention_mask(
                predictions[-1]["pred_mask_embeds"][:, :, 0], mask_features, sizes[level]
            )
            queries = self.transformer_cross_attention_layers[layer](
                queries,
                sources[level],
                memory_mask=attn_mask,
                pos=positions[level],
                query_pos=query_pos,
            )
            queries = self.transformer_self_attention_layers[layer](queries, query_pos=query_pos)
            queries = self.transformer_ffn_layers[layer](queries)
            predictions.append(self._predict(queries, num_frames))
            if not self.training:  # aux predictions only serve deep supervision
                del predictions[:-1]

        if return_masks:
            for prediction in predictions:
                prediction["pred_masks"] = self._masks(
                    prediction["pred_mask_embeds"][:, :, 0], mask_features
                )
        outputs = predictions[-1]
        outputs["aux_outputs"] = predictions[:-1]
        return outputs

    def _sources(
        self, multi_scale_features: Sequence[Tensor]
    ) -> Tuple[List[Tensor], List[Tensor], List[Tuple[int, int]]]:
        """Per level: the clip's tokens (T * h_l * w_l, B, d) (frame-major) with level
        embedding, their 3-D sine embedding of the same shape, and (h_l, w_l)."""
        sources, positions, sizes = [], [], []
        for level, features in enumerate(multi_scale_features):
            features = self._to_compute(features)
            batch_size, num_frames, _, height, width = features.shape
            projected = self.input_proj[level](features.flatten(0, 1)).flatten(2)
            projected = projected + self.level_embed.weight[level][None, :, None]
            projected = projected.view(batch_size, num_frames, -1, height * width)
            pos = self.pe_layer(features).flatten(3)  # (B, T, d, h * w)
            # (B, T, d, hw) -> (T, hw, B, d) -> (T * hw, B, d)
            sources.append(projected.permute(1, 3, 0, 2).flatten(0, 1))
            positions.append(pos.permute(1, 3, 0, 2).flatten(0, 1))
            sizes.append((height, width))
        return sources, positions, sizes

    def _attention_mask(
        self, mask_embeds: Tensor, mask_features: Tensor, size: Tuple[int, int]
    ) -> Tensor:
        """Masked attention over the clip.

        Args:
            mask_embeds: (B, N, C) the previous prediction's mask embeddings.
            mask_features: (B, T, C, h, w), any device.
            size: (h_l, w_l) of the level attended to.

        Returns:
            (B * nheads, N, T * h_l * w_l) bool, frame-major like the sources, True = may
            not attend; a query masked in every frame attends everywhere.
        """
        per_frame = [
            frame_attention_mask(mask_embeds, self._to_compute(mask_features[:, t]), size)
            for t in range(mask_features.shape[1])
        ]
        return unmask_empty_rows(torch.cat(per_frame, dim=2), self.num_heads)

    def _predict(self, queries: Tensor, num_frames: int) -> Dict[str, Tensor]:
        """Heads on the queries (N, B, d): logits (B, N, K + 1), embeds (B, N, T, C)."""
        logits, mask_embeds = predict_heads(
            queries, self.decoder_norm, self.class_embed, self.mask_embed
        )
        return {
            "pred_logits": logits,
            "pred_mask_embeds": mask_embeds.unsqueeze(2).expand(-1, -1, num_frames, -1),
        }

    def _masks(self, mask_embeds: Tensor, mask_features: Tensor) -> Tensor:
        """(B, N, C) embeds . (B, T, C, h, w) features -> (B, N, T, h, w) mask logits."""
        return torch.einsum("bqc,btchw->bqthw", mask_embeds, self._to_compute(mask_features))
