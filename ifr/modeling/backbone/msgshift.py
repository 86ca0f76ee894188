"""MsgShifT, TeViT's backbone (Yang et al., "Temporally Efficient Vision Transformer for
Video Instance Segmentation", CVPR 2022): a pyramid vision transformer (PVTv2) whose
frames each carry ``M`` messenger tokens; after every block the messenger tokens of a
frame are exchanged with other frames of the clip by a shift along time.

Shape shorthand: B clips, T frames per clip (the backbone sees B*T frames, clip by clip),
M messenger tokens per frame, G shift groups (M/G tokens each), C channels of a stage,
(h, w) the token grid of a stage.

As TeViT's ``MsgShifT`` (PVTv2-b1 with messenger tokens), verified against its code:
- messenger tokens are one learnt (1, M, 3) parameter, the same for every frame; every
  layer a patch token goes through, they go through too: a convolution (patch embedding,
  spatial reduction, the FFN's depth-wise 3x3) acts on a messenger token as on a constant
  image, i.e. with its kernel summed over space (``_conv_on_tokens``);
- in a block the attention's queries are the patch and messenger tokens of one frame;
  its keys/values are the spatially reduced patch tokens plus the messenger tokens (after
  the reduction convolution), or, in a stage without reduction (sr = 1), the patch tokens
  alone, exactly as TeViT's code (its stage-4 messengers read, nobody reads them);
- the shift (``messenger_shift``): after block j of a stage, the M tokens are split into
  G groups along the token axis and group g is rolled by ``s_g`` frames along time
  (cyclic: ``out[t] = in[t - s_g]``), with ``s = SHIFT_STRIDES`` (TeViT: 1, -1, 2, -2) after
  even blocks and ``-s`` after odd ones; the last block of a stage with an odd number of
  blocks does not shift;
- module and parameter names are the official PVTv2 ones (``patch_embed{i}``,
  ``block{i}.{j}.attn.{q,kv,proj,sr,norm}``, ``mlp.{fc1,dwconv.dwconv,fc2}``, ``norm{i}``),
  so ImageNet PVTv2 weights (``pvt_v2_b1.pth``) load through
  ``ifr.checkpoint.backbones.pvt_v2_official_to_d2`` (``tools/convert_pretrained.py --kind
  pvt-v2``); only the messenger tokens start random.
Differences: the shift is applied to the clip given to ``forward(x, num_frames)``; at
inference the shared pipeline encodes ``MODEL.VIS.TEST.FRAME_CHUNK`` frames at a time, so
messengers only travel within a chunk (TeViT encodes the whole video at once: set the
chunk to at least the video length to match it).
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, ShapeSpec
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MsgShifT", "D2MsgShifT", "messenger_shift", "shift_schedule"]


def messenger_shift(tokens: Tensor, num_frames: int, strides: Sequence[int]) -> Tensor:
    """The messenger shift: (B*T, M, C) tokens, clip by clip -> the same with token group
    g (of ``len(strides)`` equal groups along M) of frame t taken from frame
    ``(t - strides[g]) mod T`` of the same clip."""
    num_tokens = tokens.shape[1]
    if num_tokens % len(strides):
        raise ValueError(f"{num_tokens} messenger tokens do not split into {len(strides)} groups")
    by_clip = tokens.view(-1, num_frames, *tokens.shape[1:])  # (B, T, M, C)
    groups = by_clip.chunk(len(strides), dim=2)
    shifted = [torch.roll(group, int(s), dims=1) for group, s in zip(groups, strides)]
    return torch.cat(shifted, dim=2).flatten(0, 1)


def shift_schedule(depth: int, strides: Sequence[int]) -> List[Optional[List[int]]]:
    """Shift strides after each of a stage's ``depth`` blocks: ``strides``, then negated,
    alternating; None (no shift) for the last block when ``depth`` is odd."""
    schedule = [[s if j % 2 == 0 else -s for s in strides] for j in range(depth)]
    if depth % 2 == 1:
        schedule[-1] = None
    return schedule


def _conv_on_tokens(conv: nn.Conv2d, tokens: Tensor) -> Tensor:
    """A convolution applied to tokens (N, M, C_in) as to constant images: the kernel
    summed over space (depth-wise: per channel), plus the bias. -> (N, M, C_out)."""
    kernel = conv.weight.sum(dim=(-1, -2))  # (C_out, C_in / groups)
    if conv.groups == 1:
        out = tokens @ kernel.T
    else:  # depth-wise
        out = tokens * kernel[:, 0]
    return out + conv.bias if conv.bias is not None else out


def _drop_path(x: Tensor, prob: float, training: bool) -> Tensor:
    """Stochastic depth: zero a sample's residual branch with probability ``prob``."""
    if prob == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - prob)
    return x * keep / (1 - prob)


class OverlapPatchEmbed(nn.Module):
    """PVTv2's overlapping patch embedding (a strided convolution + LayerNorm)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride, patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x: Tensor, msg: Tensor) -> Tuple[Tensor, Tuple[int, int], Tensor]:
        """x (N, C_in, H, W), msg (N, M, C_in) -> tokens (N, h*w, C), (h, w), msg (N, M, C)."""
        x = self.proj(x)
        size = (x.shape[2], x.shape[3])
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x, size, self.norm(_conv_on_tokens(self.proj, msg))


class SpatialReductionAttention(nn.Module):
    """PVTv2's attention with keys/values from a spatially reduced grid; messenger tokens
    are queries, and keys/values when the grid is reduced (see the module docstring)."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor, size: Tuple[int, int], msg: Tensor) -> Tensor:
        """x (N, h*w, C), msg (N, M, C) -> attention output (N, h*w + M, C)."""
        queries = torch.cat([x, msg], dim=1)
        if self.sr_ratio > 1:
            grid = x.transpose(1, 2).reshape(x.shape[0], -1, *size)
            reduced = self.sr(grid).flatten(2).transpose(1, 2)
            context = self.norm(torch.cat([reduced, _conv_on_tokens(self.sr, msg)], dim=1))
        else:
            context = x
        n, lq, c = queries.shape
        heads = self.num_heads
        q = self.q(queries).view(n, lq, heads, c // heads).transpose(1, 2)
        k, v = self.kv(context).view(n, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, lq, c))


class DWConv(nn.Module):
    """PVTv2's depth-wise 3x3 convolution inside the FFN (name kept for its weights)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor, size: Tuple[int, int], msg: Tensor) -> Tuple[Tensor, Tensor]:
        grid = x.transpose(1, 2).reshape(x.shape[0], -1, *size)
        out = self.dwconv(grid).flatten(2).transpose(1, 2)
        return out, _conv_on_tokens(self.dwconv, msg)


class MixFFN(nn.Module):
    """PVTv2's FFN: fc1 -> depth-wise 3x3 -> GELU -> fc2, on patch and messenger tokens."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, size: Tuple[int, int], msg: Tensor) -> Tensor:
        """x (N, h*w, C), msg (N, M, C) -> (N, h*w + M, C)."""
        x, msg = self.dwconv(self.fc1(x), size, self.fc1(msg))
        return self.fc2(self.act(torch.cat([x, msg], dim=1)))


class MsgShiftBlock(nn.Module):
    """One PVTv2 block over patch + messenger tokens (pre-norm attention and FFN)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SpatialReductionAttention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = drop_path

    def forward(self, x: Tensor, size: Tuple[int, int], msg: Tensor) -> Tuple[Tensor, Tensor]:
        num_patches = x.shape[1]
        tokens = torch.cat([x, msg], dim=1)
        attn = self.attn(self.norm1(x), size, self.norm1(msg))
        tokens = tokens + _drop_path(attn, self.drop_path, self.training)
        x, msg = tokens[:, :num_patches], tokens[:, num_patches:]
        ffn = self.mlp(self.norm2(x), size, self.norm2(msg))
        tokens = tokens + _drop_path(ffn, self.drop_path, self.training)
        return tokens[:, :num_patches], tokens[:, num_patches:]


class MsgShifT(nn.Module):
    """PVTv2 with messenger tokens shifted along time (see the module docstring).

    Defaults are TeViT's MsgShifT (PVTv2-b1): widths 64/128/320/512, depths 2/2/2/2,
    heads 1/2/5/8, MLP ratios 8/8/4/4, reductions 8/4/2/1, 32 messengers, strides
    (1, -1, 2, -2).
    """

    def __init__(
        self,
        *,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        mlp_ratios: Sequence[int] = (8, 8, 4, 4),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        num_messengers: int = 32,
        shift_strides: Sequence[int] = (1, -1, 2, -2),
        drop_path_rate: float = 0.1,
        in_chans: int = 3,
    ):
        super().__init__()
        lengths = {len(embed_dims), len(depths), len(num_heads), len(mlp_ratios), len(sr_ratios)}
        if lengths != {4}:
            raise ValueError(
                "MsgShifT: EMBED_DIMS, DEPTHS, NUM_HEADS, MLP_RATIOS, SR_RATIOS "
                "need 4 values each (one per stage)"
            )
        if num_messengers % len(shift_strides):
            raise ValueError(
                f"MsgShifT: {num_messengers} messenger tokens do not split into "
                f"{len(shift_strides)} shift groups"
            )
        self.embed_dims = list(embed_dims)
        self.msg_tokens = nn.Parameter(torch.zeros(1, num_messengers, in_chans))
        nn.init.trunc_normal_(self.msg_tokens, std=0.02)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.shifts = [shift_schedule(depth, shift_strides) for depth in depths]
        first = 0
        for i in range(4):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            in_dim = in_chans if i == 0 else embed_dims[i - 1]
            setattr(
                self, f"patch_embed{i + 1}", OverlapPatchEmbed(in_dim, embed_dims[i], patch, stride)
            )
            blocks = [
                MsgShiftBlock(embed_dims[i], num_heads[i], mlp_ratios[i], sr_ratios[i], rate)
                for rate in rates[first : first + depths[i]]
            ]
            setattr(self, f"block{i + 1}", nn.ModuleList(blocks))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i], eps=1e-6))
            first += depths[i]
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """PVTv2's initialisation (truncated normal linears, fan-out normal convolutions)."""
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, num_frames: int = 1) -> List[Tensor]:
        """
        Args:
            x: (B*T, 3, H, W) frames, the T frames of each clip consecutive.
            num_frames: T; messengers are shifted among the frames of a clip.
        Returns:
            4 maps (B*T, C_i, ceil(H / s), ceil(W / s)) at strides s = 4, 8, 16, 32.
        """
        if x.shape[0] % num_frames:
            raise ValueError(f"MsgShifT: {x.shape[0]} frames are not clips of {num_frames}")
        msg = self.msg_tokens.expand(x.shape[0], -1, -1)
        outputs = []
        for i in range(4):
            tokens, size, msg = getattr(self, f"patch_embed{i + 1}")(x, msg)
            for block, strides in zip(getattr(self, f"block{i + 1}"), self.shifts[i]):
                tokens, msg = block(tokens, size, msg)
                if strides is not None:
                    msg = messenger_shift(msg, num_frames, strides)
            norm = getattr(self, f"norm{i + 1}")
            tokens, msg = norm(tokens), norm(msg)
            x = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *size)
            outputs.append(x)
        return outputs


@BACKBONE_REGISTRY.register()
class D2MsgShifT(MsgShifT, Backbone):
    """MsgShifT as a detectron2 backbone: outputs ``res2``..``res5`` (strides 4-32)."""

    def __init__(self, cfg, input_shape: ShapeSpec):
        c = cfg.MODEL.MSGSHIFT
        super().__init__(
            embed_dims=c.EMBED_DIMS,
            depths=c.DEPTHS,
            num_heads=c.NUM_HEADS,
            mlp_ratios=c.MLP_RATIOS,
            sr_ratios=c.SR_RATIOS,
            num_messengers=c.NUM_MESSENGERS,
            shift_strides=c.SHIFT_STRIDES,
            drop_path_rate=c.DROP_PATH_RATE,
            in_chans=input_shape.channels,
        )
        self._out_features = list(c.OUT_FEATURES)
        names = ("res2", "res3", "res4", "res5")
        unknown = [n for n in self._out_features if n not in names]
        if unknown:
            raise ValueError(f"MODEL.MSGSHIFT.OUT_FEATURES: unknown {unknown}; choose from {names}")
        self._out_feature_strides = {n: 4 * 2**i for i, n in enumerate(names)}
        self._out_feature_channels = dict(zip(names, self.embed_dims))

    def forward(self, x: Tensor, num_frames: int = 1) -> Dict[str, Tensor]:
        """x: (B*T, 3, H, W) -> ``{res2..res5}`` maps; see ``MsgShifT.forward``."""
        maps = MsgShifT.forward(self, x, num_frames)
        names = ("res2", "res3", "res4", "res5")
        return {n: m for n, m in zip(names, maps) if n in self._out_features}

    # output_shape: detectron2's Backbone.output_shape, from _out_feature_channels/_strides.

    @property
    def size_divisibility(self) -> int:
        return 32
