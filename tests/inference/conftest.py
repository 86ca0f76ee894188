"""A small stand-in for a model that meets the inference contract
(``ifr.inference.contract.VideoModel``), fast enough for unit tests. Its decoder mixes
information across all frames (a clip-level context), so chunked encoding must give the
same result as one chunk.
"""

import contextlib
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from detectron2.structures import ImageList
from torch import nn

from ifr.inference.options import InferenceOptions


class ToyDecoder(nn.Module):
    def __init__(self, channels: int, num_queries: int, num_classes: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, channels))
        self.class_head = nn.Linear(channels, num_classes)

    def forward(self, multi_scale_features, mask_features, return_masks=False):
        # Clip context: mean over all frames and pixels of the coarsest level.
        context = multi_scale_features[0].mean(dim=(1, 3, 4))  # (1, C)
        frame_context = mask_features.mean(dim=(3, 4))  # (1, T, C)
        clip_queries = self.queries[None] + context[:, None]  # (1, N, C)
        mask_embeds = clip_queries[:, :, None] + frame_context[:, None]  # (1, N, T, C)
        out = {"pred_logits": self.class_head(clip_queries), "pred_mask_embeds": mask_embeds}
        if return_masks:
            out["pred_masks"] = torch.einsum("bntc,btchw->bnthw", mask_embeds, mask_features)
        return out


class ToyVideoModel(nn.Module):
    def __init__(
        self,
        options: InferenceOptions,
        channels: int = 8,
        num_queries: int = 6,
        num_classes: int = 3,
    ):
        super().__init__()
        self.inference_options = options
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.levels = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(4))
        self.transformer_decoder = ToyDecoder(channels, num_queries, num_classes)
        self.encode_calls = []  # number of frames of every encode_frames call

    @property
    def device(self) -> torch.device:
        return self.stem.weight.device

    def autocast(self):
        return contextlib.nullcontext()

    def class_probabilities(self, pred_logits):
        """Sigmoid class scores, as IFR (the models' contract, docs/design.md)."""
        return pred_logits.sigmoid()

    def preprocess_frames(self, frames):
        frames = [(f.to(self.device).float() - 128.0) / 64.0 for f in frames]
        return ImageList.from_tensors(frames, 32)

    def encode_frames(self, images: ImageList):
        self.encode_calls.append(len(images.tensor))
        x = torch.tanh(self.stem(images.tensor))
        levels = [conv(F.avg_pool2d(x, s)) for conv, s in zip(self.levels, (32, 16, 8, 4))]
        per_video = [lvl[None] for lvl in levels]  # (1, T, C, h, w)
        return per_video[:3], per_video[3]


@pytest.fixture
def toy_model():
    """Factory: ``toy_model(**option_overrides)`` -> eval-mode ToyVideoModel (seeded)."""

    from ifr.engine.defaults import build_cfg

    defaults = InferenceOptions.from_config(build_cfg())

    def build(**overrides):
        torch.manual_seed(0)
        options = dataclasses.replace(defaults, **overrides)
        return ToyVideoModel(options).eval()

    return build


def random_video(num_frames: int, height: int = 40, width: int = 56, seed: int = 0) -> dict:
    """A test-mapper-like input: frames at the model size, original size 1.5x larger."""
    generator = torch.Generator().manual_seed(seed)
    frames = [
        torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
        for _ in range(num_frames)
    ]
    return {
        "image": frames,
        "height": height * 3 // 2,
        "width": width * 3 // 2,
        "video_id": 7,
        "length": num_frames,
    }


@pytest.fixture
def make_video():
    return random_video
