"""Multi-scale deformable attention (Deformable DETR).

``ms_deform_attn`` is the only place that samples the value maps. It dispatches to one of
two implementations with the same semantics: ``ms_deform_attn_pytorch`` here (pure
PyTorch, the reference) or the Triton kernels of ``ms_deform_attn_triton.py``.
"""

import functools
import math
from typing import List

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# Values of ``impl`` (and of the config key MODEL.PIXEL_DECODER.MSDA_IMPL).
MSDA_IMPLS = ("auto", "pytorch", "triton")


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True when the Triton kernels import (``triton`` installed and working)."""
    try:
        from . import ms_deform_attn_triton  # noqa: F401
    except (ImportError, RuntimeError):
        return False
    return True


def _triton_runs_on(device: torch.device) -> bool:
    """Triton compiles for NVIDIA GPUs of compute capability 7.0 (Volta) and newer."""
    if device.type != "cuda":
        return False
    return torch.version.hip is not None or torch.cuda.get_device_capability(device) >= (7, 0)


def resolve_msda_impl(impl: str, device: torch.device) -> str:
    """``impl`` ("auto", "pytorch" or "triton") -> the implementation that runs on
    ``device``: "auto" is "triton" on a CUDA GPU Triton supports when Triton imports,
    "pytorch" elsewhere."""
    if impl not in MSDA_IMPLS:
        raise ValueError(f"ms_deform_attn: impl={impl!r} is not one of {', '.join(MSDA_IMPLS)}")
    if impl == "auto":
        return "triton" if _triton_runs_on(device) and triton_available() else "pytorch"
    if impl == "triton" and not triton_available():
        raise RuntimeError(
            "ms_deform_attn: impl='triton' but the triton package does not import; "
            "install the triton build that matches torch, or use impl='pytorch'"
        )
    return impl


def ms_deform_attn(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    impl: str = "auto",
) -> Tensor:
    """Multi-scale deformable attention by the implementation ``impl`` selects
    (:func:`resolve_msda_impl`); arguments and result as :func:`ms_deform_attn_pytorch`.

    "triton" on CPU tensors runs in Triton's interpreter and needs ``TRITON_INTERPRET=1``
    set before triton is first imported (an error says so otherwise)."""
    inputs = (value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    if resolve_msda_impl(impl, value.device) == "triton":
        from .ms_deform_attn_triton import ms_deform_attn_triton

        return ms_deform_attn_triton(*inputs)
    return ms_deform_attn_pytorch(*inputs)


def ms_deform_attn_pytorch(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Weighted sum of bilinearly sampled values over levels and points, in pure PyTorch
    (``grid_sample`` per level).

    Same semantics as Deformable DETR's CUDA kernel: a location ``(x, y)`` in [0, 1] is
    normalised to the map's extent with pixel centres at ``(i + 0.5) / size``
    (``align_corners=False``), and samples outside the map read zeros.

    Args:
        value: (B, S, heads, C_h), the L levels' values flattened and concatenated,
            S = sum of H_l * W_l.
        spatial_shapes: (L, 2) long, (H_l, W_l) of every level.
        level_start_index: (L,) long, offset of every level in S.
        sampling_locations: (B, Q, heads, L, P, 2), (x, y) in [0, 1].
        attention_weights: (B, Q, heads, L, P).
    Returns:
        (B, Q, heads * C_h).
    """
    batch, _, heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    starts = [int(s) for s in level_start_index.tolist()]
    # grid_sample expects coordinates in [-1, 1].
    grids = 2 * sampling_locations - 1

    sampled_levels: List[Tensor] = []
    for level, (height, width) in enumerate(shapes):
        value_level = value[:, starts[level] : starts[level] + height * width]
        # (B, H*W, heads, C_h) -> (B*heads, C_h, H, W)
        value_level = value_level.permute(0, 2, 3, 1).reshape(
            batch * heads, head_dim, height, width
        )
        # (B, Q, heads, P, 2) -> (B*heads, Q, P, 2)
        grid_level = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled = F.grid_sample(
            value_level, grid_level, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (B*heads, C_h, Q, P)
        sampled_levels.append(sampled)

    # (B*heads, C_h, Q, L*P) weighted by (B*heads, 1, Q, L*P)
    sampled_all = torch.stack(sampled_levels, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(
        batch * heads, 1, num_queries, num_levels * num_points
    )
    output = (sampled_all * weights).sum(-1)  # (B*heads, C_h, Q)
    return output.view(batch, heads * head_dim, num_queries).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module of Deformable DETR.

    Every query attends to ``n_points`` locations per head and level, placed at learnt
    offsets around its reference point; the attention weights are a softmax over the
    ``n_levels * n_points`` locations of a head. Parameter names and initialisation are
    Deformable DETR's (and Mask2Former's), so their checkpoints load. ``impl`` picks the
    sampling implementation (:func:`resolve_msda_impl`).
    """

    def __init__(
        self,
        d_model: int = 256,
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
        impl: str = "auto",
    ):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(
                f"MSDeformAttn: d_model={d_model} is not divisible by n_heads={n_heads}"
            )
        if impl not in MSDA_IMPLS:
            raise ValueError(f"MSDeformAttn: impl={impl!r} is not one of {', '.join(MSDA_IMPLS)}")
        self.impl = impl
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points

        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: head h starts sampling along direction
        ``2*pi*h / n_heads``, point p at distance p + 1 (in pixels of each level), with
        uniform attention weights."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)
        # Scale each direction so that its larger coordinate is +-1 (a square ring).
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        distances = torch.arange(1, self.n_points + 1, dtype=torch.float32)
        grid = directions[:, None, None, :] * distances[None, None, :, None]
        grid = grid.expand(self.n_heads, self.n_levels, self.n_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        input_padding_mask: Tensor = None,
    ) -> Tensor:
        """
        Args:
            query: (B, Q, d_model), position embedding already added.
            reference_points: (B, Q, n_levels, 2), (x, y) in [0, 1] per level.
            input_flatten: (B, S, d_model), the levels' features flattened and concatenated.
            spatial_shapes: (n_levels, 2) long, (H_l, W_l).
            level_start_index: (n_levels,) long.
            input_padding_mask: optional (B, S) bool, True at padded elements.
        Returns:
            (B, Q, d_model).
        """
        batch, num_queries, _ = query.shape
        _, num_values, _ = input_flatten.shape
        expected = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
        if expected != num_values:
            raise ValueError(
                f"MSDeformAttn: input has {num_values} elements but spatial_shapes "
                f"{spatial_shapes.tolist()} describe {expected}"
            )
        if reference_points.shape[-1] != 2:
            raise ValueError("MSDeformAttn: reference_points must be (x, y) points, last dim 2")

        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(batch, num_values, self.n_heads, self.d_model // self.n_heads)

        offsets = self.sampling_offsets(query).view(
            batch, num_queries, self.n_heads, self.n_levels, self.n_points, 2
        )
        weights = self.attention_weights(query).view(
            batch, num_queries, self.n_heads, self.n_levels * self.n_points
        )
        weights = weights.softmax(-1).view(
            batch, num_queries, self.n_heads, self.n_levels, self.n_points
        )

        # Offsets are in pixels of each level: divide by (W_l, H_l).
        normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(
            offsets.dtype
        )
        locations = (
            reference_points[:, :, None, :, None, :]
            + offsets / normalizer[None, None, None, :, None, :]
        )
        output = ms_deform_attn(
            value, spatial_shapes, level_start_index, locations, weights, impl=self.impl
        )
        return self.output_proj(output)
