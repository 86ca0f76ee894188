"""Inference of the IFR model on one video at a time.

``run_inference(model, batched_input)`` is what ``IFR.forward`` calls in eval mode; it
dispatches on ``model.inference_options``: ``mode`` "video" (whole video, one pass) or
"clip" (per-clip + clip tracking), each optionally with test-time augmentation.
"""

from typing import Dict

from .clip_tracking import clip_candidates, inference_clips
from .memory import measure_inference_memory
from .options import InferenceOptions
from .tta import inference_tta
from .video import inference_video, video_candidates

__all__ = ["InferenceOptions", "measure_inference_memory", "run_inference"]


def run_inference(model, batched_input: Dict) -> Dict[str, object]:
    """One test-mapper input (``image``: T uint8 (3, H, W) frames, ``height``, ``width``)
    -> ``{"image_size", "pred_scores", "pred_labels", "pred_masks"}`` (docs/design.md),
    masks as T RLE dicts per instance at the original size."""
    options = model.inference_options
    if not batched_input.get("image"):
        raise ValueError(f"video {batched_input.get('video_id', '?')!r} has no frames")
    if options.mode not in ("video", "clip"):
        raise ValueError(f"MODEL.IFR.TEST.MODE must be 'video' or 'clip', got {options.mode!r}")
    if options.tta_enabled:
        candidate_fn = video_candidates if options.mode == "video" else clip_candidates
        return inference_tta(model, batched_input, candidate_fn)
    if options.mode == "video":
        return inference_video(model, batched_input)
    return inference_clips(model, batched_input)
