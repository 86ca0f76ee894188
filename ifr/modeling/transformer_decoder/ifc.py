"""IFC's clip transformer (Hwang et al., "Video Instance Segmentation using Inter-Frame
Communication Transformers", NeurIPS 2021): the encoder with memory tokens, the decoder
and the heads, as its official code (``IFCTransformer``, ``MaskHead``) lays them out.

Shape shorthand: B videos, T frames, S = h * w tokens of a frame at stride 32, M memory
tokens per frame, N queries, d channels, K classes.

- **Encoder** (``IFCEncoder``), per layer:
  1. *encode-receive*: each frame's S tokens and its M memory tokens, (S + M) tokens,
     go through one transformer encoder layer (self-attention + FFN), frame by frame;
  2. *gather-communicate*: the memory tokens of every frame are gathered and
     communicate through a second encoder layer, run over the T tokens of each memory
     slot (slot m of frame 1..T attend to each other), as the official code.
  Memory tokens start as M learned vectors, the same in every frame; the frame tokens
  carry a per-frame 2-D sine embedding, the memory tokens M learned ones. With M = 0 the
  frames never communicate in the encoder.
- **Decoder**: N learned query positions (contents start at zero, DETR), L layers of
  self-attention -> cross-attention -> FFN over the encoded tokens of all T frames and
  their final memory tokens, (T * S + T * M) keys. N does not depend on T.
- **Heads**: class ``MLP(d, d, K + 1, 2)`` (softmax, last column "no object"); the
  dynamic mask head: ``MLP(d, d, d, 3)`` turns each query into the weights of a 1x1 conv
  (no bias) applied to every frame's mask features, i.e. mask logits = embedding . feature.
  The mask features (stride 8) come from a small FPN on the encoder's output with the
  res4 and res3 laterals (``IFCMaskFeatures``), so they depend on the clip: the decoder
  returns them as ``mask_features`` and inference uses them (docs/design.md).

Padding, as IFC: frame tokens of the padding of a clip (beyond ceil(h / 32) x
ceil(w / 32), ``image_sizes``) are keys of no attention (encode-receive and the decoder's
cross-attention), and the sine position embedding counts only the other tokens.
"""

from typing import Dict, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers.blocks import DepthwiseSeparableConv2d
from torch import Tensor, nn
from torch.nn import functional as F

from ..attention import MLP, CrossAttentionLayer, SelfAttentionLayer
from ..position_encoding import PositionEmbeddingSine
from ..registry import TRANSFORMER_DECODER_REGISTRY
from .common import (
    ComputeCastMixin,
    attention_stack,
    check_decoder_sizes,
    clip_padding_mask,
    ffn_stack,
    predict_heads,
    query_decoder_args,
)

__all__ = ["IFCEncoder", "IFCMaskFeatures", "IFCTransformerDecoder"]

NUM_GROUPS = 32  # GroupNorm groups of the mask head, as IFC


class IFCEncoder(nn.Module):
    """Encoder blocks with memory tokens: encode-receive, then gather-communicate."""

    def __init__(
        self,
        hidden_dim: int,
        nheads: int,
        dim_feedforward: int,
        num_layers: int,
        num_memory_tokens: int,
        dropout: float = 0.0,
        pre_norm: bool = False,
    ):
        """
        Args:
            hidden_dim: d.
            nheads: attention heads.
            dim_feedforward: hidden size of the FFNs.
            num_layers: encoder blocks.
            num_memory_tokens: M per frame; 0 turns communication off.
            dropout: in attention and FFN.
            pre_norm: pre-LayerNorm layers, then a final LayerNorm of frame and memory
                tokens (as DETR/IFC); post-norm needs none.
        """
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MODEL.IFC.ENC_LAYERS must be >= 1, got {num_layers}")
        if num_memory_tokens < 0:
            raise ValueError(f"MODEL.IFC.NUM_MEMORY_TOKENS must be >= 0, got {num_memory_tokens}")
        self.num_layers = num_layers
        self.num_memory_tokens = num_memory_tokens

        def attention_layers():
            return attention_stack(
                SelfAttentionLayer, num_layers, hidden_dim, nheads, dropout, pre_norm
            )

        def ffn_layers():
            return ffn_stack(num_layers, hidden_dim, dim_feedforward, dropout, pre_norm)

        self.receive_attention, self.receive_ffn = attention_layers(), ffn_layers()
        self.communicate_attention, self.communicate_ffn = attention_layers(), ffn_layers()
        self.frame_norm = nn.LayerNorm(hidden_dim) if pre_norm else nn.Identity()
        self.memory_norm = nn.LayerNorm(hidden_dim) if pre_norm else nn.Identity()
        self.memory_tokens = nn.Parameter(torch.empty(num_memory_tokens, hidden_dim))
        self.memory_pos = nn.Parameter(torch.empty(num_memory_tokens, hidden_dim))
        if num_memory_tokens:
            nn.init.kaiming_normal_(self.memory_tokens, mode="fan_out", nonlinearity="relu")
            nn.init.kaiming_normal_(self.memory_pos, mode="fan_out", nonlinearity="relu")

    def forward(
        self, frame_tokens: Tensor, frame_pos: Tensor, padding: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """
        Args:
            frame_tokens: (S, B, T, d) tokens of every frame.
            frame_pos: (S, B, T, d) their position embedding.
            padding: optional (B, T, S) bool, True at tokens of the padding, which no
                token attends to in encode-receive (memory tokens are never padding).

        Returns:
            encoded frame tokens (S, B, T, d) and memory tokens (M, B, T, d).
        """
        num_tokens, batch_size, num_frames, dim = frame_tokens.shape
        num_memory = self.num_memory_tokens
        frames = frame_tokens.flatten(1, 2)  # (S, BT, d)
        memory = self.memory_tokens[:, None].expand(-1, batch_size * num_frames, -1)
        memory_pos = self.memory_pos[:, None].expand(-1, batch_size * num_frames, -1)
        pos = torch.cat((frame_pos.flatten(1, 2), memory_pos))  # (S + M, BT, d)
        key_padding = None
        if padding is not None:  # (BT, S + M)
            key_padding = F.pad(padding.flatten(0, 1), (0, num_memory), value=False)
        for layer in range(self.num_layers):
            # Encode-receive: a frame's tokens and its own memory tokens, frame by frame.
            tokens = self.receive_attention[layer](
                torch.cat((frames, memory)), tgt_key_padding_mask=key_padding, query_pos=pos
            )
            tokens = self.receive_ffn[layer](tokens)
            frames, memory = tokens[:num_tokens], tokens[num_tokens:]
            if num_memory:
                memory = self._communicate(layer, memory, batch_size, num_frames)
        frames, memory = self.frame_norm(frames), self.memory_norm(memory)
        return (
            frames.view(num_tokens, batch_size, num_frames, dim),
            memory.reshape(num_memory, batch_size, num_frames, dim),
        )

    def _communicate(self, layer: int, memory: Tensor, batch_size: int, num_frames: int) -> Tensor:
        """Gather-communicate: (M, BT, d) memory tokens -> (T, B * M, d), the T frames'
        tokens of one slot as one sequence; encoder layer (no position embedding); back."""
        num_memory, _, dim = memory.shape
        gathered = memory.view(num_memory, batch_size, num_frames, dim).permute(2, 1, 0, 3)
        gathered = gathered.reshape(num_frames, batch_size * num_memory, dim)
        gathered = self.communicate_ffn[layer](self.communicate_attention[layer](gathered))
        gathered = gathered.view(num_frames, batch_size, num_memory, dim).permute(2, 1, 0, 3)
        return gathered.reshape(num_memory, batch_size * num_frames, dim)


class IFCMaskFeatures(nn.Module):
    """IFC's mask-head FPN: the encoder's stride-32 output, upsampled (nearest) and added
    to the res4 then res3 laterals, 3x3 convs with GroupNorm between, then a 5x5
    depthwise-separable conv: per-frame mask features at stride 8. Names are IFC's
    (``lay1..3``, ``gn1..3``, ``out_lay``)."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        if hidden_dim % NUM_GROUPS:
            raise ValueError(
                f"MODEL.VIS.HIDDEN_DIM ({hidden_dim}) must be divisible by {NUM_GROUPS}, the "
                "GroupNorm groups of IFC's mask head"
            )
        for i in (1, 2, 3):
            setattr(self, f"lay{i}", nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1))
            setattr(self, f"gn{i}", nn.GroupNorm(NUM_GROUPS, hidden_dim))
        self.out_lay = DepthwiseSeparableConv2d(
            hidden_dim, hidden_dim, 5, padding=2, activation1=F.relu, activation2=F.relu
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

    def forward(self, encoded: Tensor, lateral16: Tensor, lateral8: Tensor) -> Tensor:
        """
        Args:
            encoded: (BT, d, h/32, w/32) encoder output as feature maps.
            lateral16: (BT, d, h/16, w/16) adapter1(res4); lateral8: (BT, d, h/8, w/8).

        Returns:
            (BT, d, h/8, w/8) mask features.
        """
        x = self.gn1(self.lay1(encoded))
        x = lateral16 + F.interpolate(x, size=lateral16.shape[-2:], mode="nearest")
        x = self.gn2(self.lay2(x))
        x = lateral8 + F.interpolate(x, size=lateral8.shape[-2:], mode="nearest")
        x = F.relu(self.gn3(self.lay3(x)))
        return self.out_lay(x)


@TRANSFORMER_DECODER_REGISTRY.register()
class IFCTransformerDecoder(ComputeCastMixin, nn.Module):
    """IFC: encoder with memory tokens, decoder with N clip queries, class and dynamic
    mask heads. Reads ``IFCInputProjection``'s features (docs/design.md)."""

    class_activation = "softmax"  # K classes + no-object, softmax
    uses_image_sizes = True  # given each clip's size before padding (``image_sizes``)
    coarse_stride = 32  # of the frame tokens (input_proj(res5))

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
        enc_layers: int,
        dec_layers: int,
        num_memory_tokens: int,
        dropout: float,
        pre_norm: bool,
    ):
        """
        Args:
            in_channels, mask_dim: channels of the per-frame projections; both must be d.
            num_classes: K; ``pred_logits`` has K + 1 columns, the last "no object".
            hidden_dim: d. num_queries: N. nheads: attention heads.
            dim_feedforward: hidden size of the FFNs.
            enc_layers: encoder blocks. dec_layers: L decoder layers.
            num_memory_tokens: M per frame.
            dropout: in every attention and FFN. pre_norm: pre-LayerNorm layers.
        """
        super().__init__()
        if in_channels != hidden_dim or mask_dim != hidden_dim:
            raise ValueError(
                "IFC reads d-channel projections: MODEL.PIXEL_DECODER.CONVS_DIM "
                f"({in_channels}) and MASK_DIM ({mask_dim}) must equal MODEL.VIS.HIDDEN_DIM "
                f"({hidden_dim})"
            )
        check_decoder_sizes(dec_layers, hidden_dim, nheads)
        self.hidden_dim = hidden_dim
        self.num_layers = dec_layers
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.encoder = IFCEncoder(
            hidden_dim, nheads, dim_feedforward, enc_layers, num_memory_tokens, dropout, pre_norm
        )
        self.self_attention_layers = attention_stack(
            SelfAttentionLayer, dec_layers, hidden_dim, nheads, dropout, pre_norm
        )
        self.cross_attention_layers = attention_stack(
            CrossAttentionLayer, dec_layers, hidden_dim, nheads, dropout, pre_norm
        )
        self.ffn_layers = ffn_stack(dec_layers, hidden_dim, dim_feedforward, dropout, pre_norm)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.class_embed = MLP(hidden_dim, hidden_dim, num_classes + 1, 2)
        # IFC's convert_to_weight: a query -> the weights of its 1x1 dynamic mask conv.
        self.mask_embed = MLP(hidden_dim, hidden_dim, hidden_dim, 3)
        self.mask_head = IFCMaskFeatures(hidden_dim)

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_dim: int) -> dict:
        ifc = cfg.MODEL.IFC
        return {
            **query_decoder_args(cfg, in_channels, mask_dim),
            "enc_layers": ifc.ENC_LAYERS,
            "num_memory_tokens": ifc.NUM_MEMORY_TOKENS,
            "dropout": cfg.MODEL.VIS.DROPOUT,
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
            multi_scale_features: [input_proj(res5) (B, T, d, h/32, w/32),
                adapter1(res4) (B, T, d, h/16, w/16)] (``IFCInputProjection``).
            mask_features: adapter2(res3) (B, T, d, h/8, w/8).
            return_masks: also return ``pred_masks`` (B, N, T, h/8, w/8).
            image_sizes: B (h, w) sizes of the clips before padding. As IFC, the frame
                tokens of the padding (beyond ceil(h / 32) x ceil(w / 32)) are keys of no
                attention, and the sine position embedding counts only the others.

        Returns:
            dict with ``pred_logits`` (B, N, K + 1), ``pred_mask_embeds`` (B, N, T, d) (one
            dynamic-conv weight per query, repeated over T), ``mask_features``
            (B, T, d, h/8, w/8) the mask head's features, ``pred_masks`` logits if
            ``return_masks``, and ``aux_outputs``: L - 1 dicts (every decoder layer but
            the last, training mode only) with ``pred_logits``, ``pred_mask_embeds`` and
            ``pred_masks`` if ``return_masks``.
        """
        self._check_inputs(multi_scale_features, mask_features)
        coarse, lateral16 = (self._to_compute(f) for f in multi_scale_features)
        lateral8 = self._to_compute(mask_features)
        batch_size, num_frames, dim, height, width = coarse.shape

        frame_tokens = coarse.permute(3, 4, 0, 1, 2).flatten(0, 1)  # (S, B, T, d)
        padding = clip_padding_mask(image_sizes, coarse, self.coarse_stride)  # (B, T, h, w)
        frame_pos = self.pe_layer(
            coarse.flatten(0, 1), None if padding is None else padding.flatten(0, 1)
        )  # (BT, d, h, w)
        frame_pos = frame_pos.view(batch_size, num_frames, dim, height * width)
        frame_pos = frame_pos.permute(3, 0, 1, 2)  # (S, B, T, d)
        padding = None if padding is None else padding.flatten(2)  # (B, T, S)
        encoded, memory = self.encoder(frame_tokens, frame_pos, padding)

        clip_masks = self.mask_head(
            encoded.permute(1, 2, 3, 0).reshape(batch_size * num_frames, dim, height, width),
            lateral16.flatten(0, 1),
            lateral8.flatten(0, 1),
        ).view(batch_size, num_frames, dim, *lateral8.shape[-2:])

        tokens, pos = self._decoder_memory(encoded, frame_pos, memory)
        key_padding = None
        if padding is not None:  # (B, T * S + T * M): frame tokens, then memory tokens
            key_padding = F.pad(padding.flatten(1), (0, memory.shape[0] * num_frames), value=False)
        query_pos = self.query_embed.weight[:, None].expand(-1, batch_size, -1)  # (N, B, d)
        queries = torch.zeros_like(query_pos)
        predictions = []
        for layer in range(self.num_layers):
            queries = self.self_attention_layers[layer](queries, query_pos=query_pos)
            queries = self.cross_attention_layers[layer](
                queries,
                tokens,
                pos=pos,
                query_pos=query_pos,
                memory_key_padding_mask=key_padding,
            )
            queries = self.ffn_layers[layer](queries)
            if self.training or layer == self.num_layers - 1:
                predictions.append(self._predict(queries, clip_masks, return_masks))
        outputs = predictions[-1]
        outputs["mask_features"] = clip_masks
        outputs["aux_outputs"] = predictions[:-1]
        return outputs

    def _decoder_memory(
        self, encoded: Tensor, frame_pos: Tensor, memory: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Keys of the decoder's cross-attention: every frame's encoded tokens (frame-major)
        then every frame's memory tokens, (T * S + T * M, B, d), and their positions (the
        2-D sine embedding; the memory tokens' learned embedding in every frame)."""
        num_memory, batch_size, num_frames, dim = memory.shape
        frames = encoded.permute(2, 0, 1, 3).flatten(0, 1)  # (T * S, B, d)
        frames_pos = frame_pos.permute(2, 0, 1, 3).flatten(0, 1)
        memory = memory.permute(2, 0, 1, 3).flatten(0, 1)  # (T * M, B, d)
        memory_pos = self.encoder.memory_pos[None, :, None].expand(num_frames, -1, batch_size, -1)
        return (
            torch.cat((frames, memory)),
            torch.cat((frames_pos, memory_pos.flatten(0, 1))),
        )

    def _predict(
        self, queries: Tensor, clip_masks: Tensor, return_masks: bool
    ) -> Dict[str, Tensor]:
        """Heads on the queries (N, B, d) after the decoder norm; clip_masks (B, T, d, h, w)."""
        logits, mask_embeds = predict_heads(
            queries, self.decoder_norm, self.class_embed, self.mask_embed
        )
        prediction = {
            "pred_logits": logits,
            "pred_mask_embeds": mask_embeds[:, :, None].expand(-1, -1, clip_masks.shape[1], -1),
        }
        if return_masks:
            # The dynamic 1x1 conv (no bias) of every query on every frame.
            prediction["pred_masks"] = torch.einsum("bqc,btchw->bqthw", mask_embeds, clip_masks)
        return prediction

    def _check_inputs(self, multi_scale_features: Sequence[Tensor], mask_features: Tensor) -> None:
        """Raise ValueError naming the input at fault."""
        name = type(self).__name__
        if len(multi_scale_features) != 2:
            raise ValueError(
                f"{name} needs 2 feature levels (strides 32, 16) from IFCInputProjection "
                f"(MODEL.PIXEL_DECODER.NAME), got {len(multi_scale_features)}"
            )
        expected = [*multi_scale_features, mask_features]
        for index, features in enumerate(expected):
            if features.dim() != 5 or features.shape[2] != self.hidden_dim:
                raise ValueError(
                    f"{name}: input {index} must be (B, T, {self.hidden_dim}, h, w), got "
                    f"{tuple(features.shape)}"
                )
            if features.shape[:2] != mask_features.shape[:2]:
                raise ValueError(
                    f"{name}: inputs disagree on (B, T): {tuple(features.shape[:2])} and "
                    f"{tuple(mask_features.shape[:2])}"
                )
        if mask_features.shape[1] < 1:
            raise ValueError(f"{name}: no frame (T == 0)")
