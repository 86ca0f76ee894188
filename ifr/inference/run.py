"""``run_inference``: one video through the model, in the mode of its inference options."""

from typing import Dict

import torch

from .candidates import candidates_to_output
from .clip_tracking import clip_candidates
from .contract import VideoModel, check_video_model
from .tta import tta_candidates
from .video import output_size_of, video_candidates


@torch.no_grad()
def run_inference(model: VideoModel, batched_input: Dict) -> Dict[str, object]:
    """One test-mapper input (``image``: T uint8 (3, H, W) frames, ``height``, ``width``)
    -> ``{"image_size", "pred_scores", "pred_labels", "pred_masks"}`` (docs/design.md),
    masks as T RLE dicts per instance at the original size."""
    check_video_model(model)
    options = model.inference_options
    if not batched_input.get("image"):
        raise ValueError(f"video {batched_input.get('video_id', '?')!r} has no frames")
    candidate_fn = video_candidates if options.mode == "video" else clip_candidates
    output_size = output_size_of(batched_input)
    if options.tta_enabled:
        candidates = tta_candidates(model, batched_input, candidate_fn)
    elif options.mode == "clip":
        # Per-clip inference renders each frame's masks as soon as no later clip covers it.
        rendered_at = (output_size, options.mask_threshold)
        candidates = clip_candidates(model, batched_input["image"], rendered_at=rendered_at)
    else:
        candidates = video_candidates(model, batched_input["image"])
    return candidates_to_output(
        candidates,
        options.top_k,
        output_size,
        options.frame_chunk,
        options.mask_threshold,
        drop_empty=options.drop_empty,
        score_threshold=options.score_threshold,
    )
