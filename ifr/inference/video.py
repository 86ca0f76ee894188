"""Whole-video (offline) inference: every frame in one decoder pass (the paper's default,
docs/method.md Sec. 3).

Frames go through backbone + pixel decoder ``options.frame_chunk`` at a time and their
features wait on ``options.feature_storage``; the decoder reads them once, and masks are
computed only for the top-k (query, class) pairs, a chunk of frames at a time.
"""

from typing import Dict, List, Sequence, Tuple

import torch

from ..utils.precision import to_float32
from .candidates import BoxMaskPrediction, SegmentPrediction, VideoCandidates
from .contract import VideoModel, decoder_image_sizes
from .postprocess import object_queries

# (padded_size, image_size)
Size2 = Tuple[Tuple[int, int], Tuple[int, int]]


def storage_device(model: VideoModel, feature_storage: str) -> torch.device:
    """Device where per-frame features wait: ``"cpu"`` or ``"same"`` (the model's)."""
    return torch.device("cpu") if feature_storage == "cpu" else torch.device(model.device)


def encode_video(
    model: VideoModel,
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


def encode_frames_of(
    model, frames: Sequence[torch.Tensor]
) -> Tuple[List[torch.Tensor], torch.Tensor, Size2]:
    """``encode_video`` with the model's inference options (chunk, storage, dtype)."""
    options = model.inference_options
    storage = storage_device(model, options.feature_storage)
    dtype = getattr(torch, options.feature_storage_dtype)
    return encode_video(model, frames, options.frame_chunk, storage, dtype)


def decode_segment(
    model: VideoModel,
    multi_scale: List[torch.Tensor],
    mask_features: torch.Tensor,
    sizes: Size2,
    start: int,
    end: int,
    flipped: bool = False,
) -> SegmentPrediction:
    """Decoder pass over the stored frames [start, end) of a video (views into the stored
    features, no copy); no masks are computed here.

    Args:
        multi_scale: 3 tensors (1, T, C, h_l, w_l); mask_features: (1, T, C, h, w), as
            ``encode_video`` stores them; sizes: (padded_size, image_size).
        flipped: the frames were flipped horizontally (recorded for rendering).
    """
    multi_scale = [features[:, start:end] for features in multi_scale]
    mask_features = mask_features[:, start:end]
    # The decoder in the model's precision (MODEL.PRECISION); what leaves it, float32.
    with model.autocast():
        outputs = model.transformer_decoder(
            multi_scale,
            mask_features,
            return_masks=False,
            **decoder_image_sizes(model.transformer_decoder, [sizes[1]]),
        )
    outputs = to_float32(outputs)
    prediction = dict(
        class_probs=model.class_probabilities(outputs["pred_logits"][0].float()),
        mask_embeds=outputs["pred_mask_embeds"][0].float(),
        # A decoder whose mask features depend on the clip (IFC: its mask head reads the
        # encoder's output) returns them; the others' are the pixel decoder's.
        mask_features=outputs.get("mask_features", mask_features)[0],
        padded_size=sizes[0],
        image_size=sizes[1],
        frame_offset=start,
        flipped=flipped,
    )
    if "pred_box_masks" in outputs:  # masks predicted in boxes: rendered from them
        return BoxMaskPrediction(
            **prediction,
            box_masks=outputs["pred_box_masks"][0],
            boxes=outputs["pred_boxes"][0],
        )
    return SegmentPrediction(**prediction)


def video_candidates(
    model: VideoModel, frames: Sequence[torch.Tensor], flipped: bool = False
) -> VideoCandidates:
    """Whole-video candidates: every query of one pass over all frames (with
    ``objects_only``, those whose most likely class is an object)."""
    multi_scale, mask_features, sizes = encode_frames_of(model, frames)
    segment = decode_segment(model, multi_scale, mask_features, sizes, 0, len(frames), flipped)
    if model.inference_options.objects_only:
        queries = torch.nonzero(object_queries(segment.class_probs))[:, 0].tolist()
        return VideoCandidates.from_segment(segment, queries)
    return VideoCandidates.from_segment(segment)


def output_size_of(batched_input: Dict) -> Tuple[int, int]:
    """Original (H0, W0) of a test-mapper input; falls back to the frames' size."""
    frames = batched_input["image"]
    height = batched_input.get("height", frames[0].shape[-2])
    width = batched_input.get("width", frames[0].shape[-1])
    return int(height), int(width)
