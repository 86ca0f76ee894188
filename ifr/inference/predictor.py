"""``VideoPredictor``: a trained IFR model applied to one video, like Detectron2's
``DefaultPredictor`` for images."""

from typing import Dict, Sequence

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..checkpoint import IFRCheckpointer


class VideoPredictor:
    """Builds the model of ``cfg``, loads ``cfg.MODEL.WEIGHTS`` (when set), and runs it on
    a list of frames resized like the test mapper (``INPUT.MIN_SIZE_TEST/MAX_SIZE_TEST``).

    Example::

        predictor = VideoPredictor(cfg)
        output = predictor(frames)  # frames: T BGR uint8 (H, W, 3) arrays
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        if cfg.MODEL.WEIGHTS:
            self._load_weights(cfg)
        self.resize = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {cfg.INPUT.FORMAT!r}")
        self.input_format = cfg.INPUT.FORMAT
        self.metadata = (
            MetadataCatalog.get(cfg.DATASETS.TEST[0]) if len(cfg.DATASETS.TEST) else None
        )

    def _load_weights(self, cfg) -> None:
        IFRCheckpointer(self.model, allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE).load(
            cfg.MODEL.WEIGHTS
        )

    def to_model_input(self, frames: Sequence[np.ndarray]) -> Dict:
        """BGR uint8 (H, W, 3) frames -> the test mapper's dict (``image``: T uint8
        (3, H', W') tensors in ``INPUT.FORMAT``, ``height``, ``width``, ``length``)."""
        if len(frames) == 0:
            raise ValueError("VideoPredictor needs at least one frame")
        height, width = frames[0].shape[:2]
        transform = self.resize.get_transform(frames[0])
        images = []
        for frame in frames:
            if frame.shape[:2] != (height, width):
                raise ValueError(f"frames differ in size: {frame.shape[:2]} vs {(height, width)}")
            if self.input_format == "RGB":
                frame = frame[:, :, ::-1]
            resized = transform.apply_image(np.ascontiguousarray(frame))
            images.append(torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))))
        return {
            "image": images,
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
