"""Multi-scale deformable attention as Triton kernels (forward and backward).

Same contract as the pure-PyTorch ``ms_deform_attn`` in ``ms_deform_attn.py``, which is
the reference these kernels are tested against; callers go through that function
(``impl="triton"`` or ``"auto"``), not through this module.

Shape shorthand in this module: N batch, S flattened values of all levels, M heads,
D channels per head, Q queries, L levels, P points per head and level.

One program handles ``BLOCK_Q`` queries of one (batch item, head) and all D channels,
so every gradient of a location or weight is written by exactly one program; only the
value gradient, shared between queries, is accumulated with atomic adds (in float32).
Half-precision inputs are accumulated in float32, float64 inputs in float64.

This module imports only torch and triton, so that a test can load it in a process
started with ``TRITON_INTERPRET=1`` (Triton reads that variable when a kernel is
decorated, that is when this module is imported) and run the kernels on CPU tensors.
"""

from typing import Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

__all__ = ["ms_deform_attn_triton", "is_interpreted"]

# Queries per program. With about 4 tile elements per thread (``_launch_config``) the
# kernels compile for sm_90 without register spills (ptxas -v: forward 64 registers,
# backward 96 in float32 and 126 in bfloat16, at D = 32, 3 levels, 4 points). Levels are
# a loop, points unrolled: unrolling both made the compiler hoist every gather (255
# registers and spills).
_BLOCK_Q = 16
_ELEMENTS_PER_THREAD = 4


@triton.jit
def _bilinear_corners(x, y, height, width):
    """Sampling location (x, y) in [0, 1] -> integer corner (x0, y0) of the top-left pixel
    and the fractional offsets (fx, fy); pixel centres at (i + 0.5) / size."""
    px = x * width - 0.5
    py = y * height - 0.5
    x0f = tl.floor(px)
    y0f = tl.floor(py)
    return x0f.to(tl.int32), y0f.to(tl.int32), px - x0f, py - y0f


@triton.jit
def _program_tile(
    num_queries,
    NUM_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """This program's tile: its batch item and head, the mask of its BLOCK_Q queries, the
    BLOCK_D channel offsets and their mask, and the row of each (query, head) in the
    (N * Q * M) rows of locations, weights and output."""
    pid_q = tl.program_id(0)
    pid_nm = tl.program_id(1)  # n * M + head
    batch = pid_nm // NUM_HEADS
    head = pid_nm % NUM_HEADS
    q_offs = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_mask = q_offs < num_queries
    d_offs = tl.arange(0, BLOCK_D)
    d_mask = d_offs < HEAD_DIM
    qm_row = (batch * num_queries + q_offs) * NUM_HEADS + head
    return batch, head, q_mask, d_offs, d_mask, qm_row


@triton.jit
def _level_geometry(shapes_ptr, starts_ptr, level, batch, num_values):
    """(H_l, W_l) of ``level`` and the row of its first pixel in (N * S) value rows."""
    height = tl.load(shapes_ptr + 2 * level)
    width = tl.load(shapes_ptr + 2 * level + 1)
    start = tl.load(starts_ptr + level)
    return height, width, batch * num_values + start


@triton.jit
def _load_point(
    loc_ptr,
    weight_ptr,
    qm_row,
    q_mask,
    level,
    point,
    NUM_LEVELS: tl.constexpr,
    NUM_POINTS: tl.constexpr,
    ACC: tl.constexpr,
):
    """Index of (query, head, level, point) in the (N*Q*M*L*P) weights, its sampling
    location (x, y) and attention weight, each (BLOCK_Q,) in ACC."""
    lp = (qm_row * NUM_LEVELS + level) * NUM_POINTS + point  # (BLOCK_Q,)
    x = tl.load(loc_ptr + 2 * lp, mask=q_mask, other=0.0).to(ACC)
    y = tl.load(loc_ptr + 2 * lp + 1, mask=q_mask, other=0.0).to(ACC)
    attn = tl.load(weight_ptr + lp, mask=q_mask, other=0.0).to(ACC)
    return lp, x, y, attn


@triton.jit
def _corner(x0, y0, fx, fy, height, width, level_row, q_mask, DX: tl.constexpr, DY: tl.constexpr):
    """Corner (x0 + DX, y0 + DY) of the bilinear cell: its weights wx and wy, whether it
    lies inside the level (and the query is real), and its pixel row in (N * S)."""
    xi = x0 + DX
    yi = y0 + DY
    wx = fx if DX == 1 else 1.0 - fx
    wy = fy if DY == 1 else 1.0 - fy
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height) & q_mask
    return wx, wy, inside, level_row + yi * width + xi


@triton.jit
def _msda_forward_kernel(
    value_ptr,  # (N, S, M, D)
    shapes_ptr,  # (L, 2) int: (H_l, W_l)
    starts_ptr,  # (L,) int
    loc_ptr,  # (N, Q, M, L, P, 2)
    weight_ptr,  # (N, Q, M, L, P)
    out_ptr,  # (N, Q, M, D)
    num_values,
    num_queries,
    NUM_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    NUM_LEVELS: tl.constexpr,
    NUM_POINTS: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
):
    batch, head, q_mask, d_offs, d_mask, qm_row = _program_tile(
        num_queries, NUM_HEADS, HEAD_DIM, BLOCK_Q, BLOCK_D
    )
    acc = tl.zeros((BLOCK_Q, BLOCK_D), dtype=ACC)
    for level in range(NUM_LEVELS):
        height, width, level_row = _level_geometry(shapes_ptr, starts_ptr, level, batch, num_values)
        for point in tl.static_range(NUM_POINTS):
            lp, x, y, attn = _load_point(
                loc_ptr, weight_ptr, qm_row, q_mask, level, point, NUM_LEVELS, NUM_POINTS, ACC
            )
            x0, y0, fx, fy = _bilinear_corners(x, y, height, width)
            sampled = tl.zeros((BLOCK_Q, BLOCK_D), dtype=ACC)
            for dy in tl.static_range(2):
                for dx in tl.static_range(2):
                    wx, wy, inside, pix = _corner(
                        x0, y0, fx, fy, height, width, level_row, q_mask, dx, dy
                    )
                    # Pixel row -> (row * NUM_HEADS + head) * HEAD_DIM + channel.
                    ptrs = value_ptr + ((pix * NUM_HEADS + head) * HEAD_DIM)[:, None]
                    vals = tl.load(
                        ptrs + d_offs[None, :],
                        mask=inside[:, None] & d_mask[None, :],
                        other=0.0,
                    ).to(ACC)
                    sampled += (wx * wy)[:, None] * vals
            acc += attn[:, None] * sampled
    out_ptrs = out_ptr + (qm_row * HEAD_DIM)[:, None] + d_offs[None, :]
    tl.store(
        out_ptrs,
        acc.to(out_ptr.dtype.element_ty),
        mask=q_mask[:, None] & d_mask[None, :],
    )


@triton.jit
def _msda_backward_kernel(
    value_ptr,  # (N, S, M, D)
    shapes_ptr,  # (L, 2)
    starts_ptr,  # (L,)
    loc_ptr,  # (N, Q, M, L, P, 2)
    weight_ptr,  # (N, Q, M, L, P)
    grad_out_ptr,  # (N, Q, M, D)
    grad_value_ptr,  # (N, S, M, D), ACC dtype, zero-initialised, atomically accumulated
    grad_loc_ptr,  # (N, Q, M, L, P, 2)
    grad_weight_ptr,  # (N, Q, M, L, P)
    num_values,
    num_queries,
    NUM_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    NUM_LEVELS: tl.constexpr,
    NUM_POINTS: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
):
    batch, head, q_mask, d_offs, d_mask, qm_row = _program_tile(
        num_queries, NUM_HEADS, HEAD_DIM, BLOCK_Q, BLOCK_D
    )
    qd_mask = q_mask[:, None] & d_mask[None, :]
    grad_out = tl.load(
        grad_out_ptr + (qm_row * HEAD_DIM)[:, None] + d_offs[None, :], mask=qd_mask, other=0.0
    ).to(ACC)

    for level in range(NUM_LEVELS):
        height, width, level_row = _level_geometry(shapes_ptr, starts_ptr, level, batch, num_values)
        for point in tl.static_range(NUM_POINTS):
            lp, x, y, attn = _load_point(
                loc_ptr, weight_ptr, qm_row, q_mask, level, point, NUM_LEVELS, NUM_POINTS, ACC
            )
            x0, y0, fx, fy = _bilinear_corners(x, y, height, width)
            sampled = tl.zeros((BLOCK_Q, BLOCK_D), dtype=ACC)
            d_sampled_dpx = tl.zeros((BLOCK_Q, BLOCK_D), dtype=ACC)  # d sampled / d px
            d_sampled_dpy = tl.zeros((BLOCK_Q, BLOCK_D), dtype=ACC)
            for dy in tl.static_range(2):
                for dx in tl.static_range(2):
                    wx, wy, inside, pix = _corner(
                        x0, y0, fx, fy, height, width, level_row, q_mask, dx, dy
                    )
                    sign_x = 1.0 if dx == 1 else -1.0  # d wx / d px
                    sign_y = 1.0 if dy == 1 else -1.0
                    offs = ((pix * NUM_HEADS + head) * HEAD_DIM)[:, None] + d_offs[None, :]
                    mask = inside[:, None] & d_mask[None, :]
                    vals = tl.load(value_ptr + offs, mask=mask, other=0.0).to(ACC)
                    sampled += (wx * wy)[:, None] * vals
                    d_sampled_dpx += (sign_x * wy)[:, None] * vals
                    d_sampled_dpy += (wx * sign_y)[:, None] * vals
                    # d out / d value at this corner = attn * wx * wy, times grad_out.
                    tl.atomic_add(
                        grad_value_ptr + offs,
                        (attn * wx * wy)[:, None] * grad_out,
                        mask=mask,
                        sem="relaxed",
                    )
            # out = sum attn * sampled: d/d attn = <grad_out, sampled>.
            grad_attn = tl.sum(grad_out * sampled, axis=1)
            tl.store(
                grad_weight_ptr + lp, grad_attn.to(grad_weight_ptr.dtype.element_ty), mask=q_mask
            )
            # px = x * W - 0.5, so d/dx = W * d/dpx (and H for y).
            grad_x = attn * tl.sum(grad_out * d_sampled_dpx, axis=1) * width
            grad_y = attn * tl.sum(grad_out * d_sampled_dpy, axis=1) * height
            loc_ty = grad_loc_ptr.dtype.element_ty
            tl.store(grad_loc_ptr + 2 * lp, grad_x.to(loc_ty), mask=q_mask)
            tl.store(grad_loc_ptr + 2 * lp + 1, grad_y.to(loc_ty), mask=q_mask)


def is_interpreted() -> bool:
    """True when this module's kernels run in Triton's interpreter (``TRITON_INTERPRET=1``
    was set when the module was imported), which takes CPU tensors."""
    return isinstance(_msda_forward_kernel, InterpretedFunction)


def _accumulator(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _check_inputs(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> None:
    if value.dim() != 4 or sampling_locations.dim() != 6 or attention_weights.dim() != 5:
        raise ValueError(
            "ms_deform_attn (triton): expected value (N, S, M, D), sampling_locations "
            "(N, Q, M, L, P, 2), attention_weights (N, Q, M, L, P); got "
            f"{tuple(value.shape)}, {tuple(sampling_locations.shape)}, "
            f"{tuple(attention_weights.shape)}"
        )
    batch, _, heads, _ = value.shape
    levels = spatial_shapes.shape[0]
    expected = (batch, sampling_locations.shape[1], heads, levels)
    if tuple(sampling_locations.shape[:4]) != expected or sampling_locations.shape[-1] != 2:
        raise ValueError(
            f"ms_deform_attn (triton): sampling_locations {tuple(sampling_locations.shape)} "
            f"do not match (N, Q, M, L) = {expected} with a last dimension of 2"
        )
    if tuple(attention_weights.shape) != tuple(sampling_locations.shape[:-1]):
        raise ValueError(
            f"ms_deform_attn (triton): attention_weights {tuple(attention_weights.shape)} "
            f"!= sampling_locations' {tuple(sampling_locations.shape[:-1])}"
        )
    tensors = (value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"ms_deform_attn (triton): inputs on several devices {devices}")
    if value.numel() >= 2**31 or sampling_locations.numel() >= 2**31:
        raise ValueError("ms_deform_attn (triton): inputs over 2**31 elements (int32 offsets)")


def _launch_config(value: Tensor, num_queries: int) -> Tuple[Tuple[int, int], int, int]:
    """Grid (query blocks, N * M), BLOCK_D and the number of warps."""
    batch, _, heads, head_dim = value.shape
    grid = (triton.cdiv(num_queries, _BLOCK_Q), batch * heads)
    block_d = triton.next_power_of_2(head_dim)
    num_warps = _BLOCK_Q * block_d // (32 * _ELEMENTS_PER_THREAD)
    return grid, block_d, max(1, min(8, num_warps))


class _MSDeformAttnFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, locations, weights):
        value = value.contiguous()
        shapes = spatial_shapes.to(torch.int32).contiguous()
        starts = level_start_index.to(torch.int32).contiguous()
        locations = locations.contiguous()
        weights = weights.contiguous()
        batch, num_values, heads, head_dim = value.shape
        _, num_queries, _, levels, points, _ = locations.shape
        out = value.new_empty(batch, num_queries, heads, head_dim)
        grid, block_d, num_warps = _launch_config(value, num_queries)
        _msda_forward_kernel[grid](
            value, shapes, starts, locations, weights, out,
            num_values, num_queries,
            NUM_HEADS=heads, HEAD_DIM=head_dim, NUM_LEVELS=levels, NUM_POINTS=points,
            BLOCK_Q=_BLOCK_Q, BLOCK_D=block_d, ACC=_accumulator(value.dtype), num_warps=num_warps,
        )  # fmt: skip
        ctx.save_for_backward(value, shapes, starts, locations, weights)
        return out.view(batch, num_queries, heads * head_dim)

    @staticmethod
    def backward(ctx, grad_output):
        value, shapes, starts, locations, weights = ctx.saved_tensors
        batch, num_values, heads, head_dim = value.shape
        _, num_queries, _, levels, points, _ = locations.shape
        acc_dtype = torch.float64 if value.dtype == torch.float64 else torch.float32
        grad_value = torch.zeros(value.shape, dtype=acc_dtype, device=value.device)
        grad_locations = torch.empty_like(locations)
        grad_weights = torch.empty_like(weights)
        grid, block_d, num_warps = _launch_config(value, num_queries)
        _msda_backward_kernel[grid](
            value, shapes, starts, locations, weights, grad_output.contiguous(),
            grad_value, grad_locations, grad_weights,
            num_values, num_queries,
            NUM_HEADS=heads, HEAD_DIM=head_dim, NUM_LEVELS=levels, NUM_POINTS=points,
            BLOCK_Q=_BLOCK_Q, BLOCK_D=block_d, ACC=_accumulator(value.dtype), num_warps=num_warps,
        )  # fmt: skip
        return grad_value.to(value.dtype), None, None, grad_locations, grad_weights


def ms_deform_attn_triton(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Triton version of ``ms_deform_attn`` (same arguments, same result, differentiable
    in value, sampling_locations and attention_weights).

    Args:
        value: (N, S, M, D) float32, float16, bfloat16 or float64.
        spatial_shapes: (L, 2) integer, (H_l, W_l) of every level.
        level_start_index: (L,) integer, offset of every level in S.
        sampling_locations: (N, Q, M, L, P, 2), (x, y) in [0, 1], any float dtype.
        attention_weights: (N, Q, M, L, P), any float dtype.
    Returns:
        (N, Q, M * D) in value's dtype; gradients come back in each input's dtype.
    """
    _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    if value.device.type == "cpu" and not is_interpreted():
        raise RuntimeError(
            "ms_deform_attn (triton): the tensors are on CPU, where Triton kernels run only "
            "in its interpreter: set TRITON_INTERPRET=1 before triton is first imported, "
            "or use impl='pytorch'"
        )
    return _MSDeformAttnFunction.apply(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )
