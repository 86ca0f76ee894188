"""Inference of any of the five systems' models on one video at a time.

``run_inference(model, batched_input)`` is what every meta-architecture's ``forward``
calls in eval mode; the model meets ``contract.VideoModel``. It
dispatches on ``model.inference_options``: ``mode`` "video" (whole video, one pass) or
"clip" (per-clip + clip tracking), each optionally with test-time augmentation.
"""

from .memory import measure_inference_memory
from .options import InferenceOptions
from .run import run_inference

__all__ = ["InferenceOptions", "measure_inference_memory", "run_inference"]
