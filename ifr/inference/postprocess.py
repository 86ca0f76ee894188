"""Per-video post-processing: top-k (query, class) pairs and their masks at the original
resolution, computed frame-chunk by frame-chunk so that memory never holds the
(N, T, H0, W0) volume.

Upsampling rule (Mask2Former-VIS): mask logits at the mask-feature size (h, w) ->
bilinear to the padded input size (H, W) -> crop to the resized image size ->
bilinear to the original size (H0, W0) -> sigmoid > threshold.
"""

from typing import Dict, List, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F

Size = Tuple[int, int]
RLE = Dict[str, object]


def select_topk(
    pred_logits: torch.Tensor, k: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k over all (query, class) pairs of sigmoid class scores, as Mask2Former-VIS.

    Args:
        pred_logits: (N, K) class logits of the clip-level queries (sigmoid, no no-object).
        k: number of pairs kept; at most N * K are returned.
    Returns:
        scores (k,), labels (k,) int64 contiguous class ids, query_idx (k,) int64,
        sorted by decreasing score.
    """
    return select_topk_probs(pred_logits.sigmoid(), k)


def select_topk_probs(
    class_probs: torch.Tensor, k: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``select_topk`` on class probabilities (N, K) already in [0, 1]."""
    if class_probs.dim() != 2:
        raise ValueError(f"class scores must be (N, K), got shape {tuple(class_probs.shape)}")
    num_queries, num_classes = class_probs.shape
    k = min(k, num_queries * num_classes)
    scores, flat_idx = class_probs.flatten().topk(k, sorted=True)
    labels = flat_idx % num_classes
    query_idx = torch.div(flat_idx, num_classes, rounding_mode="floor")
    return scores, labels, query_idx


def compute_mask_logits(mask_embeds: torch.Tensor, mask_features: torch.Tensor) -> torch.Tensor:
    """Mask logits of k queries on t frames: ``embeds[q, f] . features[f]``.

    Args:
        mask_embeds: (k, t, C) on the compute device.
        mask_features: (t, C, h, w) on any device; moved to the embeds' device.
    Returns:
        (k, t, h, w) float logits on the embeds' device.
    """
    mask_features = mask_features.to(device=mask_embeds.device, dtype=mask_embeds.dtype)
    return torch.einsum("ktc,tchw->kthw", mask_embeds, mask_features)


def upsample_mask_logits(
    mask_logits: torch.Tensor, padded_size: Size, image_size: Size, output_size: Size
) -> torch.Tensor:
    """Mask logits (k, t, h, w) at the mask-feature size -> (k, t, H0, W0) at ``output_size``.

    ``padded_size`` is the padded input size, ``image_size`` the resized image inside it
    (before padding), ``output_size`` the size wanted (usually the original video size).
    """
    num_masks, num_frames = mask_logits.shape[:2]
    if num_masks == 0 or num_frames == 0:
        return mask_logits.new_zeros((num_masks, num_frames) + tuple(output_size))
    logits = mask_logits.flatten(0, 1).unsqueeze(1)
    logits = F.interpolate(logits, size=tuple(padded_size), mode="bilinear", align_corners=False)
    logits = logits[:, :, : image_size[0], : image_size[1]]
    logits = F.interpolate(logits, size=tuple(output_size), mode="bilinear", align_corners=False)
    return logits.view(num_masks, num_frames, *output_size)


def encode_rle(masks: torch.Tensor) -> List[List[RLE]]:
    """Binary masks (k, t, H, W) -> k lists of t COCO RLE dicts (counts as str, JSON-ready)."""
    masks_np = masks.to(device="cpu", dtype=torch.uint8).numpy()
    encoded = []
    for instance_masks in masks_np:
        # pycocotools wants (H, W, t) in Fortran order.
        rles = mask_util.encode(np.asfortranarray(instance_masks.transpose(1, 2, 0)))
        for rle in rles:
            rle["counts"] = rle["counts"].decode("ascii")
        encoded.append(list(rles))
    return encoded


def masks_to_rle(
    mask_embeds: torch.Tensor,
    mask_features: torch.Tensor,
    padded_size: Size,
    image_size: Size,
    output_size: Size,
    chunk: int,
    threshold: float = 0.5,
) -> List[List[RLE]]:
    """Binary masks at ``output_size`` of the k selected queries, as RLE.

    Computed ``chunk`` frames at a time: the chunk of mask features moves to the embeds'
    device, the logits are upsampled (see module docstring), thresholded and encoded on CPU.

    Args:
        mask_embeds: (k, T, C) mask embeddings of the selected queries (compute device).
        mask_features: (T, C, h, w) per-frame mask features, on any device.
        padded_size: (H, W) padded input size; image_size: resized size before padding;
        output_size: (H0, W0) original size; chunk: frames per chunk (>= 1);
        threshold: on the mask probability.
    Returns:
        k lists of T RLE dicts.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    num_masks, num_frames = mask_embeds.shape[:2]
    if mask_features.shape[0] != num_frames:
        raise ValueError(
            f"mask_embeds has {num_frames} frames but mask_features has {mask_features.shape[0]}"
        )
    rles: List[List[RLE]] = [[] for _ in range(num_masks)]
    for start in range(0, num_frames, chunk):
        end = min(start + chunk, num_frames)
        logits = compute_mask_logits(mask_embeds[:, start:end], mask_features[start:end])
        logits = upsample_mask_logits(logits, padded_size, image_size, output_size)
        for instance_rles, chunk_rles in zip(rles, encode_rle(logits.sigmoid() > threshold)):
            instance_rles.extend(chunk_rles)
    return rles
