"""The IFR meta-architecture: backbone -> pixel decoder -> IFR transformer decoder.

Training: a batch of B clips of T frames each; losses of Eq. (5)-(7).
Inference: one video at a time through ``ifr.inference.run_inference``.
"""
from typing import Dict, List, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import ImageList
from torch import nn

from ...inference import run_inference
from ...inference.options import InferenceOptions
from ..criterion import VideoSetCriterion
from ..registry import build_pixel_decoder, build_transformer_decoder


@META_ARCH_REGISTRY.register()
class IFR(nn.Module):
    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        pixel_decoder: nn.Module,
        transformer_decoder: nn.Module,
        criterion: nn.Module,
        size_divisibility: int,
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
        inference_options: InferenceOptions,
    ):
        super().__init__()
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.transformer_decoder = transformer_decoder
        self.criterion = criterion
        self.size_divisibility = max(size_divisibility, backbone.size_divisibility)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.inference_options = inference_options

    @classmethod
    def from_config(cls, cfg) -> dict:
        backbone = build_backbone(cfg)
        pixel_decoder = build_pixel_decoder(cfg, backbone.output_shape())
        transformer_decoder = build_transformer_decoder(
            cfg,
            in_channels=cfg.MODEL.PIXEL_DECODER.CONVS_DIM,
            mask_dim=cfg.MODEL.PIXEL_DECODER.MASK_DIM,
        )
        return {
            "backbone": backbone,
            "pixel_decoder": pixel_decoder,
            "transformer_decoder": transformer_decoder,
            "criterion": VideoSetCriterion(cfg),
            "size_divisibility": cfg.MODEL.IFR.SIZE_DIVISIBILITY,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "inference_options": InferenceOptions.from_config(cfg),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: List[dict]):
        """
        Args:
            batched_inputs: dicts of the clip mapper (docs/design.md): ``image`` is a list
                of T uint8 (3, H, W) frames; training inputs also hold ``instances``.
        Returns:
            training: dict of weighted losses; inference: one output dict per video.
        """
        if not self.training:
            return [run_inference(self, video) for video in batched_inputs]
        num_frames = len(batched_inputs[0]["image"])
        frames = [frame for video in batched_inputs for frame in video["image"]]
        images = self.preprocess_frames(frames)
        multi_scale, mask_features = self._encode(images.tensor, len(batched_inputs), num_frames)
        outputs = self.transformer_decoder(multi_scale, mask_features, return_masks=True)
        _attach_mask_features(outputs, mask_features)
        targets = self.prepare_targets(batched_inputs, images.tensor.shape[-2:])
        losses = self.criterion(outputs, targets)
        weights = self.criterion.weight_dict
        return {k: v * weights[k] for k, v in losses.items() if k in weights}

    def preprocess_frames(self, frames: List[torch.Tensor]) -> ImageList:
        """uint8 (3, H, W) frames -> normalised ImageList padded to ``size_divisibility``."""
        frames = [(f.to(self.device).float() - self.pixel_mean) / self.pixel_std for f in frames]
        return ImageList.from_tensors(frames, self.size_divisibility)

    def encode_frames(self, images: ImageList) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Backbone + pixel decoder over the frames of ONE video (inference chunks them:
        ``ifr.inference.video.encode_video``).

        Returns:
            multi_scale_features: 3 tensors (1, T, C, h_l, w_l), strides 32, 16, 8;
            mask_features: (1, T, C_mask, H/4, W/4).
        """
        return self._encode(images.tensor, 1, len(images.tensor))

    def _encode(
        self, frames: torch.Tensor, num_videos: int, num_frames: int
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """(B*T, 3, H, W) normalised frames -> per-frame features reshaped to (B, T, ...)."""
        features = self.backbone(frames)
        mask_features, multi_scale = self.pixel_decoder.forward_features(features)

        def by_video(x: torch.Tensor) -> torch.Tensor:
            return x.view(num_videos, num_frames, *x.shape[1:])

        return [by_video(f) for f in multi_scale], by_video(mask_features)

    def prepare_targets(self, batched_inputs: List[dict], padded_size) -> List[Dict]:
        """Per-frame ``Instances`` of each clip -> the criterion's targets (docs/design.md):
        ``labels (M,)`` and ``masks (M, T, H, W)`` at the padded size, zero where absent."""
        height, width = padded_size
        targets = []
        for video in batched_inputs:
            per_frame = video["instances"]
            num_instances, num_frames = len(per_frame[0]), len(per_frame)
            masks = torch.zeros(
                (num_instances, num_frames, height, width), dtype=torch.float32, device=self.device
            )
            for t, inst in enumerate(per_frame):
                frame_masks = inst.gt_masks.tensor.to(self.device)
                masks[:, t, : frame_masks.shape[-2], : frame_masks.shape[-1]] = frame_masks.float()
            targets.append({"labels": per_frame[0].gt_classes.to(self.device), "masks": masks})
        return targets


def _attach_mask_features(outputs: dict, mask_features: torch.Tensor) -> None:
    """The cross-frame loss (Eq. 6-7) needs the mask features of every frame."""
    outputs["mask_features"] = mask_features
    for aux in outputs.get("aux_outputs", []):
        aux["mask_features"] = mask_features
