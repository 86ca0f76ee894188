"""VisTR (Wang et al., "End-to-End Video Instance Segmentation with Transformers", CVPR
2021) as a registered meta-architecture, ``MODEL.META_ARCHITECTURE: "VisTR"``.

backbone (per frame) -> ``VisTRTransformerDecoder`` (encoder-decoder over all frames'
tokens, instance-sequence queries, box and class heads, 3-D-conv mask fusion) ->
``VisTRCriterion`` (instance-sequence matching; class, box and mask losses).

What differs from the shared ``VideoMaskClassifier``:
- no pixel decoder: the decoder reads the backbone's res5 (transformer), res4, res3, res2
  (mask head), passed through the shared interface as ``multi_scale_features`` = (res5,
  res4, res3) and ``mask_features`` = res2, so inference encodes and stores them as it
  does for the other systems;
- targets also hold per-frame boxes and presence (``prepare_targets``);
- a query slot has a class per frame; a slot's class scores are, as VisTR's inference,
  one class (the most frequent per-frame argmax) scored by the mean of the per-frame top
  probabilities, or the class probabilities averaged over frames (``class_probabilities``,
  ``MODEL.VISTR.SLOT_SCORE``); official checkpoints load as they are
  (``rename_checkpoint_keys``). Its masks are the 3-D-fused ``pred_masks``, not a product of
  embeddings and mask features; the decoder hands them to the shared inference as its
  own ``mask_features`` (one channel per slot) with one-hot ``pred_mask_embeds``, which
  reproduces them exactly, so inference (whole video, per clip, TTA) needs no VisTR path.
"""

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from torch import nn
from torch.nn import functional as F

from ...checkpoint.vistr import is_official_vistr, vistr_to_ifr
from ...layers.classification import class_probabilities
from ..criterion.vistr import VisTRCriterion
from ..registry import TRANSFORMER_DECODER_REGISTRY
from ..transformer_decoder.vistr import VISTR_IN_FEATURES
from .base import VideoMaskClassifier, by_video

SLOT_SCORES = ("vote", "mean")


@META_ARCH_REGISTRY.register()
class VisTR(VideoMaskClassifier):
    """VisTR: softmax class logits (K + 1) per frame, boxes, 3-D-fused masks."""

    class_activation = "softmax"
    criterion_class = VisTRCriterion

    @configurable
    def __init__(self, *, slot_score: str = "vote", **kwargs):
        """``slot_score`` (MODEL.VISTR.SLOT_SCORE): "vote" or "mean" (``class_probabilities``);
        the rest as ``VideoMaskClassifier``."""
        super().__init__(**kwargs)
        if slot_score not in SLOT_SCORES:
            raise ValueError(
                f"MODEL.VISTR.SLOT_SCORE must be one of {SLOT_SCORES}, got {slot_score!r}"
            )
        self.slot_score = slot_score

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {**super().from_config(cfg), "slot_score": cfg.MODEL.VISTR.SLOT_SCORE}

    @classmethod
    def build_networks(cls, cfg) -> Dict[str, Optional[nn.Module]]:
        """No pixel decoder: the decoder reads the backbone's res5..res2 (``input_shape``)."""
        num_frames = cfg.MODEL.VISTR.NUM_FRAMES
        if cfg.INPUT.SAMPLING_FRAME_NUM != num_frames:
            raise ValueError(
                f"VisTR trains on clips of MODEL.VISTR.NUM_FRAMES = {num_frames} frames; "
                f"set INPUT.SAMPLING_FRAME_NUM {num_frames} (it is {cfg.INPUT.SAMPLING_FRAME_NUM})"
            )
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        missing = [name for name in VISTR_IN_FEATURES if name not in shapes]
        if missing:
            raise ValueError(
                f"VisTR reads backbone outputs {list(VISTR_IN_FEATURES)}; the backbone gives "
                f"{sorted(shapes)} (MODEL.RESNETS.OUT_FEATURES / MODEL.SWIN.OUT_FEATURES)"
            )
        decoder_cls = TRANSFORMER_DECODER_REGISTRY.get(cfg.MODEL.TRANSFORMER_DECODER.NAME)
        return {
            "backbone": backbone,
            "pixel_decoder": None,
            "transformer_decoder": decoder_cls(cfg, input_shape=shapes),
        }

    @staticmethod
    def rename_checkpoint_keys(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Called by ``ifr.checkpoint.IFRCheckpointer`` on every loaded state dict: an
        official VisTR model converts as ``--kind vistr``; other files are unchanged."""
        return vistr_to_ifr(state_dict) if is_official_vistr(state_dict) else state_dict

    def class_probabilities(self, pred_logits: torch.Tensor) -> torch.Tensor:
        """(..., T, K + 1) per-frame logits -> (..., K) class scores of each slot
        (``MODEL.VISTR.SLOT_SCORE``): "mean", the softmax probabilities of the K classes
        averaged over the frames; "vote", :func:`voted_slot_scores`."""
        probs = class_probabilities(pred_logits, "softmax")
        if self.slot_score == "vote":
            return voted_slot_scores(probs)
        return probs.mean(-2)

    def _encode(
        self, frames: torch.Tensor, num_videos: int, num_frames: int
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """(B*T, 3, H, W) normalised frames -> ([res5, res4, res3], res2), each
        (B, T, C_l, H_l, W_l)."""
        features = self.backbone_features(frames, num_frames)
        multi_scale = [
            by_video(features[name], num_videos, num_frames) for name in ("res5", "res4", "res3")
        ]
        return multi_scale, by_video(features["res2"], num_videos, num_frames)

    def prepare_targets(self, batched_inputs: List[dict], padded_size) -> List[Dict]:
        """The shared targets plus ``boxes (M, T, 4)``: the tight box of each mask as
        normalised (cx, cy, w, h) relative to the frame before padding (zero where
        absent), and ``valid (M, T)`` bool: the instance is present in the frame."""
        targets = super().prepare_targets(batched_inputs, padded_size)
        for video, target in zip(batched_inputs, targets):
            height, width = video["image"][0].shape[-2:]
            masks = target["masks"][..., :height, :width]
            target["valid"] = (masks > 0.5).flatten(2).any(-1)
            target["boxes"] = normalized_mask_boxes(masks, target["valid"])
        return targets


def voted_slot_scores(probs: torch.Tensor) -> torch.Tensor:
    """VisTR's inference: (..., T, K) per-frame probabilities -> (..., K) scores that are
    0 except in one class per slot: the most frequent per-frame argmax (ties to the lower
    class, as ``np.bincount(...).argmax()``), scored by the mean over frames of the
    per-frame top probability. The shared top-k then keeps at most one pair per slot."""
    top, label = probs.max(-1)  # (..., T)
    num_classes = probs.shape[-1]
    votes = F.one_hot(label, num_classes).sum(-2)  # (..., K)
    # argmax returns the first maximum: the lowest class among tied vote counts
    voted = votes.argmax(-1, keepdim=True)
    scores = torch.zeros(probs.shape[:-2] + (num_classes,), dtype=probs.dtype, device=probs.device)
    return scores.scatter_(-1, voted, top.mean(-1, keepdim=True))


def normalized_mask_boxes(masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Tight boxes of masks as (cx, cy, w, h) divided by the mask size.

    Args:
        masks: (M, T, H, W) binary masks; valid: (M, T) bool, the mask is not empty.
    Returns:
        (M, T, 4); a box spans whole pixels (x1 = last column + 1); zero where not valid.
    """
    height, width = masks.shape[-2:]
    binary = masks > 0.5
    rows, cols = binary.any(-1), binary.any(-2)  # (M, T, H), (M, T, W)

    def extent(present: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(present.shape[-1], device=present.device, dtype=torch.float32)
        first = torch.where(present, index, torch.inf).amin(-1)
        last = torch.where(present, index, -torch.inf).amax(-1) + 1
        return first, last

    (y0, y1), (x0, x1) = extent(rows), extent(cols)
    boxes = torch.stack(
        [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height],
        dim=-1,
    )
    return torch.where(valid[..., None], boxes, torch.zeros_like(boxes))
