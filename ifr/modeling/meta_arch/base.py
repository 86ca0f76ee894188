"""The meta-architecture shared by the five systems (IFR, Mask2Former-VIS, IFC, VisTR,
TeViT): backbone -> pixel decoder (per frame) -> a video transformer decoder -> set
criterion (training) or ``ifr.inference.run_inference`` (evaluation, one video at a time).
It meets the inference contract (``ifr.inference.contract.VideoModel``) for all of them.

A subclass says which transformer decoders it accepts (by their ``class_activation``)
and builds its criterion; what else is its own it overrides in its own module.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import build_backbone
from detectron2.structures import ImageList
from torch import nn

from ...inference import run_inference
from ...inference.contract import decoder_image_sizes
from ...inference.options import InferenceOptions
from ...layers.classification import class_probabilities, configured_class_activation
from ...utils.precision import check_precision, float32_autocast_off, precision_autocast, to_float32
from ..registry import build_pixel_decoder, build_transformer_decoder


class VideoMaskClassifier(nn.Module):
    """Clip-level mask classification of videos (no registry entry: see ``IFR`` and
    ``VideoMaskFormer``).

    Subclasses set ``class_activation`` ("sigmoid" or "softmax", the decoder's) and
    ``criterion_class`` (built from the config by ``from_config``), and may name the
    classes they need as pixel and transformer decoder (``required_parts``).
    """

    class_activation: str = ""
    # Whether MODEL.VIS.CLASS_LOSS may swap the class loss (and with it
    # ``class_activation``): the point-set systems only (IFR, Mask2Former-VIS).
    swappable_class_loss: bool = False
    # The criterion's class, called with the config.
    criterion_class: type = None
    # (config key, constructor argument, the class this system needs there); checked first.
    required_parts: Sequence[Tuple[str, str, type]] = ()

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
        precision: str = "fp32",
        class_activation: Optional[str] = None,
    ):
        """``precision`` (MODEL.PRECISION): the autocast dtype of backbone, pixel decoder
        and transformer decoder ("fp32", "fp16", "bf16"); the rest runs in float32.
        ``class_activation``: of the decoder's logits, if not the system's own
        (``MODEL.VIS.CLASS_LOSS``)."""
        super().__init__()
        self.precision = check_precision(precision)
        if class_activation is not None:
            self.class_activation = class_activation
        self._check_parts(pixel_decoder=pixel_decoder, transformer_decoder=transformer_decoder)
        decoder_activation = getattr(transformer_decoder, "class_activation", None)
        if decoder_activation != self.class_activation:
            raise ValueError(
                f"{type(self).__name__} needs a transformer decoder with {self.class_activation} "
                f"class logits; {type(transformer_decoder).__name__} has {decoder_activation} "
                "(MODEL.TRANSFORMER_DECODER.NAME)"
            )
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.transformer_decoder = transformer_decoder
        self.criterion = criterion
        self.size_divisibility = max(size_divisibility, backbone.size_divisibility)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        if inference_options.objects_only and self.class_activation != "softmax":
            raise ValueError(
                "MODEL.VIS.TEST.OBJECTS_ONLY needs a softmax class head (K + 1 classes, the "
                f"last no-object); {type(self).__name__} has {self.class_activation} logits"
            )
        self.inference_options = inference_options

    def _check_parts(self, **parts: nn.Module) -> None:
        """Raise ValueError naming the config key whose component is not the class
        ``required_parts`` names for it."""
        for key, argument, expected in self.required_parts:
            if not isinstance(parts[argument], expected):
                raise ValueError(
                    f"{type(self).__name__} needs {key} {expected.__name__!r}, got "
                    f"{type(parts[argument]).__name__}"
                )

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {**cls.shared_from_config(cfg), "criterion": cls.criterion_class(cfg)}

    @classmethod
    def shared_from_config(cls, cfg) -> dict:
        """Every constructor argument but the criterion."""
        class_activation = cls.class_activation_from_config(cfg)  # checks the key first
        return {
            **cls.build_networks(cfg),
            "size_divisibility": cfg.MODEL.VIS.SIZE_DIVISIBILITY,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "inference_options": InferenceOptions.from_config(cfg),
            "precision": cfg.MODEL.PRECISION,
            "class_activation": class_activation,
        }

    @classmethod
    def build_networks(cls, cfg) -> Dict[str, Optional[nn.Module]]:
        """``backbone``, ``pixel_decoder`` and ``transformer_decoder`` from the config (a
        system whose parts connect otherwise overrides this, e.g. VisTR)."""
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "pixel_decoder": build_pixel_decoder(cfg, backbone.output_shape()),
            "transformer_decoder": build_transformer_decoder(
                cfg,
                in_channels=cfg.MODEL.PIXEL_DECODER.CONVS_DIM,
                mask_dim=cfg.MODEL.PIXEL_DECODER.MASK_DIM,
            ),
        }

    @classmethod
    def class_activation_from_config(cls, cfg) -> str:
        """The class activation ``MODEL.VIS.CLASS_LOSS`` gives this system; a ValueError
        if it is set for a system whose class loss is not swappable."""
        if cls.swappable_class_loss:
            return configured_class_activation(cfg, cls.class_activation)
        if cfg.MODEL.VIS.CLASS_LOSS != "":
            raise ValueError(
                f"MODEL.VIS.CLASS_LOSS swaps the class loss of IFR and VideoMaskFormer only; "
                f"{cls.__name__} has its own: set it to '' (got {cfg.MODEL.VIS.CLASS_LOSS!r})"
            )
        if cfg.MODEL.VIS.CLASS_COST != "probability":
            raise ValueError(
                f"MODEL.VIS.CLASS_COST sets the matching cost of IFR and VideoMaskFormer only; "
                f"{cls.__name__} has its own matcher: set it to 'probability' "
                f"(got {cfg.MODEL.VIS.CLASS_COST!r})"
            )
        return cls.class_activation

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def autocast(self):
        """The context the network (backbone, pixel decoder, transformer decoder) runs in:
        autocast in ``self.precision`` on the model's device; for "fp32" it changes
        nothing (an enclosing autocast, e.g. Detectron2's AMPTrainer, still applies)."""
        return precision_autocast(self.device.type, self.precision)

    def class_probabilities(self, pred_logits: torch.Tensor) -> torch.Tensor:
        """(..., K) class probabilities from the decoder's logits (sigmoid for IFR; softmax
        without the no-object column for Mask2Former-VIS). Used by inference."""
        return class_probabilities(pred_logits, self.class_activation)

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
        with self.autocast():
            multi_scale, mask_features = self._encode(
                images.tensor, len(batched_inputs), num_frames
            )
            outputs = self.transformer_decoder(
                multi_scale,
                mask_features,
                return_masks=True,
                **decoder_image_sizes(
                    self.transformer_decoder,
                    [images.image_sizes[b * num_frames] for b in range(len(batched_inputs))],
                ),
            )
        # Losses, matching and point sampling in float32, whatever the network's precision.
        outputs, mask_features = self._float32_outputs(outputs), mask_features.float()
        with float32_autocast_off(self.device.type):
            self.prepare_outputs_for_loss(outputs, mask_features)
            targets = self.prepare_targets(batched_inputs, images.tensor.shape[-2:])
            losses = self.criterion(outputs, targets)
        weights = self.criterion.weight_dict
        return {k: v * weights[k] for k, v in losses.items() if k in weights}

    def _float32_outputs(self, outputs: dict) -> dict:
        """The decoder's outputs with every floating tensor in float32. A function among
        them (TeViT's ``roi_mask_logits``: the criterion runs part of the network on its
        RoIs) runs in the model's precision and returns float32."""

        def in_precision(function):
            def run(*args, **kwargs):
                with self.autocast():
                    return to_float32(function(*args, **kwargs))

            return run

        return {
            key: in_precision(value) if callable(value) else to_float32(value)
            for key, value in outputs.items()
        }

    def prepare_outputs_for_loss(self, outputs: dict, mask_features: torch.Tensor) -> None:
        """Hook: add what the criterion needs beyond the decoder's outputs (in place)."""

    def preprocess_frames(self, frames: List[torch.Tensor]) -> ImageList:
        """uint8 (3, H, W) frames -> normalised ImageList padded to ``size_divisibility``."""
        frames = [(f.to(self.device).float() - self.pixel_mean) / self.pixel_std for f in frames]
        return ImageList.from_tensors(frames, self.size_divisibility)

    def encode_frames(self, images: ImageList) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Backbone + pixel decoder over the frames of ONE video (inference chunks them:
        ``ifr.inference.video.encode_video``), in ``self.precision``.

        Returns:
            multi_scale_features: 3 tensors (1, T, C, h_l, w_l), strides 32, 16, 8;
            mask_features: (1, T, C_mask, H/4, W/4); in the autocast dtype (the caller
            stores them in its storage dtype).
        """
        with self.autocast():
            return self._encode(images.tensor, 1, len(images.tensor))

    def _encode(
        self, frames: torch.Tensor, num_videos: int, num_frames: int
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """(B*T, 3, H, W) normalised frames -> per-frame features reshaped to (B, T, ...)."""
        features = self.backbone_features(frames, num_frames)
        mask_features, multi_scale = self.pixel_decoder.forward_features(features)
        multi_scale = [by_video(f, num_videos, num_frames) for f in multi_scale]
        return multi_scale, by_video(mask_features, num_videos, num_frames)

    def backbone_features(self, frames: torch.Tensor, num_frames: int) -> Dict[str, torch.Tensor]:
        """Hook: the backbone's features of (B*T, 3, H, W) frames, clips of ``num_frames``."""
        return self.backbone(frames)

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


def by_video(x: torch.Tensor, num_videos: int, num_frames: int) -> torch.Tensor:
    """(B*T, ...) per-frame tensor -> (B, T, ...)."""
    return x.view(num_videos, num_frames, *x.shape[1:])
