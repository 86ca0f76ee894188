"""Whole-video (offline) inference: every frame in one decoder pass (the paper's default,
docs/method.md Sec. 3).

Frames go through backbone + pixel decoder ``options.frame_chunk`` at a time and their
features wait on ``options.feature_storage``; the decoder reads them once, and masks are
computed only for the top-k (query, class) pairs, a chunk of frames at a time.
"""

from typing import Dict, List, Sequence, Tuple

import torch

from .candidates import SegmentPrediction, VideoCandidates

# (padded_size, image_size)
Size2 = Tuple[Tuple[int, int], Tuple[int, int]]


def storage_device(model, feature_storage: str) -> torch.device:
    """Device where per-frame features wait: ``"cpu"`` or ``"same"`` (the model's)."""
    return torch.device("cpu") if feature_storage == "cpu" else torch.device(model.device)


def encode_video(
    model,
    frames: Sequence[torch.Tensor],
    frame_chunk: int,
    storage: torch.device,
    storage_dtype: torch.dtype = torch.float32,
) -> Tuple[List[torch.Tensor], torch.Tensor, Size2]:
    """Backbone + pixel decoder on ``frame_chunk`` frames at a time, each chunk's features
    written into tensors preallocated on ``storage`` (no concatenation, so the stored
    features are never held twice).

    Args:
        frames: T uint8 (3, H', W') frames, all of the same size.
    Returns:
        multi_scale_features: 3 tensors (1, T, C, h_l, w_l) on ``storage``;
        mask_features: (1, T, C, h, w) on ``storage``;
        (padded_size, image_size) of the frames.
    """
    num_frames = len(frames)
    stored = None
    for start in range(0, num_frames, frame_chunk):
        images = model.preprocess_frames(list(frames[start : start + frame_chunk]))
        multi_scale, mask_features = model.encode_frames(images)
        chunk = [*multi_scale, mask_features]
        if stored is None:
            stored = [
                torch.empty((1, num_frames, *f.shape[2:]), dtype=storage_dtype, device=storage)
                for f in chunk
            ]
        for target, features in zip(stored, chunk):
            target[:, start : start + features.shape[1]] = features.to(storage, storage_dtype)
    sizes = (tuple(images.tensor.shape[-2:]), tuple(images.image_sizes[0]))
    return stored[:-1], stored[-1], sizes


def predict_segment(
    model, frames: Sequence[torch.Tensor], frame_offset: int = 0, flipped: bool = False
) -> SegmentPrediction:
    """Encode and decode consecutive frames; no masks are computed here.

    Args:
        frames: T uint8 (3, H', W') frames (already resized, not normalised).
        frame_offset: index in the video of ``frames[0]``.
        flipped: the frames were flipped horizontally (recorded for rendering).
    """
    options = model.inference_options
    storage = storage_device(model, options.feature_storage)
    multi_scale, mask_features, (padded_size, image_size) = encode_video(
        model, frames, options.frame_chunk, storage, getattr(torch, options.feature_storage_dtype)
    )
    outputs = model.transformer_decoder(multi_scale, mask_features, return_masks=False)
    return SegmentPrediction(
        class_probs=model.class_probabilities(outputs["pred_logits"][0].float()),
        mask_embeds=outputs["pred_mask_embeds"][0].float(),
        mask_features=mask_features[0],
        padded_size=padded_size,
        image_size=image_size,
        frame_offset=frame_offset,
        flipped=flipped,
    )


def video_candidates(
    model, frames: Sequence[torch.Tensor], flipped: bool = False
) -> VideoCandidates:
    """Whole-video candidates: every query of one pass over all frames."""
    return VideoCandidates.from_segment(predict_segment(model, frames, flipped=flipped))


def output_size_of(batched_input: Dict) -> Tuple[int, int]:
    """Original (H0, W0) of a test-mapper input; falls back to the frames' size."""
    frames = batched_input["image"]
    height = batched_input.get("height", frames[0].shape[-2])
    width = batched_input.get("width", frames[0].shape[-1])
    return int(height), int(width)
