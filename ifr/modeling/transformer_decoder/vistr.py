"""VisTR's transformer (Wang et al., "End-to-End Video Instance Segmentation with
Transformers", CVPR 2021), registered as ``VisTRTransformerDecoder``.

VisTR has no pixel decoder: its encoder-decoder transformer reads the backbone's stride-32
features of all T frames as one sequence of T * h * w tokens with a 3-D (t, y, x) sine
position encoding, and T * n learnt *instance-sequence* queries, n per frame in frame order
(query ``t * n + i`` is instance slot i in frame t), decode every instance of every frame
at once. A query predicts a class (K + 1 with "no object") and a normalised box
(cx, cy, w, h) in its frame; the mask head (``vistr_mask_head``) turns the decoder output
and the memory into mask logits, fused over the clip per instance slot.

The encoder-decoder lives here, not in a separate module: it is the whole of VisTR's
"transformer decoder" stage and no other system uses it. Its blocks are the shared
``ifr.modeling.attention`` layers, whose semantics are DETR's (post-norm by default,
positions added to queries and keys, not to values; dropout in attention and FFN).

Shape shorthand: B videos, T frames, n instance slots per frame, Q = T * n queries,
d width, (h, w) the stride-32 feature size, S = T * h * w tokens, K classes.
"""

from typing import Dict, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from torch import Tensor, nn

from ..attention import MLP, CrossAttentionLayer, SelfAttentionLayer
from ..position_encoding import PositionEmbeddingSine
from ..registry import TRANSFORMER_DECODER_REGISTRY
from .common import (
    ComputeCastMixin,
    attention_stack,
    clip_padding_mask,
    ffn_stack,
    masks_as_embeddings,
)
from .vistr_mask_head import VisTRMaskHead

# Backbone outputs VisTR reads: the transformer's input and the mask head's FPN levels.
VISTR_IN_FEATURES = ("res2", "res3", "res4", "res5")


class VisTRPositionEmbedding3D(PositionEmbeddingSine):
    """VisTR's 3-D sine position encoding: three embeddings of ``num_pos_feats`` channels
    each, of the frame z, the row y and the column x, CONCATENATED in that order (z, y, x)
    (Mask2Former-VIS's ``PositionEmbeddingSine3D`` instead adds a time embedding to a 2-D
    one). Channel ``2k`` / ``2k+1`` of a part is ``sin`` / ``cos(p / T^(2k / F))``, with
    p the 1-based index along its axis, normalised to ``(0, scale]`` with ``normalize``."""

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            x: (B, T, C, H, W) clip features; only shape, device and dtype are used.
            mask: optional (B, T, H, W) bool, True at padded pixels.
        Returns:
            (B, T, 3 * num_pos_feats, H, W) embeddings, dtype of ``x``.
        """
        embeds = self._clip_positions(x, mask, "VisTR's 3-D encoding")
        pos = torch.cat([self._embed_coordinate(e) for e in embeds], dim=-1)
        return pos.permute(0, 1, 4, 2, 3).to(x.dtype)


class VisTRTransformer(nn.Module):
    """DETR's encoder-decoder from the shared attention blocks: ``enc_layers`` of
    (self-attention, FFN) over the tokens, ``dec_layers`` of (self-attention,
    cross-attention, FFN) over the queries, which start at zero and carry their learnt
    embedding as position; every decoder layer's output goes through ``decoder_norm``."""

    def __init__(
        self,
        hidden_dim: int,
        nheads: int,
        dim_feedforward: int,
        enc_layers: int,
        dec_layers: int,
        dropout: float,
        pre_norm: bool,
    ):
        super().__init__()
        if enc_layers < 1 or dec_layers < 1:
            raise ValueError(
                f"MODEL.VISTR.ENC_LAYERS ({enc_layers}) and DEC_LAYERS ({dec_layers}) must be >= 1"
            )
        blocks = {"dropout": dropout, "pre_norm": pre_norm}
        self.encoder_self_attention_layers = attention_stack(
            SelfAttentionLayer, enc_layers, hidden_dim, nheads, **blocks
        )
        self.encoder_ffn_layers = ffn_stack(enc_layers, hidden_dim, dim_feedforward, **blocks)
        # DETR: a final encoder norm only with pre-norm blocks.
        self.encoder_norm = nn.LayerNorm(hidden_dim) if pre_norm else nn.Identity()
        self.self_attention_layers = attention_stack(
            SelfAttentionLayer, dec_layers, hidden_dim, nheads, **blocks
        )
        self.cross_attention_layers = attention_stack(
            CrossAttentionLayer, dec_layers, hidden_dim, nheads, **blocks
        )
        self.ffn_layers = ffn_stack(dec_layers, hidden_dim, dim_feedforward, **blocks)
        self.decoder_norm = nn.LayerNorm(hidden_dim)

    def forward(
        self, src: Tensor, pos: Tensor, query_pos: Tensor, padding: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """
        Args:
            src: (S, B, d) tokens; pos: (S, B, d) their position embedding;
            query_pos: (Q, B, d) query embeddings.
            padding: optional (B, S) bool, True at tokens of the padding: keys of no
                attention (DETR's ``key_padding_mask``).
        Returns:
            hs: (L, Q, B, d) normalised output of every decoder layer; memory: (S, B, d).
        """
        memory = src
        for attention, ffn in zip(self.encoder_self_attention_layers, self.encoder_ffn_layers):
            memory = ffn(attention(memory, tgt_key_padding_mask=padding, query_pos=pos))
        memory = self.encoder_norm(memory)
        tgt = torch.zeros_like(query_pos)
        outputs = []
        for self_attn, cross_attn, ffn in zip(
            self.self_attention_layers, self.cross_attention_layers, self.ffn_layers
        ):
            tgt = self_attn(tgt, query_pos=query_pos)
            tgt = cross_attn(
                tgt, memory, pos=pos, query_pos=query_pos, memory_key_padding_mask=padding
            )
            tgt = ffn(tgt)
            outputs.append(self.decoder_norm(tgt))
        return torch.stack(outputs), memory


@TRANSFORMER_DECODER_REGISTRY.register()
class VisTRTransformerDecoder(ComputeCastMixin, nn.Module):
    """VisTR from backbone features to per-frame classes, boxes and fused masks.

    Inputs follow the shared decoder interface, with the backbone's own features (VisTR
    has no pixel decoder, see ``ifr.modeling.meta_arch.vistr``): ``multi_scale_features``
    = res5, res4, res3 and ``mask_features`` = res2, each (B, T, C_l, H_l, W_l).

    A clip of T' < T frames (a short video or the last clip) is filled to T frames by
    repeating its frames cyclically, as VisTR's inference does, and only the first T'
    frames' predictions are returned; a longer clip is refused (per-clip inference,
    ``MODEL.VIS.TEST.MODE "clip"`` with ``CLIP_LENGTH <= MODEL.VISTR.NUM_FRAMES``).
    """

    class_activation = "softmax"
    uses_image_sizes = True  # given each clip's size before padding (``image_sizes``)
    coarse_stride = 32  # of res5, the transformer's tokens

    @configurable
    def __init__(
        self,
        *,
        in_channels: Dict[str, int],
        num_classes: int,
        num_frames: int,
        num_instances: int,
        hidden_dim: int,
        nheads: int,
        dim_feedforward: int,
        enc_layers: int,
        dec_layers: int,
        dropout: float,
        pre_norm: bool,
    ):
        """
        Args:
            in_channels: channels of the backbone's res2 .. res5 outputs.
            num_classes: K; ``pred_logits`` has K + 1 columns, the last "no object".
            num_frames: T, the fixed clip length; num_instances: n slots per frame.
            hidden_dim: d, divisible by 6 (three sine embeddings of even width) and nheads.
            others: of the transformer (``VisTRTransformer``).
        """
        super().__init__()
        missing = [name for name in VISTR_IN_FEATURES if name not in in_channels]
        if missing:
            raise ValueError(f"VisTR needs backbone outputs {VISTR_IN_FEATURES}; missing {missing}")
        if hidden_dim % 6 or hidden_dim % nheads:
            raise ValueError(
                f"MODEL.VISTR.HIDDEN_DIM ({hidden_dim}) must be divisible by 6 (3-D position "
                f"encoding) and by MODEL.VISTR.NHEADS ({nheads})"
            )
        self.num_frames = num_frames
        self.num_instances = num_instances
        self.input_proj = nn.Conv2d(in_channels["res5"], hidden_dim, kernel_size=1)
        self.pe_layer = VisTRPositionEmbedding3D(hidden_dim // 3, normalize=True)
        self.query_embed = nn.Embedding(num_frames * num_instances, hidden_dim)
        self.transformer = VisTRTransformer(
            hidden_dim, nheads, dim_feedforward, enc_layers, dec_layers, dropout, pre_norm
        )
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        fpn_dims = [in_channels[name] for name in ("res4", "res3", "res2")]
        self.mask_head = VisTRMaskHead(hidden_dim, nheads, fpn_dims)

    @classmethod
    def from_config(cls, cfg, input_shape) -> dict:
        vistr = cfg.MODEL.VISTR
        return {
            "in_channels": {name: shape.channels for name, shape in input_shape.items()},
            "num_classes": cfg.MODEL.VIS.NUM_CLASSES,
            "num_frames": vistr.NUM_FRAMES,
            "num_instances": vistr.NUM_INSTANCES,
            "hidden_dim": vistr.HIDDEN_DIM,
            "nheads": vistr.NHEADS,
            "dim_feedforward": vistr.DIM_FEEDFORWARD,
            "enc_layers": vistr.ENC_LAYERS,
            "dec_layers": vistr.DEC_LAYERS,
            "dropout": vistr.DROPOUT,
            "pre_norm": vistr.PRE_NORM,
        }

    def forward(
        self,
        multi_scale_features: Sequence[Tensor],
        mask_features: Tensor,
        return_masks: bool = True,
        image_sizes: Optional[Sequence[Tuple[int, int]]] = None,
    ) -> Dict:
        """
        Args:
            multi_scale_features: res5, res4, res3 of the clip, each (B, T', C_l, H_l, W_l).
            mask_features: res2, (B, T', C_2, H4, W4).
            return_masks: ignored: VisTR's masks are not a product of embeddings and
                per-frame features, so they are always computed here.
            image_sizes: B (h, w) sizes of the clips before padding. As VisTR, res5 cells
                of the padding (beyond ceil(h / 32) x ceil(w / 32)) are keys of no
                attention (encoder, decoder, box attention) and the position encoding
                counts only the others.
        Returns:
            dict with ``pred_logits`` (B, n, T', K + 1), ``pred_boxes`` (B, n, T', 4)
            normalised (cx, cy, w, h), ``pred_masks`` (B, n, T', H4, W4) logits,
            ``pred_mask_embeds`` and ``mask_features`` that give the same masks through
            the shared inference (``common.masks_as_embeddings``), and ``aux_outputs``: a list
            with the logits and boxes of the other decoder layers.
        """
        res5, res4, res3 = [self._to_compute(f) for f in multi_scale_features]
        res2 = self._to_compute(mask_features)
        clip_frames = res5.shape[1]
        frame_index = self._frame_index(clip_frames)
        res5, res4, res3, res2 = [f[:, frame_index] for f in (res5, res4, res3, res2)]

        padding = clip_padding_mask(image_sizes, res5, self.coarse_stride)  # (B, T, h, w)
        hs, memory = self._transformer(res5, padding)
        logits = self._by_instance(self.class_embed(hs))
        boxes = self._by_instance(self.bbox_embed(hs).sigmoid())
        last = hs[-1].transpose(0, 1)  # (B, Q, d)
        queries = last.view(last.shape[0], self.num_frames, self.num_instances, -1)
        masks = self.mask_head(queries, memory, [res4, res3, res2], padding)
        keep = slice(0, clip_frames)
        masks = masks[:, :, keep]
        return {
            "pred_logits": logits[-1][:, :, keep],
            "pred_boxes": boxes[-1][:, :, keep],
            "pred_masks": masks,
            **masks_as_embeddings(masks),
            "aux_outputs": [
                {"pred_logits": layer_logits[:, :, keep], "pred_boxes": layer_boxes[:, :, keep]}
                for layer_logits, layer_boxes in zip(logits[:-1], boxes[:-1])
            ],
        }

    def _frame_index(self, clip_frames: int) -> Tensor:
        """(T,) frames of the clip that fill the T input slots (cyclic repetition)."""
        if clip_frames < 1 or clip_frames > self.num_frames:
            raise ValueError(
                f"VisTR takes clips of 1 to MODEL.VISTR.NUM_FRAMES = {self.num_frames} frames, "
                f"got {clip_frames}; run longer videos by clips (MODEL.VIS.TEST.MODE clip, "
                f"MODEL.VIS.TEST.CLIP_LENGTH <= {self.num_frames})"
            )
        return torch.arange(self.num_frames, device=self.device) % clip_frames

    def _transformer(self, res5: Tensor, padding: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """res5 (B, T, C5, h, w), padding (B, T, h, w) or None -> hs (L, Q, B, d), memory
        (B, T, d, h, w)."""
        batch, frames = res5.shape[:2]
        src = self.input_proj(res5.flatten(0, 1))
        src = src.view(batch, frames, *src.shape[1:])  # (B, T, d, h, w)
        pos = self.pe_layer(src, padding)

        def tokens(x: Tensor) -> Tensor:  # (B, T, d, h, w) -> (T * h * w, B, d), frame-major
            return x.permute(1, 3, 4, 0, 2).flatten(0, 2)

        query_pos = self.query_embed.weight[:, None].expand(-1, batch, -1)
        key_padding = None if padding is None else padding.flatten(1)  # (B, T * h * w)
        hs, memory = self.transformer(tokens(src), tokens(pos), query_pos, key_padding)
        height, width = src.shape[-2:]
        memory = memory.view(frames, height, width, batch, -1).permute(3, 0, 4, 1, 2)
        return hs, memory

    def _by_instance(self, per_query: Tensor) -> Tensor:
        """(L, Q, B, C) per query -> (L, B, n, T, C): query t * n + i is slot i of frame t."""
        layers, _, batch, channels = per_query.shape
        per_query = per_query.permute(0, 2, 1, 3)
        return per_query.reshape(
            layers, batch, self.num_frames, self.num_instances, channels
        ).transpose(2, 3)
