"""Test-time settings of the IFR model (``cfg.MODEL.IFR.TEST``), as one plain object."""

from dataclasses import dataclass, field
from typing import List


@dataclass
class InferenceOptions:
    top_k: int = 10  # (query, class) pairs kept per video
    mode: str = "video"  # "video": whole video in one pass; "clip": per-clip + tracking
    clip_length: int = 5  # T of per-clip inference (appendix A.1)
    clip_overlap: int = 1  # frames shared by consecutive clips
    clip_min_iou: float = 0.1  # least soft mask IoU on shared frames to link two clips' queries
    frame_chunk: int = 16  # frames per chunk through backbone/pixel decoder/upsampling
    feature_storage: str = "same"  # "same" (model's device) or "cpu"
    feature_storage_dtype: str = "float32"  # or "float16": half the stored features' memory
    mask_threshold: float = 0.5
    tta_enabled: bool = False
    tta_min_sizes: List[int] = field(default_factory=lambda: [360, 480, 600, 720])
    tta_flip: bool = False
    tta_pivot: int = 0

    @classmethod
    def from_config(cls, cfg) -> "InferenceOptions":
        test = cfg.MODEL.IFR.TEST
        if test.MODE not in ("video", "clip"):
            raise ValueError(f"MODEL.IFR.TEST.MODE must be 'video' or 'clip', got {test.MODE!r}")
        if test.CLIP_OVERLAP >= test.CLIP_LENGTH:
            raise ValueError(
                "MODEL.IFR.TEST.CLIP_OVERLAP must be smaller than CLIP_LENGTH, got "
                f"{test.CLIP_OVERLAP} >= {test.CLIP_LENGTH}"
            )
        if test.FEATURE_STORAGE not in ("same", "cpu"):
            raise ValueError(
                "MODEL.IFR.TEST.FEATURE_STORAGE must be 'same' or 'cpu', "
                f"got {test.FEATURE_STORAGE!r}"
            )
        if test.FEATURE_STORAGE_DTYPE not in ("float32", "float16"):
            raise ValueError(
                "MODEL.IFR.TEST.FEATURE_STORAGE_DTYPE must be 'float32' or 'float16', "
                f"got {test.FEATURE_STORAGE_DTYPE!r}"
            )
        for key in ("TOP_K", "FRAME_CHUNK", "CLIP_LENGTH"):
            if test[key] < 1:
                raise ValueError(f"MODEL.IFR.TEST.{key} must be >= 1, got {test[key]}")
        if not 0.0 <= test.CLIP_MIN_IOU <= 1.0:
            raise ValueError(
                f"MODEL.IFR.TEST.CLIP_MIN_IOU must be in [0, 1], got {test.CLIP_MIN_IOU}"
            )
        if test.TTA.ENABLED and not 0 <= test.TTA.PIVOT < len(test.TTA.MIN_SIZES):
            raise ValueError(
                f"MODEL.IFR.TEST.TTA.PIVOT={test.TTA.PIVOT} is not an index into "
                f"MODEL.IFR.TEST.TTA.MIN_SIZES {list(test.TTA.MIN_SIZES)}"
            )
        return cls(
            top_k=test.TOP_K,
            mode=test.MODE,
            clip_length=test.CLIP_LENGTH,
            clip_overlap=test.CLIP_OVERLAP,
            clip_min_iou=test.CLIP_MIN_IOU,
            frame_chunk=test.FRAME_CHUNK,
            feature_storage=test.FEATURE_STORAGE,
            feature_storage_dtype=test.FEATURE_STORAGE_DTYPE,
            mask_threshold=test.MASK_THRESHOLD,
            tta_enabled=test.TTA.ENABLED,
            tta_min_sizes=list(test.TTA.MIN_SIZES),
            tta_flip=test.TTA.FLIP,
            tta_pivot=test.TTA.PIVOT,
        )
