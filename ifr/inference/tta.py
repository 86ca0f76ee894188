"""Test-time augmentation (paper Sec. 3.2): several input resolutions (and optionally
horizontal flips), fused by matching every result to a pivot result with the Eq. (4) cost.

Each run yields candidates (queries in "video" mode, tracks in "clip" mode). Every other
run's candidates are matched one-to-one to the pivot's by Hungarian matching on the
Eq. (4) cost, where the pivot's argmax class is the target label and its mask
probabilities the soft target masks; masks are compared at the pivot's mask-feature
resolution. A fused candidate averages the matched candidates' class probabilities, and
its mask probabilities are averaged at the original size when rendered.

Every run resizes the *original* frames as the test mapper does (shorter side
``min_size``, longer side at most ``INPUT.MAX_SIZE_TEST``), never the frames the mapper
already shrank: they come from ``original_frames`` (``VideoPredictor``) or are read again
from ``file_names`` (the test mapper), one run at a time, so only one run's resized frames
are held. Memory: every run's mask features wait on the feature storage until the end.
"""

import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from scipy.optimize import linear_sum_assignment

from ..layers.matching_cost import clip_matching_cost
from .candidates import VideoCandidates
from .contract import VideoModel

# Builds candidates from (model, frames, flipped): video_candidates or clip_candidates.
CandidateFn = Callable[..., VideoCandidates]
# Eq. (4) cost: (pred_probs (N, K), pred_masks (N, ...) logits, tgt_labels (M,),
# tgt_masks (M, ...) in [0, 1]) -> (N, M).
CostFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


logger = logging.getLogger(__name__)


def resized_shape(height: int, width: int, min_size: int, max_size: int) -> Tuple[int, int]:
    """(H', W') of Detectron2's ``ResizeShortestEdge`` (the test mapper's resize): shorter
    side ``min_size``, scaled down further if the longer side would exceed ``max_size``."""
    return T.ResizeShortestEdge.get_output_shape(height, width, min_size, max_size)


def resize_frames(
    frames: Sequence[torch.Tensor], min_size: int, max_size: int
) -> List[torch.Tensor]:
    """uint8 (3, H, W) frames -> ``resized_shape`` (bilinear). Frames already at that size
    are returned unchanged."""
    height, width = frames[0].shape[-2:]
    new_size = resized_shape(height, width, min_size, max_size)
    if new_size == (height, width):
        return list(frames)
    resized = []
    for frame in frames:
        out = F.interpolate(
            frame[None].float(), size=new_size, mode="bilinear", align_corners=False
        )
        resized.append(out[0].round().clamp(0, 255).to(torch.uint8))
    return resized


def frames_at_size(
    batched_input: Dict, min_size: int, max_size: int, image_format: str
) -> List[torch.Tensor]:
    """T uint8 (3, H', W') frames of the video at ``resized_shape(H0, W0, min_size,
    max_size)``, resized from the original frames as the test mapper resizes them.

    The originals are ``batched_input["original_frames"]`` (T uint8 (H0, W0, 3) arrays in
    ``image_format``) when present, else the files ``batched_input["file_names"]``, read
    one at a time. An input with neither (synthetic input) has its ``image`` frames
    resized, with a warning where that upsamples them.
    """
    originals = batched_input.get("original_frames")
    if originals is None and batched_input.get("file_names"):
        originals = (read_image(path, format=image_format) for path in batched_input["file_names"])
    if originals is None:
        frames = batched_input["image"]
        if min(frames[0].shape[-2:]) < min_size:
            logger.warning(
                f"TTA size {min_size} upsamples video {batched_input.get('video_id', '?')!r}'s "
                f"{tuple(frames[0].shape[-2:])} frames: the input has no original frames"
            )
        return resize_frames(frames, min_size, max_size)
    resize = T.ResizeShortestEdge([min_size, min_size], max_size)
    resized = []
    for frame in originals:
        frame = np.ascontiguousarray(frame)
        frame = resize.get_transform(frame).apply_image(frame)
        resized.append(torch.as_tensor(np.ascontiguousarray(frame.transpose(2, 0, 1))))
    return resized


def augmentations(min_sizes: Sequence[int], flip: bool, pivot: int) -> List[Tuple[int, bool]]:
    """(min_size, flipped) of every run; the pivot run (``min_sizes[pivot]``, unflipped) first."""
    order = [pivot] + [i for i in range(len(min_sizes)) if i != pivot]
    runs = [(min_sizes[i], False) for i in order]
    if flip:
        runs += [(min_sizes[i], True) for i in order]
    return runs


def matching_size(candidates: VideoCandidates) -> Tuple[int, int]:
    """Mask-feature resolution of the (unpadded) image of the first segment."""
    segment = candidates.segments[0]
    feat_h, feat_w = segment.mask_size
    return (
        max(1, round(segment.image_size[0] * feat_h / segment.padded_size[0])),
        max(1, round(segment.image_size[1] * feat_w / segment.padded_size[1])),
    )


def all_mask_probs(candidates: VideoCandidates, size: Tuple[int, int], chunk: int) -> torch.Tensor:
    """(Q, T, h, w) mask probabilities of every candidate at ``size``, chunk by chunk."""
    everyone = list(range(candidates.class_probs.shape[0]))
    parts = [
        candidates.mask_probs(
            everyone, start, min(start + chunk, candidates.num_frames), size
        ).cpu()
        for start in range(0, candidates.num_frames, chunk)
    ]
    return torch.cat(parts, dim=1)


def match_to_pivot(
    pivot_probs: torch.Tensor,
    pivot_masks: torch.Tensor,
    other_probs: torch.Tensor,
    other_masks: torch.Tensor,
    cost_fn: CostFn,
) -> Dict[int, int]:
    """Eq. (4) Hungarian matching of another run's candidates to the pivot's.

    Args:
        pivot_probs: (P, K) and pivot_masks: (P, T, h, w) probabilities of the pivot.
        other_probs: (Q, K) and other_masks: (Q, T, h, w) probabilities of the other run.
    Returns:
        pivot candidate -> matched candidate of the other run (min(P, Q) pairs).
    """
    other_logits = torch.logit(other_masks.float(), eps=1e-6)
    cost = cost_fn(
        other_probs.float().cpu(), other_logits, pivot_probs.argmax(1).cpu(), pivot_masks.float()
    )
    other_idx, pivot_idx = linear_sum_assignment(cost.cpu().numpy())
    return {int(p): int(o) for o, p in zip(other_idx, pivot_idx)}


def fuse_to_pivot(
    pivot: VideoCandidates, others: Sequence[VideoCandidates], matches: Sequence[Dict[int, int]]
) -> VideoCandidates:
    """One candidate per pivot candidate: class probabilities averaged over the matched
    candidates, members (hence mask probabilities) pooled."""
    segments = list(pivot.segments)
    members = [list(m) for m in pivot.members]
    prob_sum = pivot.class_probs.float().cpu().clone()
    prob_count = torch.ones(len(members), 1)
    for other, match in zip(others, matches):
        offset = len(segments)
        segments.extend(other.segments)
        for p, o in match.items():
            members[p].extend((offset + seg, query) for seg, query in other.members[o])
            prob_sum[p] += other.class_probs[o].float().cpu()
            prob_count[p] += 1
    return VideoCandidates(prob_sum / prob_count, members, segments, pivot.num_frames)


def tta_candidates(
    model: VideoModel,
    batched_input: Dict,
    candidate_fn: CandidateFn,
    cost_fn: Optional[CostFn] = None,
) -> VideoCandidates:
    """Candidates fused over the TTA runs of ``model.inference_options``; each run's frames
    are resized from the original frames of ``batched_input`` (``frames_at_size``)."""
    options = model.inference_options
    if cost_fn is None:
        cost_fn = default_cost_fn()
    runs = augmentations(options.tta_min_sizes, options.tta_flip, options.tta_pivot)
    pivot, others = None, []
    for min_size, flipped in runs:
        run_frames = frames_at_size(
            batched_input, min_size, options.max_size_test, options.input_format
        )
        if flipped:
            run_frames = [f.flip(-1) for f in run_frames]
        candidates = candidate_fn(model, run_frames, flipped=flipped)
        if pivot is None:
            pivot = candidates
        else:
            others.append(candidates)
    size = matching_size(pivot)
    pivot_masks = all_mask_probs(pivot, size, options.frame_chunk)
    matches = [
        match_to_pivot(
            pivot.class_probs,
            pivot_masks,
            other.class_probs,
            all_mask_probs(other, size, options.frame_chunk),
            cost_fn,
        )
        for other in others
    ]
    return fuse_to_pivot(pivot, others, matches)


def default_cost_fn() -> CostFn:
    return clip_matching_cost
