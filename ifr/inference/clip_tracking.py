"""Per-clip inference with IFC's clip tracking (paper appendix A.1, docs/method.md Sec. 3).

The decoder runs on clips of ``clip_length`` frames, consecutive clips sharing
``clip_overlap`` frames (IFC: stride 1, overlap T - 1; the last clip is aligned to the end
of the video). As IFC:
- a clip keeps only the queries it predicts as objects (highest class probability at
  least ``min_score``);
- a new clip's query is matched to the tracks so far by Hungarian matching on a score:
  for every stored clip that overlaps the new one and holds a member of the track, the
  soft IoU of the two mask volumes on the frames the two clips share (sum of
  intersections over sum of unions), averaged over those stored clips; a pair scoring
  ``min_iou`` or less is not linked, and the query starts a new track;
- a track's class probabilities are the mean over its clips; its mask on a frame is the
  sigmoid of the mean mask logits of its clips covering the frame.

The video is read as a stream, so peak memory does not grow with its length: a clip's
frames are encoded when it is decoded (``FeatureWindow``: a chunk of frames at a time,
dropped once no later clip reads them), and a frame is finished as soon as no later clip
covers it: its masks are rendered at the output size and run-length encoded
(``RenderedFrames``), and the clips' mask logits on it are freed. Tracks keep a running
sum of their class probabilities and their finished frames' RLEs. Under TTA a frame's
track logits are kept instead (``TrackLogitFrames``), for TTA to match and fuse runs.

Shape shorthand: Q kept queries of a clip, F frames, L frames of a clip, (h, w) the
mask-feature size, (H0, W0) the output size.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from scipy.optimize import linear_sum_assignment

from .candidates import (
    RenderedCandidates,
    SegmentPrediction,
    TrackLogits,
    VideoCandidates,
    frame_rle,
    ordered_mean,
)
from .contract import VideoModel
from .feature_window import FeatureWindow
from .postprocess import Size, object_queries
from .video import decode_segment


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
    """Links clips added in video order (``add``) into tracks 0, 1, ...; keeps only the
    stored clips a later clip may still overlap."""

    min_iou: float
    num_tracks: int = 0
    # Stored clips that later clips may overlap: (clip, track of each row).
    _window: List[Tuple[ClipLinkInput, List[int]]] = field(default_factory=list)

    def add(self, clip: ClipLinkInput) -> List[int]:
        """Link the kept queries of a clip to the tracks, or start new tracks; returns the
        track of each kept query (row of ``clip``)."""
        self._window = [w for w in self._window if w[0].end > clip.start]
        scores = self.link_scores(clip)
        track_of_row = [-1] * len(clip.queries)
        if scores.numel():
            above = scores > self.min_iou
            rows, cols = linear_sum_assignment((scores * above).numpy(), maximize=True)
            for track, row in zip(rows, cols):
                if above[track, row]:
                    track_of_row[row] = int(track)
        for row in range(len(clip.queries)):
            if track_of_row[row] < 0:
                track_of_row[row] = self.num_tracks
                self.num_tracks += 1
        self._window.append((clip, track_of_row))
        return track_of_row

    def link_scores(self, clip: ClipLinkInput) -> torch.Tensor:
        """(num_tracks, Q): mean over the stored clips overlapping ``clip`` that hold the
        track of the soft IoU on their shared frames; 0 for a track in none of them."""
        total = torch.zeros(self.num_tracks, len(clip.queries))
        count = torch.zeros(self.num_tracks)
        for stored, track_of_row in self._window:
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


def kept_queries(
    class_probs: torch.Tensor, min_score: float, objects_only: bool = False
) -> List[int]:
    """Queries predicted as objects: highest class probability >= ``min_score`` and, with
    ``objects_only``, most likely of the K + 1 classes an object (``object_queries``)."""
    keep = class_probs.max(dim=1).values >= min_score
    if objects_only:
        keep &= object_queries(class_probs)
    return torch.nonzero(keep)[:, 0].tolist()


def link_size_of(segment: SegmentPrediction) -> Size:
    """(h, w) at which clips are linked: the mask-feature size of the unpadded image."""
    stride_h = segment.padded_size[0] / segment.mask_size[0]
    stride_w = segment.padded_size[1] / segment.mask_size[1]
    return (
        max(1, round(segment.image_size[0] / stride_h)),
        max(1, round(segment.image_size[1] / stride_w)),
    )


@dataclass
class OpenClip:
    """A decoded clip with frames not finished yet.

    logits: (Q, L, h, w) mask logits of its kept queries; tracks: (Q,) track of each.
    """

    segment: SegmentPrediction
    logits: torch.Tensor
    tracks: List[int]


# track -> its members covering one frame, in clip order: (clip, (1, 1, h, w) logits)
FrameMembers = Dict[int, List[Tuple[SegmentPrediction, torch.Tensor]]]


def members_at(open_clips: Sequence[OpenClip], frame: int) -> FrameMembers:
    """The tracks' mask logits on ``frame`` in the open clips covering it."""
    members: FrameMembers = {}
    for clip in open_clips:
        segment = clip.segment
        if segment.frame_offset <= frame < segment.frame_end:
            f = frame - segment.frame_offset
            for row, track in enumerate(clip.tracks):
                members.setdefault(track, []).append(
                    (segment, clip.logits[row : row + 1, f : f + 1])
                )
    return members


class RenderedFrames:
    """Finished frames as RLEs at ``output_size``: a track's mask is the sigmoid of its
    clips' mean upsampled mask logits, > ``threshold`` (bounded memory: one (H0, W0) map
    at a time, and RLEs)."""

    def __init__(self, output_size: Size, threshold: float):
        self.output_size = tuple(output_size)
        self.threshold = threshold
        self.rles: List[Dict[int, dict]] = []

    def add(self, frame: int, members: FrameMembers) -> None:
        for track, pieces in members.items():
            self.rles.extend({} for _ in range(track + 1 - len(self.rles)))
            mean = ordered_mean(
                segment.upsample_logits(logits, self.output_size)[0, 0]
                for segment, logits in pieces
            )
            self.rles[track][frame] = frame_rle(mean.sigmoid(), self.output_size, self.threshold)

    def candidates(
        self, class_probs: torch.Tensor, num_frames: int, segment: SegmentPrediction
    ) -> RenderedCandidates:
        self.rles.extend({} for _ in range(len(class_probs) - len(self.rles)))
        return RenderedCandidates(
            class_probs, self.rles, num_frames, self.output_size, self.threshold
        )


class TrackLogitFrames:
    """Finished frames as each track's mean mask logits at the mask-feature size, kept for
    the whole video (TTA matches and fuses whole runs; its memory grows with the video)."""

    def __init__(self):
        self.first: Dict[int, int] = {}
        self.frames: Dict[int, List[torch.Tensor]] = {}

    def add(self, frame: int, members: FrameMembers) -> None:
        for track, pieces in members.items():
            frames = self.frames.setdefault(track, [])
            first = self.first.setdefault(track, frame)
            # A clip links only to tracks of the stored clips it overlaps: no gaps.
            if first + len(frames) != frame:
                raise RuntimeError(f"track {track} skips frames before frame {frame}")
            frames.append(ordered_mean(logits[0, 0] for _, logits in pieces))

    def candidates(
        self, class_probs: torch.Tensor, num_frames: int, segment: SegmentPrediction
    ) -> VideoCandidates:
        """One ``TrackLogits`` segment per track (one with no candidate if no track)."""
        placed = dict(
            padded_size=segment.padded_size, image_size=segment.image_size, flipped=segment.flipped
        )
        segments = [
            TrackLogits(torch.stack(self.frames[t])[None], frame_offset=self.first[t], **placed)
            for t in range(len(class_probs))
        ]
        if not segments:
            empty = segment.mask_embeds.new_zeros((0, num_frames, *segment.mask_size))
            segments = [TrackLogits(empty, frame_offset=0, **placed)]
        members = [[(t, 0)] for t in range(len(class_probs))]
        return VideoCandidates(class_probs, members, segments, num_frames)


class ClassProbMeans:
    """Each track's class probabilities averaged over its clips: a running sum and count
    per track (tracks numbered in the order they start)."""

    def __init__(self):
        self.sums: List[torch.Tensor] = []
        self.counts: List[int] = []

    def add(self, tracks: Sequence[int], class_probs: torch.Tensor) -> None:
        """``class_probs`` (Q, K) of one clip's kept queries, ``tracks`` (Q,) their tracks."""
        for row, track in enumerate(tracks):
            if track == len(self.sums):
                self.sums.append(torch.zeros_like(class_probs[row]))
                self.counts.append(0)
            self.sums[track] += class_probs[row]
            self.counts[track] += 1

    def means(self, num_classes: int) -> torch.Tensor:
        """(num_tracks, K) mean class probabilities."""
        if not self.sums:
            return torch.zeros(0, num_classes)
        return torch.stack([total / count for total, count in zip(self.sums, self.counts)])


def decode_clip(
    model, window: FeatureWindow, start: int, end: int, flipped: bool
) -> SegmentPrediction:
    """Decoder pass over the frames [start, end) of the window's video."""
    multi_scale, mask_features = window.features(start, end)
    segment = decode_segment(
        model, multi_scale, mask_features, window.sizes, 0, end - start, flipped
    )
    return dataclasses.replace(segment, frame_offset=start)


def link_clip(
    segment: SegmentPrediction, min_score: float, objects_only: bool = False
) -> Tuple[ClipLinkInput, torch.Tensor]:
    """A clip's kept queries as linking input (mask probabilities at ``link_size_of``),
    and their mask logits (Q, L, h, w)."""
    queries = kept_queries(segment.class_probs, min_score, objects_only)
    index = torch.tensor(queries, dtype=torch.long)
    logits = segment.mask_logits(index, segment.frame_offset, segment.frame_end)
    link_input = ClipLinkInput(
        segment.frame_offset,
        segment.frame_end,
        queries,
        segment.class_probs[index.to(segment.class_probs.device)].float().cpu(),
        segment.logits_to_probs(logits, link_size_of(segment)).cpu(),
    )
    return link_input, logits


def clip_candidates(
    model: VideoModel,
    frames: Sequence[torch.Tensor],
    flipped: bool = False,
    rendered_at: Optional[Tuple[Size, float]] = None,
) -> Union[RenderedCandidates, VideoCandidates]:
    """Candidates of per-clip inference: the tracks of the linked clips (none when no clip
    predicts an object), read as a stream (see the module docstring).

    Args:
        frames: T uint8 (3, H', W') frames.
        flipped: the frames were flipped horizontally (TTA).
        rendered_at: (output size (H0, W0), mask threshold): masks rendered as RLEs frame
            by frame (``RenderedCandidates``); None (TTA): the tracks' mean mask logits
            (``VideoCandidates`` of ``TrackLogits``).
    """
    options = model.inference_options
    clips = split_into_clips(len(frames), options.clip_length, options.clip_overlap)
    window = FeatureWindow.of_model(model, frames)
    tracker = ClipTracker(options.clip_min_iou)
    finished = RenderedFrames(*rendered_at) if rendered_at is not None else TrackLogitFrames()
    class_probs = ClassProbMeans()
    open_clips: List[OpenClip] = []
    done = 0  # frames [0, done) are finished
    for clip_idx, (start, end) in enumerate(clips):
        segment = decode_clip(model, window, start, end, flipped)
        link_input, logits = link_clip(segment, options.clip_min_score, options.objects_only)
        tracks = tracker.add(link_input)
        class_probs.add(tracks, link_input.class_probs)
        open_clips.append(OpenClip(segment, logits, tracks))
        next_start = clips[clip_idx + 1][0] if clip_idx + 1 < len(clips) else len(frames)
        for frame in range(done, next_start):
            finished.add(frame, members_at(open_clips, frame))
        done = next_start
        open_clips = [clip for clip in open_clips if clip.segment.frame_end > done]
        window.release_before(done)
    means = class_probs.means(segment.class_probs.shape[1])
    return finished.candidates(means, len(frames), segment)
