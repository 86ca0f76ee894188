"""Per-clip inference with IFC's clip tracking (paper appendix A.1, docs/method.md Sec. 3).

The video is encoded once; the decoder then runs on clips of ``clip_length`` frames,
consecutive clips sharing ``clip_overlap`` frames (IFC: stride 1, overlap T - 1; the last
clip is aligned to the end of the video). As IFC:
- a clip keeps only the queries it predicts as objects (highest class probability at
  least ``min_score``);
- a new clip's query is matched to the tracks so far by Hungarian matching on a score:
  for every stored clip that overlaps the new one and holds a member of the track, the
  soft IoU of the two mask volumes on the frames the two clips share (sum of
  intersections over sum of unions), averaged over those stored clips; a pair scoring
  ``min_iou`` or less is not linked, and the query starts a new track;
- a track's class probabilities are the mean over its clips; its mask on a frame is the
  sigmoid of the mean mask logits of its clips covering the frame.

Shape shorthand: Q kept queries of a clip, F frames, (h, w) the mask-feature size of the
unpadded image.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import torch
from scipy.optimize import linear_sum_assignment

from .candidates import Member, SegmentPrediction, VideoCandidates
from .video import decode_segment, encode_frames_of


@dataclass
class ClipLinkInput:
    """What linking needs of one clip covering video frames [start, end).

    queries: (Q,) indices, in the clip's decoder output, of the kept queries.
    class_probs: (Q, K) their class probabilities.
    mask_probs: (Q, end - start, h, w) their mask probabilities; all clips at one (h, w).
    """

    start: int
    end: int
    queries: List[int]
    class_probs: torch.Tensor
    mask_probs: torch.Tensor


@dataclass
class ClipTracker:
    """Tracks over clips added in video order (``add``); each track is a list of
    (clip index, query index), at most one per clip."""

    min_iou: float
    tracks: List[List[Member]] = field(default_factory=list)
    # Stored clips that later clips may overlap: (clip index, clip, track of each row).
    _window: List[Tuple[int, ClipLinkInput, List[int]]] = field(default_factory=list)

    def add(self, clip_idx: int, clip: ClipLinkInput) -> None:
        """Link the kept queries of a clip to the tracks, or start new tracks."""
        self._window = [w for w in self._window if w[1].end > clip.start]
        scores = self.link_scores(clip)
        track_of_row = [-1] * len(clip.queries)
        if scores.numel():
            above = scores > self.min_iou
            rows, cols = linear_sum_assignment((scores * above).numpy(), maximize=True)
            for track, row in zip(rows, cols):
                if above[track, row]:
                    track_of_row[row] = int(track)
        for row, query in enumerate(clip.queries):
            if track_of_row[row] < 0:
                track_of_row[row] = len(self.tracks)
                self.tracks.append([])
            self.tracks[track_of_row[row]].append((clip_idx, query))
        self._window.append((clip_idx, clip, track_of_row))

    def link_scores(self, clip: ClipLinkInput) -> torch.Tensor:
        """(num_tracks, Q): mean over the stored clips overlapping ``clip`` that hold the
        track of the soft IoU on their shared frames; 0 for a track in none of them."""
        total = torch.zeros(len(self.tracks), len(clip.queries))
        count = torch.zeros(len(self.tracks))
        for _, stored, track_of_row in self._window:
            first, last = max(clip.start, stored.start), min(clip.end, stored.end)
            if first >= last or not track_of_row:
                continue
            iou = soft_iou(
                stored.mask_probs[:, first - stored.start : last - stored.start],
                clip.mask_probs[:, first - clip.start : last - clip.start],
            )
            rows = torch.tensor(track_of_row)
            total[rows] += iou
            count[rows] += 1
        return total / count.clamp(min=1)[:, None]


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

    intersection = sum(a * b), union = sum(a + b - a * b), each over all F frames; the
    plain IoU on binary masks.
    """
    flat_a, flat_b = probs_a.flatten(1).float(), probs_b.flatten(1).float()
    intersection = flat_a @ flat_b.T
    union = flat_a.sum(1)[:, None] + flat_b.sum(1)[None, :] - intersection
    return intersection / union.clamp(min=1e-6)


def kept_queries(class_probs: torch.Tensor, min_score: float) -> List[int]:
    """Queries predicted as objects: highest class probability >= ``min_score``."""
    return torch.nonzero(class_probs.max(dim=1).values >= min_score)[:, 0].tolist()


def link_input_of(segment: SegmentPrediction, queries: List[int]) -> ClipLinkInput:
    """Linking input of a clip: the kept queries' mask probabilities on all its frames
    at the mask-feature resolution of the (unpadded) image."""
    stride_h = segment.padded_size[0] / segment.mask_features.shape[-2]
    stride_w = segment.padded_size[1] / segment.mask_features.shape[-1]
    link_size = (
        max(1, round(segment.image_size[0] / stride_h)),
        max(1, round(segment.image_size[1] / stride_w)),
    )
    index = torch.tensor(queries, dtype=torch.long)
    mask_probs = segment.mask_probs(index, segment.frame_offset, segment.frame_end, link_size)
    return ClipLinkInput(
        segment.frame_offset,
        segment.frame_end,
        queries,
        segment.class_probs[index.to(segment.class_probs.device)].float().cpu(),
        mask_probs.cpu(),
    )


def track_class_probs(
    tracks: Sequence[Sequence[Member]], class_probs_of: Dict[Member, torch.Tensor]
) -> torch.Tensor:
    """(num_tracks, K): each track's class probabilities averaged over its clips."""
    return torch.stack([torch.stack([class_probs_of[m] for m in t]).mean(0) for t in tracks])


def clip_candidates(
    model, frames: Sequence[torch.Tensor], flipped: bool = False
) -> VideoCandidates:
    """Candidates of per-clip inference: the tracks of the linked clips (no candidate
    when no clip predicts an object)."""
    options = model.inference_options
    multi_scale, mask_features, sizes = encode_frames_of(model, frames)
    tracker = ClipTracker(options.clip_min_iou)
    segments, class_probs_of = [], {}
    for clip_idx, (start, end) in enumerate(
        split_into_clips(len(frames), options.clip_length, options.clip_overlap)
    ):
        segment = decode_segment(model, multi_scale, mask_features, sizes, start, end, flipped)
        queries = kept_queries(segment.class_probs, options.clip_min_score)
        segments.append(segment)
        link_input = link_input_of(segment, queries)
        for row, query in enumerate(queries):
            class_probs_of[(clip_idx, query)] = link_input.class_probs[row]
        tracker.add(clip_idx, link_input)
    num_classes = segments[0].class_probs.shape[1]
    probs = (
        track_class_probs(tracker.tracks, class_probs_of)
        if tracker.tracks
        else torch.zeros(0, num_classes)
    )
    return VideoCandidates(probs, tracker.tracks, segments, len(frames), mean_of="logits")
