"""Swin Transformer backbone (Liu et al., 2021) for detectron2, as used by Mask2Former.

Parameter names match Mask2Former's ``D2SwinTransformer`` (and the official Swin
classification checkpoints after ``tools/convert_pretrained.py``), so their weights load.
Outputs ``res2..res5`` at strides 4/8/16/32 for inputs of any size: the patch embedding,
the windows and the patch merging pad what they need.
"""

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.utils.checkpoint as checkpoint
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "SwinTransformer",
    "D2SwinTransformer",
    "window_partition",
    "window_reverse",
    "shifted_window_mask",
]


def drop_path(x: Tensor, drop_prob: float, training: bool) -> Tensor:
    """Stochastic depth: zero the residual branch of whole samples with probability
    ``drop_prob`` and rescale the others."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """(B, H, W, C) with H, W multiples of window_size -> (B * nW, window_size**2, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows: Tensor, window_size: int, height: int, width: int) -> Tensor:
    """Inverse of ``window_partition``: (B * nW, window_size**2, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window_size, width // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def shifted_window_mask(
    height: int, width: int, window_size: int, shift_size: int, device=None
) -> Tensor:
    """Attention mask of the shifted windows of a padded (height, width) map.

    After the cyclic shift a window can hold pixels from up to 4 regions that are not
    neighbours in the image; pairs from different regions get -100 (softmax ~ 0).
    Returns (nW, window_size**2, window_size**2) float.
    """
    region = torch.zeros((1, height, width, 1), device=device)
    bounds = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    label = 0
    for rows in bounds:
        for cols in bounds:
            region[:, rows, cols, :] = label
            label += 1
    labels = window_partition(region, window_size).squeeze(-1)  # (nW, ws*ws)
    different = labels.unsqueeze(1) != labels.unsqueeze(2)
    return torch.zeros(different.shape, device=device).masked_fill(different, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learnt relative position bias."""

    def __init__(
        self,
        dim: int,
        window_size: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5

        # One bias per head for each of the (2*ws - 1)^2 relative offsets.
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", self._relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    @staticmethod
    def _relative_position_index(window_size: int) -> Tensor:
        """(ws*ws, ws*ws) long: row of the bias table for every (query, key) pair."""
        coords = torch.stack(
            torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
        )
        coords = coords.flatten(1)  # (2, ws*ws), (row, col) of each position
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
        return relative[..., 0] * (2 * window_size - 1) + relative[..., 1]

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x: (B * nW, N, C) with N = ws*ws; mask: (nW, N, N) or None -> (B * nW, N, C)."""
        windows, n, c = x.shape
        qkv = (
            self.qkv(x)
            .reshape(windows, n, 3, self.num_heads, c // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)  # (B*nW, heads, N, N)

        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            num_windows = mask.shape[0]
            attn = attn.view(windows // num_windows, num_windows, self.num_heads, n, n)
            attn = (attn + mask[None, :, None]).view(-1, self.num_heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(windows, n, c)
        return self.proj_drop(self.proj(out))


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(
                f"Swin: shift_size {shift_size} must be in [0, window_size={window_size})"
            )
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: Tensor, height: int, width: int, attn_mask: Optional[Tensor]) -> Tensor:
        """x: (B, H*W, C); attn_mask: the shifted-window mask of the padded map -> (B, H*W, C)."""
        b, length, c = x.shape
        if length != height * width:
            raise ValueError(f"Swin block: got {length} tokens for a {height}x{width} map")
        shortcut = x
        x = self.norm1(x).view(b, height, width, c)
        # Pad right/bottom to whole windows (after the norm, so padding stays zero).
        pad_b = (self.window_size - height % self.window_size) % self.window_size
        pad_r = (self.window_size - width % self.window_size) % self.window_size
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        padded_h, padded_w = x.shape[1], x.shape[2]

        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        else:
            attn_mask = None
        windows = self.attn(window_partition(x, self.window_size), mask=attn_mask)
        x = window_reverse(windows, self.window_size, padded_h, padded_w)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = x[:, :height, :width, :].reshape(b, height * width, c)

        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (4C) then projected to 2C: stride x2."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """(B, H*W, C) -> (B, ceil(H/2) * ceil(W/2), 2C)."""
        b, _, c = x.shape
        x = x.view(b, height, width, c)
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        # The order (even,even), (odd,even), (even,odd), (odd,odd) is the checkpoints'.
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class BasicLayer(nn.Module):
    """One Swin stage: ``depth`` blocks alternating regular and shifted windows, then an
    optional patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: Optional[float],
        drop: float,
        attn_drop: float,
        drop_path: Sequence[float],
        downsample: bool,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            [
                SwinTransformerBlock(
                    dim,
                    num_heads,
                    window_size,
                    shift_size=0 if i % 2 == 0 else self.shift_size,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop=drop,
                    attn_drop=attn_drop,
                    drop_path=drop_path[i],
                )
                for i in range(depth)
            ]
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, height: int, width: int) -> Tuple[Tensor, Tensor, int, int]:
        """x: (B, H*W, C) -> (stage output (B, H*W, C), input of the next stage, its H, W)."""
        ws = self.window_size
        padded_h, padded_w = -(-height // ws) * ws, -(-width // ws) * ws
        attn_mask = shifted_window_mask(
            padded_h, padded_w, ws, self.shift_size, device=x.device
        ).to(x.dtype)
        for block in self.blocks:
            if self.use_checkpoint and self.training:
                x = checkpoint.checkpoint(block, x, height, width, attn_mask, use_reentrant=False)
            else:
                x = block(x, height, width, attn_mask)
        if self.downsample is None:
            return x, x, height, width
        return x, self.downsample(x, height, width), (height + 1) // 2, (width + 1) // 2


class PatchEmbed(nn.Module):
    """Non-overlapping patch_size x patch_size patches -> embed_dim channels (pads first)."""

    def __init__(
        self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96, patch_norm: bool = True
    ):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, embed_dim, ceil(H/p), ceil(W/p))."""
        h, w = x.shape[-2:]
        p = self.patch_size
        x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))
        x = self.proj(x)
        if self.norm is not None:
            ph, pw = x.shape[-2:]
            x = self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).view(-1, x.shape[1], ph, pw)
        return x


class SwinTransformer(nn.Module):
    """Swin Transformer feature pyramid: stage i has ``embed_dim * 2**i`` channels at
    stride ``patch_size * 2**i``."""

    def __init__(
        self,
        pretrain_img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        ape: bool = False,
        patch_norm: bool = True,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        use_checkpoint: bool = False,
    ):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(
                f"Swin: DEPTHS {list(depths)} and NUM_HEADS {list(num_heads)} differ in length"
            )
        self.num_layers = len(depths)
        self.out_indices = tuple(out_indices)
        self.num_features = [int(embed_dim * 2**i) for i in range(self.num_layers)]
        self.ape = ape

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm)
        if ape:
            grid = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(p=drop_rate)

        # Stochastic depth grows linearly over all blocks.
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            first = sum(depths[:i])
            self.layers.append(
                BasicLayer(
                    dim=self.num_features[i],
                    depth=depths[i],
                    num_heads=num_heads[i],
                    window_size=window_size,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=rates[first : first + depths[i]],
                    downsample=i < self.num_layers - 1,
                    use_checkpoint=use_checkpoint,
                )
            )
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """(B, C_in, H, W) -> ``res{i+2}``: (B, num_features[i], ~H/2**(i+2), ~W/2**(i+2))
        for every i in out_indices."""
        x = self.patch_embed(x)
        height, width = x.shape[-2:]
        if self.ape:
            pos = F.interpolate(
                self.absolute_pos_embed, size=(height, width), mode="bicubic", align_corners=False
            )
            x = x + pos
        x = self.pos_drop(x.flatten(2).transpose(1, 2))

        outs = {}
        for i, layer in enumerate(self.layers):
            stage_out, x, next_h, next_w = layer(x, height, width)
            if i in self.out_indices:
                stage_out = getattr(self, f"norm{i}")(stage_out)
                outs[f"res{i + 2}"] = stage_out.view(
                    -1, height, width, self.num_features[i]
                ).permute(0, 3, 1, 2)
            height, width = next_h, next_w
        return outs


@BACKBONE_REGISTRY.register()
class D2SwinTransformer(SwinTransformer, Backbone):
    """Swin Transformer built from ``cfg.MODEL.SWIN``: outputs ``res2..res5``."""

    def __init__(self, cfg, input_shape: ShapeSpec):
        swin = cfg.MODEL.SWIN
        out_features = list(swin.OUT_FEATURES)
        valid = [f"res{i + 2}" for i in range(len(swin.DEPTHS))]
        unknown = [f for f in out_features if f not in valid]
        if unknown:
            raise ValueError(f"MODEL.SWIN.OUT_FEATURES: {unknown} not among {valid}")
        super().__init__(
            pretrain_img_size=swin.PRETRAIN_IMG_SIZE,
            patch_size=swin.PATCH_SIZE,
            in_chans=input_shape.channels,
            embed_dim=swin.EMBED_DIM,
            depths=swin.DEPTHS,
            num_heads=swin.NUM_HEADS,
            window_size=swin.WINDOW_SIZE,
            mlp_ratio=swin.MLP_RATIO,
            qkv_bias=swin.QKV_BIAS,
            qk_scale=swin.QK_SCALE,
            drop_rate=swin.DROP_RATE,
            attn_drop_rate=swin.ATTN_DROP_RATE,
            drop_path_rate=swin.DROP_PATH_RATE,
            ape=swin.APE,
            patch_norm=swin.PATCH_NORM,
            out_indices=[valid.index(f) for f in out_features],
            use_checkpoint=swin.USE_CHECKPOINT,
        )
        self._out_features = out_features
        self._out_feature_strides = {
            f"res{i + 2}": swin.PATCH_SIZE * 2**i for i in range(self.num_layers)
        }
        self._out_feature_channels = {
            f"res{i + 2}": self.num_features[i] for i in range(self.num_layers)
        }

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """x: (B, C, H, W) -> ``{name: (B, C_name, H / stride, W / stride)}`` (sizes
        rounded up when H, W are not multiples of 32)."""
        if x.dim() != 4:
            raise ValueError(
                f"D2SwinTransformer takes (B, C, H, W) inputs, got shape {tuple(x.shape)}"
            )
        outputs = super().forward(x)
        return {name: outputs[name] for name in self._out_features}

    # output_shape: detectron2's Backbone.output_shape, from _out_feature_channels/_strides.

    @property
    def size_divisibility(self) -> int:
        return 32
