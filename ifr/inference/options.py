"""Test-time settings of every system (``cfg.MODEL.VIS.TEST``), as one plain object.

The defaults live in ``ifr/config.py`` only; every value is checked once, here, when the
object is made (``__post_init__``), with an error naming the config key."""

from dataclasses import dataclass
from typing import List


@dataclass
class InferenceOptions:
    """What ``run_inference`` reads; field -> key: ``top_k`` -> ``MODEL.VIS.TEST.TOP_K``,
    ``tta_min_sizes`` -> ``MODEL.VIS.TEST.TTA.MIN_SIZES``, ..., ``max_size_test`` ->
    ``INPUT.MAX_SIZE_TEST``, ``input_format`` -> ``INPUT.FORMAT`` (see ifr/config.py)."""

    top_k: int
    mode: str
    clip_length: int
    clip_overlap: int
    clip_min_iou: float
    clip_min_score: float
    frame_chunk: int
    feature_storage: str
    feature_storage_dtype: str
    mask_threshold: float
    tta_enabled: bool
    tta_min_sizes: List[int]
    tta_flip: bool
    tta_pivot: int
    max_size_test: int
    input_format: str
    drop_empty: bool = False
    objects_only: bool = False
    score_threshold: float = 0.0

    def __post_init__(self) -> None:
        _one_of("MODEL.VIS.TEST.MODE", self.mode, ("video", "clip"))
        _one_of("MODEL.VIS.TEST.FEATURE_STORAGE", self.feature_storage, ("same", "cpu"))
        _one_of(
            "MODEL.VIS.TEST.FEATURE_STORAGE_DTYPE",
            self.feature_storage_dtype,
            ("float32", "float16"),
        )
        _one_of("INPUT.FORMAT", self.input_format, ("RGB", "BGR"))
        if self.top_k < 0:
            raise ValueError(f"MODEL.VIS.TEST.TOP_K must be >= 0 (0: no cap), got {self.top_k}")
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(
                f"MODEL.VIS.TEST.SCORE_THRESHOLD must be in [0, 1), got {self.score_threshold}"
            )
        for key, value in (
            ("FRAME_CHUNK", self.frame_chunk),
            ("CLIP_LENGTH", self.clip_length),
        ):
            if value < 1:
                raise ValueError(f"MODEL.VIS.TEST.{key} must be >= 1, got {value}")
        if not 0 <= self.clip_overlap < self.clip_length:
            raise ValueError(
                "MODEL.VIS.TEST.CLIP_OVERLAP must be in [0, CLIP_LENGTH), got "
                f"{self.clip_overlap} with CLIP_LENGTH {self.clip_length}"
            )
        if not 0.0 <= self.clip_min_iou <= 1.0:
            raise ValueError(
                f"MODEL.VIS.TEST.CLIP_MIN_IOU must be in [0, 1], got {self.clip_min_iou}"
            )
        if not 0.0 <= self.clip_min_score <= 1.0:
            raise ValueError(
                f"MODEL.VIS.TEST.CLIP_MIN_SCORE must be in [0, 1], got {self.clip_min_score}"
            )
        if not 0.0 <= self.mask_threshold < 1.0:
            raise ValueError(
                f"MODEL.VIS.TEST.MASK_THRESHOLD must be in [0, 1), got {self.mask_threshold}"
            )
        if not self.tta_min_sizes or min(self.tta_min_sizes) < 1:
            raise ValueError(
                f"MODEL.VIS.TEST.TTA.MIN_SIZES must be positive sizes, got {self.tta_min_sizes}"
            )
        if not 0 <= self.tta_pivot < len(self.tta_min_sizes):
            raise ValueError(
                f"MODEL.VIS.TEST.TTA.PIVOT={self.tta_pivot} is not an index into "
                f"MODEL.VIS.TEST.TTA.MIN_SIZES {list(self.tta_min_sizes)}"
            )
        if self.max_size_test < 1:
            raise ValueError(f"INPUT.MAX_SIZE_TEST must be >= 1, got {self.max_size_test}")

    @classmethod
    def from_config(cls, cfg) -> "InferenceOptions":
        if cfg.TEST.AUG.ENABLED:
            raise ValueError(
                "TEST.AUG.ENABLED (Detectron2's image test-time augmentation) is not used by "
                "video models: set MODEL.VIS.TEST.TTA.ENABLED True, with "
                "MODEL.VIS.TEST.TTA.MIN_SIZES, TTA.FLIP and TTA.PIVOT, instead"
            )
        test = cfg.MODEL.VIS.TEST
        return cls(
            top_k=test.TOP_K,
            mode=test.MODE,
            clip_length=test.CLIP_LENGTH,
            clip_overlap=test.CLIP_OVERLAP,
            clip_min_iou=test.CLIP_MIN_IOU,
            clip_min_score=test.CLIP_MIN_SCORE,
            frame_chunk=test.FRAME_CHUNK,
            feature_storage=test.FEATURE_STORAGE,
            feature_storage_dtype=test.FEATURE_STORAGE_DTYPE,
            mask_threshold=test.MASK_THRESHOLD,
            tta_enabled=test.TTA.ENABLED,
            tta_min_sizes=list(test.TTA.MIN_SIZES),
            tta_flip=test.TTA.FLIP,
            tta_pivot=test.TTA.PIVOT,
            max_size_test=cfg.INPUT.MAX_SIZE_TEST,
            input_format=cfg.INPUT.FORMAT,
            drop_empty=test.DROP_EMPTY,
            objects_only=test.OBJECTS_ONLY,
            score_threshold=test.SCORE_THRESHOLD,
        )


def _one_of(key: str, value: str, allowed) -> None:
    if value not in allowed:
        names = " or ".join(repr(a) for a in allowed)
        raise ValueError(f"{key} must be {names}, got {value!r}")
