"""Instance candidates of a video, shared by every inference mode.

A ``SegmentPrediction`` is the decoder's raw output on consecutive frames (the whole
video, one clip, or one TTA resolution); a ``TrackLogits`` holds per-clip inference's
tracks' mean mask logits (under TTA). A ``VideoCandidates`` is a set of instance
candidates over the whole video; each candidate has class probabilities and *members*,
(segment, query) pairs whose mask probabilities are averaged where they cover a frame:
- whole video: one segment, candidate q = query q;
- per-clip tracking under TTA: candidate t = track t of a ``TrackLogits``;
- TTA: a fused candidate = the matched candidates of every resolution.
Per-clip inference without TTA renders its tracks' masks while it reads the video
(``clip_tracking.py``) and hands over ``RenderedCandidates``, masks already as RLEs.
Masks are rendered only for the candidates asked for: mask logits at the mask-feature
size a chunk of frames at a time, then upsampled, thresholded and encoded one frame and
one candidate at a time, so peak memory holds a few (H0, W0) maps whatever the number of
frames and candidates (a 4000x3000 video does not need k x chunk x 48 MB).
"""

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch

from ..layers.box_masks import paste_mask_probs
from ..utils.rle import mask_to_rle, rle_areas
from .postprocess import Size, compute_mask_logits, select_topk_probs, upsample_mask_logits

# (segment index, query index)
Member = Tuple[int, int]


@dataclass(kw_only=True)
class MaskSource:
    """What renders mask logits at the mask-feature size at an output size: a
    ``SegmentPrediction`` (decoder output) or a ``TrackLogits`` (a track's mean logits).
    A subclass adds its tensors, ``num_frames`` and ``mask_logits(query_idx, start, end)``.

    Where the source lies, given by keyword: ``padded_size`` (H, W) of the padded input,
    ``image_size`` the resized size before padding, ``frame_offset`` its first frame in the
    video, ``flipped`` the input was flipped horizontally (masks are flipped back when
    rendered).
    """

    padded_size: Size
    image_size: Size
    frame_offset: int = 0
    flipped: bool = False

    @property
    def frame_end(self) -> int:
        return self.frame_offset + self.num_frames

    def _local_frames(self, start: int, end: int) -> slice:
        """Frames [start, end) of the video as a slice of this source's frames."""
        if start < self.frame_offset or end > self.frame_end:
            raise ValueError(
                f"frames [{start}, {end}) outside segment [{self.frame_offset}, {self.frame_end})"
            )
        return slice(start - self.frame_offset, end - self.frame_offset)

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
        video frames [start, end), which must lie inside this source."""
        return self.logits_to_probs(self.mask_logits(query_idx, start, end), output_size)

    def render_chunk(self, query_idx: torch.Tensor, start: int, end: int):
        """What ``chunk_probs`` renders the frames [start, end) of queries ``query_idx``
        from: their mask logits (k, end - start, h, w)."""
        return self.mask_logits(query_idx, start, end)

    def chunk_probs(self, chunk, row: int, frame: int, output_size: Size) -> torch.Tensor:
        """(H0, W0) mask probabilities of row ``row`` and frame ``frame`` of a
        ``render_chunk`` result."""
        return self.logits_to_probs(chunk[row : row + 1, frame : frame + 1], output_size)[0, 0]


@dataclass
class SegmentPrediction(MaskSource):
    """Decoder output on the frames ``[frame_offset, frame_offset + T)`` of a video.

    class_probs: (N, K) sigmoid class probabilities of the clip-level queries.
    mask_embeds: (N, T, C) per-frame mask embeddings, on the compute device.
    mask_features: (T, C, h, w) per-frame mask features, on any device (e.g. CPU).
    padded_size, image_size, frame_offset, flipped: keywords, see ``MaskSource``.
    """

    class_probs: torch.Tensor
    mask_embeds: torch.Tensor
    mask_features: torch.Tensor

    @property
    def num_frames(self) -> int:
        return self.mask_embeds.shape[1]

    @property
    def device(self) -> torch.device:
        return self.mask_embeds.device

    @property
    def mask_size(self) -> Size:
        """(h, w) of the mask features (the padded input's)."""
        return tuple(self.mask_features.shape[-2:])

    def mask_logits(self, query_idx: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Mask logits (k, end - start, h, w) at the mask-feature size of queries
        ``query_idx`` (k,) on the video frames [start, end), inside this segment."""
        local = self._local_frames(start, end)
        embeds = self.mask_embeds[query_idx.to(self.mask_embeds.device), local]
        return compute_mask_logits(embeds, self.mask_features[local])


@dataclass
class BoxMaskPrediction(SegmentPrediction):
    """A ``SegmentPrediction`` whose masks are predicted inside boxes (TeViT): its mask
    embeddings and features (the box masks pasted into the stride-4 grid) serve tracking
    and TTA; the final masks are pasted from the box masks directly at the output size,
    as mmdetection's ``get_seg_masks``.

    box_masks: (N, T, S, S) mask logits inside the boxes; boxes: (N, T, 4) xyxy / the
    image size (w, h, w, h), so that times the output size they are output pixels.
    """

    box_masks: torch.Tensor
    boxes: torch.Tensor

    def render_chunk(self, query_idx: torch.Tensor, start: int, end: int):
        """(box mask logits (k, t, S, S), boxes (k, t, 4)) of the queries on [start, end)."""
        local = self._local_frames(start, end)
        query_idx = query_idx.to(self.box_masks.device)
        return self.box_masks[query_idx, local], self.boxes[query_idx, local]

    def chunk_probs(self, chunk, row: int, frame: int, output_size: Size) -> torch.Tensor:
        masks, boxes = chunk
        return self._paste(masks[row, frame][None], boxes[row, frame][None], output_size)[0]

    def mask_probs(
        self, query_idx: torch.Tensor, start: int, end: int, output_size: Size
    ) -> torch.Tensor:
        masks, boxes = self.render_chunk(query_idx, start, end)
        probs = self._paste(masks.flatten(0, 1), boxes.flatten(0, 1), output_size)
        return probs.view(*masks.shape[:2], *probs.shape[-2:])

    def _paste(self, masks: torch.Tensor, boxes: torch.Tensor, output_size: Size) -> torch.Tensor:
        """(R, S, S) logits in (R, 4) normalised boxes -> (R, H0, W0) probabilities, flipped
        back if the input was flipped."""
        height, width = output_size
        pixels = boxes * boxes.new_tensor([width, height, width, height])
        probs = paste_mask_probs(masks, pixels, tuple(output_size), 1.0)
        return probs.flip(-1) if self.flipped else probs


@dataclass
class TrackLogits(MaskSource):
    """Stored mask logits of candidates on the frames ``[frame_offset, frame_offset + F)``:
    per-clip inference's tracks, their clips' mean logits, for TTA to match and fuse.

    logits: (k, F, h, w) at the mask-feature size (of the padded input).
    padded_size, image_size, frame_offset, flipped: keywords, see ``MaskSource``.
    """

    logits: torch.Tensor

    @property
    def num_frames(self) -> int:
        return self.logits.shape[1]

    @property
    def device(self) -> torch.device:
        return self.logits.device

    @property
    def mask_size(self) -> Size:
        return tuple(self.logits.shape[-2:])

    def mask_logits(self, query_idx: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Stored logits (k, end - start, h, w) of candidates ``query_idx`` (k,)."""
        return self.logits[query_idx.to(self.logits.device), self._local_frames(start, end)]


@dataclass
class VideoCandidates:
    """Instance candidates of a video of ``num_frames`` frames.

    class_probs: (Q, K) class probabilities of the candidates.
    members: Q lists of (segment index, query index); a candidate's mask at a frame is
        the mean of its members' mask probabilities over the members covering the frame
        (zero where none does).
    segments: the mask sources the members refer to (decoder outputs, or per-clip
        inference's tracks).
    """

    class_probs: torch.Tensor
    members: List[List[Member]]
    segments: List[MaskSource]
    num_frames: int

    def __post_init__(self):
        if len(self.members) != self.class_probs.shape[0]:
            raise ValueError(
                f"{len(self.members)} member lists for {self.class_probs.shape[0]} candidates"
            )

    @classmethod
    def from_segment(
        cls, segment: SegmentPrediction, queries: Optional[Sequence[int]] = None
    ) -> "VideoCandidates":
        """The queries ``queries`` (default every one) of one segment covering the whole
        video are the candidates."""
        if queries is None:
            queries = range(segment.class_probs.shape[0])
        queries = list(queries)
        members = [[(0, q)] for q in queries]
        class_probs = segment.class_probs[torch.as_tensor(queries, dtype=torch.long)]
        return cls(class_probs, members, [segment], segment.num_frames)

    def mask_probs(
        self, candidate_idx: Sequence[int], start: int, end: int, output_size: Size
    ) -> torch.Tensor:
        """Mask probabilities (k, end - start, H0, W0) of the given candidates on frames
        [start, end): mean over the members covering each frame."""
        device = self.segments[0].device
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
            probs = segment.mask_probs(torch.tensor(queries), seg_start, seg_end, output_size)
            rows_t = torch.tensor(rows, device=device)
            total[rows_t, seg_start - start : seg_end - start] += probs.to(device)
            count[rows_t, seg_start - start : seg_end - start] += 1
        return total / count.clamp(min=1)[:, :, None, None]

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
                    instance_rles.append(frame_rle(probs, output_size, threshold))
        return rles

    def _chunk_logits(
        self, candidate_idx: Sequence[int], start: int, end: int
    ) -> List[Tuple[MaskSource, Dict[int, int], object, int, int]]:
        """Per segment overlapping frames [start, end): (segment, candidate row -> row of
        the chunk, what the segment renders its member queries from (``render_chunk``:
        mask logits (r, f, h, w), or box masks and boxes), first frame, end)."""
        pieces = []
        for seg_idx, segment in enumerate(self.segments):
            seg_start, seg_end = max(start, segment.frame_offset), min(end, segment.frame_end)
            if seg_start >= seg_end:
                continue
            rows, queries = self._members_in_segment(candidate_idx, seg_idx)
            if rows:
                chunk = segment.render_chunk(torch.tensor(queries), seg_start, seg_end)
                position = {row: i for i, row in enumerate(rows)}
                pieces.append((segment, position, chunk, seg_start, seg_end))
        return pieces

    def _frame_probs(
        self, pieces, row: int, frame: int, output_size: Size
    ) -> Optional[torch.Tensor]:
        """(H0, W0) mask probabilities of candidate row ``row`` at ``frame``: the mean over
        its members covering the frame, None where none does."""
        maps = []
        for segment, position, chunk, seg_start, seg_end in pieces:
            if row in position and seg_start <= frame < seg_end:
                i, f = position[row], frame - seg_start
                maps.append(segment.chunk_probs(chunk, i, f, output_size))
        return ordered_mean(maps)

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


def ordered_mean(maps: Iterable[torch.Tensor]) -> Optional[torch.Tensor]:
    """Mean of (H0, W0) maps, summed in the order given (so the same maps give the same
    bits); None for no map."""
    total, count = None, 0
    for values in maps:
        total = values if total is None else total + values.to(total.device)
        count += 1
    return None if total is None else total / count


def frame_rle(probs: Optional[torch.Tensor], output_size: Size, threshold: float) -> dict:
    """RLE of one frame's binary mask ``probs > threshold`` ((H0, W0) mask
    probabilities); an empty mask for None (no member covers the frame)."""
    if probs is None:
        mask = torch.zeros(tuple(output_size), dtype=torch.bool)
    else:
        mask = (probs > threshold).cpu()
    return mask_to_rle(mask.numpy())


@dataclass
class RenderedCandidates:
    """Candidates whose masks were rendered while the video was read (per-clip inference
    renders a frame as soon as no later clip covers it).

    class_probs: (Q, K) class probabilities of the candidates.
    rles: Q dicts, video frame -> RLE at ``output_size`` (binary mask: probability >
        ``threshold``), holding the frames the candidate covers; empty masks elsewhere.
    """

    class_probs: torch.Tensor
    rles: List[Dict[int, dict]]
    num_frames: int
    output_size: Size
    threshold: float

    def render_rles(
        self, candidate_idx: Sequence[int], output_size: Size, chunk: int, threshold: float
    ) -> List[List[dict]]:
        """``len(candidate_idx)`` lists of T RLE dicts, as ``VideoCandidates.render_rles``
        (``chunk`` is not used: the masks exist already). The stored dicts are handed over,
        not copied (the result is as large as they are); a repeated candidate gets copies."""
        if (tuple(output_size), threshold) != (tuple(self.output_size), self.threshold):
            raise ValueError(
                f"masks were rendered at size {tuple(self.output_size)}, threshold "
                f"{self.threshold}; asked for {tuple(output_size)}, {threshold}"
            )
        empty = frame_rle(None, output_size, threshold)
        rendered, handed_over = [], set()
        for c in candidate_idx:
            rles = [self.rles[c].get(frame, empty) for frame in range(self.num_frames)]
            if c in handed_over:
                rles = [dict(rle) for rle in rles]
            rendered.append([dict(rle) if rle is empty else rle for rle in rles])
            handed_over.add(c)
        return rendered


def candidates_to_output(
    candidates: Union[VideoCandidates, RenderedCandidates],
    top_k: int,
    output_size: Size,
    chunk: int,
    threshold: float,
    drop_empty: bool = False,
    score_threshold: float = 0.0,
) -> Dict[str, object]:
    """Top-k (candidate, class) pairs and their RLE masks at ``output_size``: the model's
    per-video output of docs/design.md (``pred_masks``: per instance, T RLE dicts); with
    ``drop_empty``, pairs whose mask is empty in every frame are left out; with
    ``score_threshold`` > 0, pairs of probability at most it (``select_topk_probs``)."""
    scores, labels, cand_idx = select_topk_probs(candidates.class_probs, top_k, score_threshold)
    rles = candidates.render_rles(cand_idx.tolist(), output_size, chunk, threshold)
    if drop_empty:
        kept = [i for i, masks in enumerate(rles) if rle_areas(masks).any()]
        scores, labels = scores[kept], labels[kept]
        rles = [rles[i] for i in kept]
    return {
        "image_size": tuple(output_size),
        "pred_scores": scores.tolist(),
        "pred_labels": labels.tolist(),
        "pred_masks": rles,
    }
