"""TeViT (Yang et al., "Temporally Efficient Vision Transformer for Video Instance
Segmentation", CVPR 2022) as a meta-architecture of this codebase: MsgShifT backbone
(``D2MsgShifT``, messengers shifted among the frames of each clip) -> ``TeViTFPN`` (per
frame) -> ``TeViTSTQIHead`` (spatiotemporal query interaction) -> ``TeViTCriterion``.

Everything else is the shared ``VideoMaskClassifier``: preprocessing, targets, the
training forward and inference (``ifr.inference``; the head hands its pasted masks over
as one-hot embeddings, see ``transformer_decoder/tevit.py``). What is TeViT's own here:
the backbone sees the clip length (``_encode``), and a query's class probabilities are
the mean of its per-frame sigmoid scores (``class_probabilities``), as TeViT's test, and
official (mmdetection-named) checkpoints load as they are (``rename_checkpoint_keys``).
"""

from typing import Dict, List

import torch
from detectron2.modeling import META_ARCH_REGISTRY

from ...checkpoint.tevit import is_official_tevit, tevit_to_ifr
from ..backbone.msgshift import D2MsgShifT
from ..criterion.tevit import TeViTCriterion
from ..pixel_decoder import TeViTFPN
from ..transformer_decoder.tevit import TeViTSTQIHead
from .base import VideoMaskClassifier

# (config key, constructor argument, the class TeViT needs there)
_TEVIT_PARTS = (
    ("MODEL.PIXEL_DECODER.NAME", "pixel_decoder", TeViTFPN),
    ("MODEL.TRANSFORMER_DECODER.NAME", "transformer_decoder", TeViTSTQIHead),
)


@META_ARCH_REGISTRY.register()
class TeViT(VideoMaskClassifier):
    """TeViT: a MsgShifT backbone, ``TeViTFPN`` + ``TeViTSTQIHead`` and ``TeViTCriterion``."""

    class_activation = "sigmoid"
    criterion_class = TeViTCriterion
    required_parts = _TEVIT_PARTS

    @staticmethod
    def rename_checkpoint_keys(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Called by ``ifr.checkpoint.IFRCheckpointer`` on every loaded state dict: an
        official (mmdetection) TeViT or QueryInst file converts as ``--kind tevit``; other
        files are unchanged."""
        return tevit_to_ifr(state_dict) if is_official_tevit(state_dict) else state_dict

    def class_probabilities(self, pred_logits: torch.Tensor) -> torch.Tensor:
        """(..., T, K) per-frame logits -> (..., K): the mean over frames of the sigmoid."""
        return pred_logits.sigmoid().mean(dim=-2)

    def prepare_targets(self, batched_inputs: List[dict], padded_size) -> List[Dict]:
        """The shared targets plus ``image_size`` (h, w): the clip's size before padding,
        by which TeViT normalises its boxes."""
        targets = super().prepare_targets(batched_inputs, padded_size)
        for video, target in zip(batched_inputs, targets):
            target["image_size"] = tuple(video["image"][0].shape[-2:])
        return targets

    def backbone_features(self, frames: torch.Tensor, num_frames: int) -> Dict[str, torch.Tensor]:
        """As the shared one, with the clip length given to a MsgShifT backbone."""
        if isinstance(self.backbone, D2MsgShifT):
            return self.backbone(frames, num_frames=num_frames)
        return self.backbone(frames)
