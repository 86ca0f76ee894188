"""Masks predicted inside boxes (TeViT's 28x28 RoI masks) pasted into a frame, as
mmdetection's ``_do_paste_mask`` (its GPU path: bilinear sampling over the whole frame).
Used by the TeViT head (into the stride-4 grid) and by inference (at the output size)."""

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["paste_mask_logits", "paste_mask_probs"]


def paste_mask_probs(mask_logits: Tensor, boxes: Tensor, grid_size: tuple, stride: float) -> Tensor:
    """Box masks into a frame grid, as probabilities (mmdetection's ``_do_paste_mask``).

    Args:
        mask_logits: (R, S, S) logits of each box's mask; boxes: (R, 4) xyxy in pixels of
            a grid of stride 1.
        grid_size: (h, w) of the output grid, whose cell (i, j) is centred at pixel
            ((j + 0.5) * stride, (i + 0.5) * stride).
    Returns:
        (R, h, w) the bilinearly sampled box mask probability, 0 outside the box.
    """
    h, w = grid_size
    ys = (torch.arange(h, device=boxes.device, dtype=boxes.dtype) + 0.5) * stride
    xs = (torch.arange(w, device=boxes.device, dtype=boxes.dtype) + 0.5) * stride
    x1, y1, x2, y2 = (boxes[:, i, None] for i in range(4))
    gx = (xs[None] - x1) / (x2 - x1).clamp(min=1e-6) * 2 - 1  # (R, w)
    gy = (ys[None] - y1) / (y2 - y1).clamp(min=1e-6) * 2 - 1  # (R, h)
    grid = torch.stack([gx[:, None, :].expand(-1, h, -1), gy[:, :, None].expand(-1, -1, w)], dim=-1)
    return F.grid_sample(
        mask_logits[:, None].sigmoid(), grid.to(mask_logits.dtype), align_corners=False
    )[:, 0]


def paste_mask_logits(mask_logits: Tensor, boxes: Tensor, grid_size: tuple, stride: int) -> Tensor:
    """``paste_mask_probs`` mapped back to logits (clamped to [-ln(1e6), ln(1e6)])."""
    probs = paste_mask_probs(mask_logits, boxes, grid_size, stride)
    return torch.logit(probs.clamp(1e-6, 1 - 1e-6))
