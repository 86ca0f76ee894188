"""Per-clip inference with clip tracking (paper appendix A.1; IFC's clip tracking).

The video is split into clips of ``clip_length`` frames, consecutive clips sharing
``clip_overlap`` frames (the last clip is aligned to the end of the video, so it may share
more). Every query of every clip is kept as a candidate. Consecutive clips are linked by
Hungarian matching on the soft mask IoU over their shared frames (mask probabilities at
the mask-feature resolution), with "same argmax class" as a tie-breaker; a pair below
``min_iou`` is not linked and the query starts a new track. A track's class
probabilities are the mean over its clips weighted by the clips' frame counts; on a
frame shared by two linked clips its mask probability is the mean of the two clips'.
"""

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
from scipy.optimize import linear_sum_assignment

from .candidates import Member, SegmentPrediction, VideoCandidates
from .video import predict_segment

# Bonus added to the IoU of a pair with the same argmax class: breaks ties only.
CLASS_TIE_BREAK = 1e-3


@dataclass
class ClipLinkInput:
    """What linking needs of one clip covering video frames [start, end).

    class_probs: (Q, K) class probabilities of the clip's queries.
    mask_probs: video frame index -> (Q, h, w) mask probabilities, for (at least) the
        frames shared with the neighbouring clips; all clips at the same (h, w).
    """

    start: int
    end: int
    class_probs: torch.Tensor
    mask_probs: Dict[int, torch.Tensor]


def split_into_clips(num_frames: int, clip_length: int, clip_overlap: int) -> List[Tuple[int, int]]:
    """[start, end) of each clip; the last clip ends at ``num_frames``; a video shorter
    than a clip is one clip. Needs ``0 <= clip_overlap < clip_length`` (InferenceOptions
    checks the config)."""
    if num_frames <= clip_length:
        return [(0, num_frames)]
    stride = clip_length - clip_overlap
    starts = list(range(0, num_frames - clip_length + 1, stride))
    if starts[-1] + clip_length < num_frames:
        starts.append(num_frames - clip_length)
    return [(start, start + clip_length) for start in starts]


def soft_iou(probs_a: torch.Tensor, probs_b: torch.Tensor) -> torch.Tensor:
    """Soft IoU of every pair of mask volumes: (A, F, h, w) x (B, F, h, w) -> (A, B).

    intersection = sum(a * b), union = sum(a + b - a * b); the plain IoU on binary masks.
    """
    flat_a, flat_b = probs_a.flatten(1), probs_b.flatten(1)
    intersection = flat_a @ flat_b.T
    union = flat_a.sum(1)[:, None] + flat_b.sum(1)[None, :] - intersection
    return intersection / union.clamp(min=1e-6)


def match_clip_pair(
    previous: ClipLinkInput, current: ClipLinkInput, min_iou: float
) -> List[Tuple[int, int]]:
    """(previous query, current query) pairs linked between two overlapping clips; a pair
    whose soft mask IoU is below ``min_iou`` (MODEL.IFR.TEST.CLIP_MIN_IOU) is not linked."""
    shared = sorted(set(previous.mask_probs) & set(current.mask_probs))
    shared = [t for t in shared if current.start <= t < previous.end]
    if not shared:
        raise ValueError(
            f"clips [{previous.start}, {previous.end}) and [{current.start}, {current.end}) "
            "have no shared frame with mask probabilities"
        )
    iou = soft_iou(
        torch.stack([previous.mask_probs[t] for t in shared], dim=1).float(),
        torch.stack([current.mask_probs[t] for t in shared], dim=1).float(),
    )
    same_class = previous.class_probs.argmax(1)[:, None] == current.class_probs.argmax(1)[None, :]
    score = iou + CLASS_TIE_BREAK * same_class.to(iou)
    rows, cols = linear_sum_assignment(score.cpu().numpy(), maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]


def link_clips(clips: Sequence[ClipLinkInput], min_iou: float) -> List[List[Member]]:
    """Tracks over clips: each a list of (clip index, query index), one per clip at most.

    Every query of every clip belongs to exactly one track; tracks are ordered by the
    clip, then the query, that started them.
    """
    tracks: List[List[Member]] = [[(0, q)] for q in range(clips[0].class_probs.shape[0])]
    track_of_query = list(range(len(tracks)))
    for clip_idx in range(1, len(clips)):
        links = dict(
            (cur, prev)
            for prev, cur in match_clip_pair(clips[clip_idx - 1], clips[clip_idx], min_iou)
        )
        new_track_of_query = []
        for query in range(clips[clip_idx].class_probs.shape[0]):
            if query in links:
                track = track_of_query[links[query]]
            else:
                track = len(tracks)
                tracks.append([])
            tracks[track].append((clip_idx, query))
            new_track_of_query.append(track)
        track_of_query = new_track_of_query
    return tracks


def track_class_probs(
    tracks: Sequence[Sequence[Member]], clips: Sequence[ClipLinkInput]
) -> torch.Tensor:
    """(num_tracks, K): each track's class probabilities averaged over its clips, weighted
    by the clips' frame counts."""
    rows = []
    for track in tracks:
        weights = torch.tensor([float(clips[c].end - clips[c].start) for c, _ in track])
        probs = torch.stack([clips[c].class_probs[q].float().cpu() for c, q in track])
        rows.append((weights[:, None] * probs).sum(0) / weights.sum())
    return torch.stack(rows)


def link_input_of(segment: SegmentPrediction, shared_frames: Sequence[int]) -> ClipLinkInput:
    """Linking input of a clip: mask probabilities of all queries on ``shared_frames`` at
    the mask-feature resolution of the (unpadded) image."""
    stride_h = segment.padded_size[0] / segment.mask_features.shape[-2]
    stride_w = segment.padded_size[1] / segment.mask_features.shape[-1]
    link_size = (
        max(1, round(segment.image_size[0] / stride_h)),
        max(1, round(segment.image_size[1] / stride_w)),
    )
    all_queries = torch.arange(segment.class_probs.shape[0])
    mask_probs = {}
    for t in shared_frames:
        mask_probs[t] = segment.mask_probs(all_queries, t, t + 1, link_size)[:, 0].cpu()
    return ClipLinkInput(
        segment.frame_offset, segment.frame_end, segment.class_probs.cpu(), mask_probs
    )


def clip_candidates(
    model, frames: Sequence[torch.Tensor], flipped: bool = False
) -> VideoCandidates:
    """Candidates of per-clip inference: the tracks of the linked clips."""
    options = model.inference_options
    ranges = split_into_clips(len(frames), options.clip_length, options.clip_overlap)
    segments, link_inputs = [], []
    for clip_idx, (start, end) in enumerate(ranges):
        segment = predict_segment(model, frames[start:end], frame_offset=start, flipped=flipped)
        shared = set()
        if clip_idx > 0:
            shared.update(range(start, ranges[clip_idx - 1][1]))
        if clip_idx + 1 < len(ranges):
            shared.update(range(ranges[clip_idx + 1][0], end))
        segments.append(segment)
        link_inputs.append(link_input_of(segment, sorted(shared)))
    tracks = link_clips(link_inputs, options.clip_min_iou)
    return VideoCandidates(track_class_probs(tracks, link_inputs), tracks, segments, len(frames))
