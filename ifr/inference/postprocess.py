"""Per-video post-processing: top-k (query, class) pairs, and the mask logits of a
query at the original resolution (``candidates.py`` renders them one frame and one
instance at a time, so memory never holds a (k, T, H0, W0) volume).

Upsampling rule (Mask2Former-VIS): mask logits at the mask-feature size (h, w) ->
bilinear to the padded input size (H, W) -> crop to the resized image size ->
bilinear to the original size (H0, W0) -> sigmoid > threshold.
"""

from typing import Tuple

import torch
import torch.nn.functional as F

Size = Tuple[int, int]


def select_topk_probs(
    class_probs: torch.Tensor, k: int, score_threshold: float = 0.0
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k over all (query, class) pairs of class probabilities, as Mask2Former-VIS.

    Args:
        class_probs: (N, K) class probabilities of the candidates, in [0, 1].
        k: number of pairs kept; at most N * K are returned; 0 keeps every pair.
        score_threshold: if > 0, only pairs of probability above it are kept (IFC).
    Returns:
        scores (k,), labels (k,) int64 contiguous class ids, query_idx (k,) int64,
        sorted by decreasing score.
    """
    if class_probs.dim() != 2:
        raise ValueError(f"class scores must be (N, K), got shape {tuple(class_probs.shape)}")
    num_queries, num_classes = class_probs.shape
    k = num_queries * num_classes if k == 0 else min(k, num_queries * num_classes)
    scores, flat_idx = class_probs.flatten().topk(k, sorted=True)
    if score_threshold > 0:
        above = scores > score_threshold
        scores, flat_idx = scores[above], flat_idx[above]
    labels = flat_idx % num_classes
    query_idx = torch.div(flat_idx, num_classes, rounding_mode="floor")
    return scores, labels, query_idx


def object_queries(class_probs: torch.Tensor) -> torch.Tensor:
    """(N,) bool: queries whose most likely of the K + 1 softmax classes is an object, from
    (N, K) probabilities without the no-object column (whose probability is 1 - their sum),
    as IFC's inference."""
    no_object = 1 - class_probs.sum(dim=1)
    return class_probs.max(dim=1).values > no_object


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
