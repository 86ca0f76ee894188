"""``VideoPredictor``: a trained model of any of the five systems applied to one video, like
Detectron2's ``DefaultPredictor`` for images."""

from typing import Dict, Sequence

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..checkpoint import load_inference_weights
from ..data.dataset_mapper import build_clip_augmentations


class VideoPredictor:
    """Builds the model of ``cfg``, loads ``cfg.MODEL.WEIGHTS`` (when set), and runs it on
    a list of frames resized by the test mapper's own resize (``build_clip_augmentations``:
    ``INPUT.MIN_SIZE_TEST/MAX_SIZE_TEST``).

    Example::

        predictor = VideoPredictor(cfg)
        output = predictor(frames)  # frames: T BGR uint8 (H, W, 3) arrays
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        # Weights must fit the model (MODEL.WEIGHTS_ALLOW_PARTIAL opts out); without weights a
        # warning. The checkpoint's extras (class_names, class_colors) label the output.
        self.checkpoint_extras = load_inference_weights(self.model, cfg)
        self.resize = T.AugmentationList(build_clip_augmentations(cfg, is_train=False))
        self.input_format = cfg.INPUT.FORMAT  # checked by the model's InferenceOptions
        self.metadata = (
            MetadataCatalog.get(cfg.DATASETS.TEST[0]) if len(cfg.DATASETS.TEST) else None
        )

    def to_model_input(self, frames: Sequence[np.ndarray]) -> Dict:
        """BGR uint8 (H, W, 3) frames -> the test mapper's dict (``image``: T uint8
        (3, H', W') tensors in ``INPUT.FORMAT``, ``height``, ``width``, ``length``), plus
        ``original_frames`` (the frames in ``INPUT.FORMAT``, views, no copy) from which
        test-time augmentation resizes its runs."""
        if len(frames) == 0:
            raise ValueError("VideoPredictor needs at least one frame")
        height, width = frames[0].shape[:2]
        transform = self.resize(T.AugInput(np.ascontiguousarray(frames[0])))
        images, originals = [], []
        for frame in frames:
            if frame.shape[:2] != (height, width):
                raise ValueError(f"frames differ in size: {frame.shape[:2]} vs {(height, width)}")
            if self.input_format == "RGB":
                frame = frame[:, :, ::-1]
            originals.append(frame)
            resized = transform.apply_image(np.ascontiguousarray(frame))
            images.append(torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))))
        return {
            "image": images,
            "original_frames": originals,
            "height": height,
            "width": width,
            "length": len(frames),
            "video_id": 0,
        }

    @torch.no_grad()
    def __call__(self, frames: Sequence[np.ndarray]) -> Dict[str, object]:
        """Returns the per-video output dict: ``image_size``, ``pred_scores``,
        ``pred_labels``, ``pred_masks`` (per instance, T RLE dicts at the original size)."""
        return self.model([self.to_model_input(frames)])[0]
