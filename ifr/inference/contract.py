"""What the inference code needs of a model: one contract that all five systems meet.

``run_inference`` and everything under it (whole-video and per-clip decoding, tracking,
test-time augmentation, mask rendering) call only the members of :class:`VideoModel`;
``ifr.modeling.meta_arch.base.VideoMaskClassifier`` implements them once and each
system's meta-architecture (IFR, Mask2Former-VIS, IFC, VisTR, TeViT) adapts what is its
own there (docs/design.md, "The inference contract")."""

from typing import (
    Callable,
    ContextManager,
    Dict,
    List,
    Protocol,
    Sequence,
    Tuple,
    runtime_checkable,
)

import torch
from detectron2.structures import ImageList

from .options import InferenceOptions


@runtime_checkable
class VideoModel(Protocol):
    """A video instance segmentation model as the inference code sees it.

    A decoder with ``uses_image_sizes`` (TeViT's) is also given ``image_sizes``: each
    clip's (h, w) before padding (``decoder_image_sizes``).

    Decoder outputs (``transformer_decoder(..., return_masks=False)``), batch of one video:
    ``pred_logits`` (1, N, K or K + 1) clip-level class logits, ``pred_mask_embeds``
    (1, N, T, C) per-frame mask embeddings whose dot product with the mask features gives
    the mask logits, and, where the mask features depend on the clip (IFC), the clip's
    ``mask_features`` (1, T, C, h, w) in place of the encoder's; where masks are predicted
    in boxes (TeViT), also ``pred_box_masks`` (1, N, T, S, S) box mask logits with
    ``pred_boxes`` (1, N, T, 4) xyxy / the image size, which render the final masks at the
    output size (``ifr.inference.candidates.BoxMaskPrediction``).
    """

    inference_options: InferenceOptions  # MODEL.VIS.TEST.*, checked once
    # (multi_scale_features, mask_features, return_masks=False) -> the outputs above.
    transformer_decoder: Callable[..., Dict[str, torch.Tensor]]

    @property
    def device(self) -> torch.device:
        """Where the parameters are (inputs are moved there a chunk at a time)."""

    def autocast(self) -> ContextManager:
        """The compute precision's autocast context (MODEL.PRECISION)."""

    def preprocess_frames(self, frames: List[torch.Tensor]) -> ImageList:
        """T uint8 (3, H, W) frames -> normalised, padded ImageList on ``device``."""

    def encode_frames(self, images: ImageList) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """One chunk of frames -> (3 multi-scale tensors (1, T, C, h_l, w_l), mask
        features (1, T, C, h, w))."""

    def class_probabilities(self, pred_logits: torch.Tensor) -> torch.Tensor:
        """(..., K or K + 1) logits -> (..., K) class probabilities (sigmoid, or softmax
        without the no-object column)."""


def decoder_image_sizes(decoder: object, image_sizes: Sequence[Sequence[int]]) -> Dict[str, list]:
    """``{"image_sizes": [(h, w), ...]}`` (each clip's size before padding) for a decoder
    that reads them (``uses_image_sizes``), else nothing: the keyword arguments to add to
    its call."""
    if getattr(decoder, "uses_image_sizes", False):
        return {"image_sizes": [tuple(int(x) for x in size) for size in image_sizes]}
    return {}


def check_video_model(model: object) -> None:
    """Raise TypeError naming what ``model`` lacks of :class:`VideoModel`."""
    if isinstance(model, VideoModel):
        return
    missing = [
        name
        for name in (
            "inference_options",
            "device",
            "autocast",
            "preprocess_frames",
            "encode_frames",
            "transformer_decoder",
            "class_probabilities",
        )
        if not hasattr(model, name)
    ]
    raise TypeError(f"{type(model).__name__} does not meet the inference contract: no {missing}")
