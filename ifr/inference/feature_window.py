"""The encoded frames that per-clip inference still needs, and no others.

Frames go through backbone + pixel decoder ``FRAME_CHUNK`` at a time, in the chunks
``encode_video`` uses (so each frame's features are the same bits as there), when a clip
first reads them, and a chunk is dropped once no later clip reads its frames. With
clips of T frames, the features held are those of at most T + FRAME_CHUNK frames,
whatever the video's length.
"""

from typing import Dict, List, Sequence, Tuple

import torch

from .video import Size2, encode_video, storage_device


class FeatureWindow:
    """Per-frame features of the frames of a video still to be read, encoded on demand.

    Args:
        frames: T uint8 (3, H', W') frames, all of the same size.
        frame_chunk: frames per encoder pass; storage, storage_dtype: where and in which
            dtype the features wait (as ``encode_video``).
    """

    def __init__(
        self,
        model,
        frames: Sequence[torch.Tensor],
        frame_chunk: int,
        storage: torch.device,
        storage_dtype: torch.dtype = torch.float32,
    ):
        self.model = model
        self.frames = frames
        self.frame_chunk = frame_chunk
        self.storage = storage
        self.storage_dtype = storage_dtype
        # chunk start -> (multi-scale features and mask features, each (1, n, C, h, w))
        self._chunks: Dict[int, List[torch.Tensor]] = {}
        self.sizes: Size2 = None
        self.released = 0  # frames before this one are dropped

    @classmethod
    def of_model(cls, model, frames: Sequence[torch.Tensor]) -> "FeatureWindow":
        """A window with the model's inference options (chunk, storage, dtype)."""
        options = model.inference_options
        storage = storage_device(model, options.feature_storage)
        dtype = getattr(torch, options.feature_storage_dtype)
        return cls(model, frames, options.frame_chunk, storage, dtype)

    @property
    def held_frames(self) -> int:
        """Frames whose features are held now."""
        return sum(chunk[-1].shape[1] for chunk in self._chunks.values())

    def features(self, start: int, end: int) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Features of the frames [start, end), encoding the chunks not encoded yet.

        Returns:
            multi_scale: 3 tensors (1, end - start, C, h_l, w_l); mask_features:
            (1, end - start, C, h, w); new tensors on the storage device.
        """
        if start < self.released or end > len(self.frames) or start >= end:
            raise ValueError(
                f"frames [{start}, {end}) not readable: frames before {self.released} were "
                f"released, the video has {len(self.frames)}"
            )
        pieces = []
        first_chunk = start - start % self.frame_chunk
        for chunk_start in range(first_chunk, end, self.frame_chunk):
            chunk = self._encoded(chunk_start)
            first = max(start, chunk_start) - chunk_start
            last = min(end, chunk_start + self.frame_chunk) - chunk_start
            pieces.append([f[:, first:last] for f in chunk])
        stacked = [torch.cat(level, dim=1) for level in zip(*pieces)]
        return stacked[:-1], stacked[-1]

    def release_before(self, frame: int) -> None:
        """Drop the chunks whose frames all precede ``frame`` (no later clip reads them)."""
        self.released = max(self.released, frame)
        for chunk_start in [s for s in self._chunks if s + self.frame_chunk <= frame]:
            del self._chunks[chunk_start]

    def _encoded(self, chunk_start: int) -> List[torch.Tensor]:
        if chunk_start not in self._chunks:
            frames = self.frames[chunk_start : chunk_start + self.frame_chunk]
            multi_scale, mask_features, self.sizes = encode_video(
                self.model, frames, self.frame_chunk, self.storage, self.storage_dtype
            )
            self._chunks[chunk_start] = [*multi_scale, mask_features]
        return self._chunks[chunk_start]
