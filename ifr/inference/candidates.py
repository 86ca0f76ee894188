"""Instance candidates of a video, shared by every inference mode.

A ``SegmentPrediction`` is the decoder's raw output on consecutive frames (the whole
video, one clip, or one TTA resolution). A ``VideoCandidates`` is a set of instance
candidates over the whole video; each candidate has class probabilities and *members*,
(segment, query) pairs whose mask probabilities are averaged where they cover a frame:
- whole video: one segment, candidate q = query q;
- per-clip tracking: a track = the linked queries of several clips;
- TTA: a fused candidate = the matched candidates of every resolution.
Masks are rendered only for the candidates asked for: mask logits at the mask-feature
size a chunk of frames at a time, then upsampled, thresholded and encoded one frame and
one candidate at a time, so peak memory holds a few (H0, W0) maps whatever the number of
frames and candidates (a 4000x3000 video does not need k x chunk x 48 MB).
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..utils.rle import mask_to_rle
from .postprocess import Size, compute_mask_logits, select_topk_probs, upsample_mask_logits

# (segment index, query index)
Member = Tuple[int, int]


@dataclass
class SegmentPrediction:
    """Decoder output on the frames ``[frame_offset, frame_offset + T)`` of a video.

    class_probs: (N, K) sigmoid class probabilities of the clip-level queries.
    mask_embeds: (N, T, C) per-frame mask embeddings, on the compute device.
    mask_features: (T, C, h, w) per-frame mask features, on any device (e.g. CPU).
    padded_size: (H, W) padded input size; image_size: resized size before padding.
    flipped: the input was flipped horizontally (masks are flipped back when rendered).
    """

    class_probs: torch.Tensor
    mask_embeds: torch.Tensor
    mask_features: torch.Tensor
    padded_size: Size
    image_size: Size
    frame_offset: int = 0
    flipped: bool = False

    @property
    def num_frames(self) -> int:
        return self.mask_embeds.shape[1]

    @property
    def frame_end(self) -> int:
        return self.frame_offset + self.num_frames

    def mask_logits(self, query_idx: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Mask logits (k, end - start, h, w) at the mask-feature size of queries
        ``query_idx`` (k,) on the video frames [start, end), inside this segment."""
        if start < self.frame_offset or end > self.frame_end:
            raise ValueError(
                f"frames [{start}, {end}) outside segment [{self.frame_offset}, {self.frame_end})"
            )
        local = slice(start - self.frame_offset, end - self.frame_offset)
        embeds = self.mask_embeds[query_idx.to(self.mask_embeds.device), local]
        return compute_mask_logits(embeds, self.mask_features[local])

    def upsample_logits(self, mask_logits: torch.Tensor, output_size: Size) -> torch.Tensor:
        """Mask logits (k, t, h, w) -> logits (k, t, H0, W0) at ``output_size``, flipped back
        if the input was flipped."""
        logits = upsample_mask_logits(mask_logits, self.padded_size, self.image_size, output_size)
        return logits.flip(-1) if self.flipped else logits

    def logits_to_probs(self, mask_logits: torch.Tensor, output_size: Size) -> torch.Tensor:
        """Mask logits (k, t, h, w) -> probabilities (k, t, H0, W0) at ``output_size``."""
        return self.upsample_logits(mask_logits, output_size).sigmoid()

    def mask_probs(
        self, query_idx: torch.Tensor, start: int, end: int, output_size: Size
    ) -> torch.Tensor:
        """Mask probabilities (k, end - start, H0, W0) of queries ``query_idx`` (k,) on the
        video frames [start, end), which must lie inside this segment."""
        return self.logits_to_probs(self.mask_logits(query_idx, start, end), output_size)


@dataclass
class VideoCandidates:
    """Instance candidates of a video of ``num_frames`` frames.

    class_probs: (Q, K) class probabilities of the candidates.
    members: Q lists of (segment index, query index); a candidate's mask at a frame is
        the mean of its members' mask probabilities over the members covering the frame
        (zero where none does).
    segments: the predictions the members refer to.
    mean_of: "probs" (the mean of the members' mask probabilities, as TTA) or "logits"
        (the sigmoid of the mean of their mask logits, as IFC's clip tracking).
    """

    class_probs: torch.Tensor
    members: List[List[Member]]
    segments: List[SegmentPrediction]
    num_frames: int
    mean_of: str = "probs"

    def __post_init__(self):
        if self.mean_of not in ("probs", "logits"):
            raise ValueError(f"mean_of must be 'probs' or 'logits', got {self.mean_of!r}")
        if len(self.members) != self.class_probs.shape[0]:
            raise ValueError(
                f"{len(self.members)} member lists for {self.class_probs.shape[0]} candidates"
            )

    @classmethod
    def from_segment(cls, segment: SegmentPrediction) -> "VideoCandidates":
        """Every query of one segment covering the whole video is a candidate."""
        members = [[(0, q)] for q in range(segment.class_probs.shape[0])]
        return cls(segment.class_probs, members, [segment], segment.num_frames)

    def mask_probs(
        self, candidate_idx: Sequence[int], start: int, end: int, output_size: Size
    ) -> torch.Tensor:
        """Mask probabilities (k, end - start, H0, W0) of the given candidates on frames
        [start, end): mean over the members covering each frame."""
        device = self.segments[0].mask_embeds.device
        shape = (len(candidate_idx), end - start) + tuple(output_size)
        total = torch.zeros(shape, device=device)
        count = torch.zeros(shape[:2], device=device)
        for seg_idx, segment in enumerate(self.segments):
            seg_start, seg_end = max(start, segment.frame_offset), min(end, segment.frame_end)
            if seg_start >= seg_end:
                continue
            rows, queries = self._members_in_segment(candidate_idx, seg_idx)
            if not rows:
                continue
            logits = segment.mask_logits(torch.tensor(queries), seg_start, seg_end)
            values = self._member_values(segment, logits, output_size)
            rows_t = torch.tensor(rows, device=device)
            total[rows_t, seg_start - start : seg_end - start] += values.to(device)
            count[rows_t, seg_start - start : seg_end - start] += 1
        mean = total / count.clamp(min=1)[:, :, None, None]
        if self.mean_of == "logits":
            mean = torch.where(count[:, :, None, None] > 0, mean.sigmoid(), 0.0)
        return mean

    def _member_values(
        self, segment: SegmentPrediction, logits: torch.Tensor, output_size: Size
    ) -> torch.Tensor:
        """What is averaged over members: upsampled mask probabilities or logits."""
        if self.mean_of == "logits":
            return segment.upsample_logits(logits, output_size)
        return segment.logits_to_probs(logits, output_size)

    def render_rles(
        self, candidate_idx: Sequence[int], output_size: Size, chunk: int, threshold: float
    ) -> List[List[dict]]:
        """Binary masks (mask probability > ``threshold``) of the given candidates at
        ``output_size``, as ``len(candidate_idx)`` lists of T RLE dicts.

        The same masks as thresholding ``mask_probs`` over the whole video, computed with
        bounded memory: the mask-feature-size logits of ``chunk`` frames at a time, then one
        frame of one candidate at a time upsampled, averaged over its members, thresholded
        and encoded.
        """
        rles: List[List[dict]] = [[] for _ in candidate_idx]
        for start in range(0, self.num_frames, chunk):
            end = min(start + chunk, self.num_frames)
            pieces = self._chunk_logits(candidate_idx, start, end)
            for frame in range(start, end):
                for row, instance_rles in enumerate(rles):
                    probs = self._frame_probs(pieces, row, frame, output_size)
                    if probs is None:
                        mask = torch.zeros(tuple(output_size), dtype=torch.bool)
                    else:
                        mask = (probs > threshold).cpu()
                    instance_rles.append(mask_to_rle(mask.numpy()))
        return rles

    def _chunk_logits(
        self, candidate_idx: Sequence[int], start: int, end: int
    ) -> List[Tuple[SegmentPrediction, Dict[int, int], torch.Tensor, int, int]]:
        """Per segment overlapping frames [start, end): (segment, candidate row -> row of
        the logits, mask logits (r, f, h, w) of its member queries, first frame, end)."""
        pieces = []
        for seg_idx, segment in enumerate(self.segments):
            seg_start, seg_end = max(start, segment.frame_offset), min(end, segment.frame_end)
            if seg_start >= seg_end:
                continue
            rows, queries = self._members_in_segment(candidate_idx, seg_idx)
            if rows:
                logits = segment.mask_logits(torch.tensor(queries), seg_start, seg_end)
                position = {row: i for i, row in enumerate(rows)}
                pieces.append((segment, position, logits, seg_start, seg_end))
        return pieces

    def _frame_probs(
        self, pieces, row: int, frame: int, output_size: Size
    ) -> Optional[torch.Tensor]:
        """(H0, W0) mask probabilities of candidate row ``row`` at ``frame``: the mean over
        its members covering the frame (see ``mean_of``), None where none does."""
        total, count = None, 0
        for segment, position, logits, seg_start, seg_end in pieces:
            if row not in position or not seg_start <= frame < seg_end:
                continue
            i, f = position[row], frame - seg_start
            values = self._member_values(segment, logits[i : i + 1, f : f + 1], output_size)
            total = values[0, 0] if total is None else total + values[0, 0].to(total.device)
            count += 1
        if total is None:
            return None
        mean = total / count
        return mean.sigmoid() if self.mean_of == "logits" else mean

    def _members_in_segment(
        self, candidate_idx: Sequence[int], seg_idx: int
    ) -> Tuple[List[int], List[int]]:
        # A candidate has at most one member per segment (a query joins one track; TTA
        # matching is one-to-one).
        rows, queries = [], []
        for row, cand in enumerate(candidate_idx):
            for member_seg, query in self.members[cand]:
                if member_seg == seg_idx:
                    rows.append(row)
                    queries.append(query)
        return rows, queries


def candidates_to_output(
    candidates: VideoCandidates, top_k: int, output_size: Size, chunk: int, threshold: float
) -> Dict[str, object]:
    """Top-k (candidate, class) pairs and their RLE masks at ``output_size``: the model's
    per-video output of docs/design.md (``pred_masks``: per instance, T RLE dicts)."""
    scores, labels, cand_idx = select_topk_probs(candidates.class_probs, top_k)
    rles = candidates.render_rles(cand_idx.tolist(), output_size, chunk, threshold)
    return {
        "image_size": tuple(output_size),
        "pred_scores": scores.tolist(),
        "pred_labels": labels.tolist(),
        "pred_masks": rles,
    }
