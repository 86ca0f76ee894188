"""Helpers shared by the model tests: a small Mask2Former-style decoder's arguments and
inputs (IFR's and Mask2Former-VIS's decoders take the same), ground-truth ``Instances`` of
a frame and a test-mapper-like video. Imported by name (pytest puts this folder on
``sys.path``)."""

from typing import Sequence, Tuple

import torch
from detectron2.structures import BitMasks, Boxes, Instances

# The small decoder: d, N, K, C, heads, L.
HIDDEN, QUERIES, CLASSES, MASK_DIM, HEADS, LAYERS = 32, 5, 3, 16, 4, 3
LEVEL_SIZES = [(2, 2), (4, 4), (8, 8)]  # strides 32, 16, 8
MASK_SIZE = (16, 16)  # stride 4


def decoder_kwargs(**overrides) -> dict:
    """Constructor arguments of the small decoder (dropout 0, post-norm, no input
    projection when ``in_channels == HIDDEN``), with ``overrides`` applied."""
    kwargs = dict(
        in_channels=HIDDEN,
        mask_dim=MASK_DIM,
        num_classes=CLASSES,
        hidden_dim=HIDDEN,
        num_queries=QUERIES,
        nheads=HEADS,
        dim_feedforward=64,
        dec_layers=LAYERS,
        pre_norm=False,
        enforce_input_project=False,
    )
    kwargs.update(overrides)
    return kwargs


def decoder_inputs(batch: int = 2, frames: int = 3, in_channels: int = HIDDEN):
    """Random multi-scale features, 3 x (batch, frames, in_channels, h_l, w_l) at
    ``LEVEL_SIZES``, and mask features (batch, frames, MASK_DIM, *MASK_SIZE), drawn from
    the global generator in that order."""
    features = [torch.randn(batch, frames, in_channels, h, w) for h, w in LEVEL_SIZES]
    return features, torch.randn(batch, frames, MASK_DIM, *MASK_SIZE)


def frame_instances(
    size: Tuple[int, int], classes: Sequence[int], ids: Sequence[int], masks: torch.Tensor
) -> Instances:
    """Ground truth of one frame as the training mapper gives it: ``gt_classes``,
    ``gt_ids`` (-1 = absent from the frame), ``gt_masks`` from (n, H, W) bool ``masks``
    and ``gt_boxes`` their bounding boxes."""
    instances = Instances(size)
    instances.gt_classes, instances.gt_ids = torch.tensor(classes), torch.tensor(ids)
    instances.gt_masks = BitMasks(masks)
    instances.gt_boxes = Boxes(instances.gt_masks.get_bounding_boxes().tensor)
    return instances


def random_video(
    num_frames: int = 3, size: Tuple[int, int] = (48, 64), original_size=(96, 128)
) -> dict:
    """A test-mapper-like input: ``num_frames`` random uint8 frames of ``size`` (global
    generator), ``height``/``width`` the original size, ``video_id`` 1."""
    return {
        "image": [torch.randint(0, 255, (3, *size), dtype=torch.uint8) for _ in range(num_frames)],
        "height": original_size[0],
        "width": original_size[1],
        "video_id": 1,
        "length": num_frames,
    }
