"""Key maps of official backbone checkpoints onto this project's backbones: official Swin
classification checkpoints onto ``D2SwinTransformer``, torchvision ResNets onto
detectron2's ResNet, ImageNet PVTv2 onto TeViT's ``D2MsgShifT``. Pure functions of state
dicts; ``files.py`` reads and writes files, and the model-specific converters
(``vistr.py``) use them for their backbones."""

import math
import re
from typing import Dict, Optional

from torch import Tensor

from ..utils.tensor_io import CheckpointFormatError

__all__ = [
    "Dropped",
    "pvt_v2_official_to_d2",
    "record_drop",
    "swin_official_to_d2",
    "torchvision_resnet_to_d2",
]

# What a converter leaves out: input name -> why (filled when the caller passes a dict).
Dropped = Optional[Dict[str, str]]
IMAGENET_CLASSIFIER = "the ImageNet classifier (not part of the backbone)"


def record_drop(dropped: Dropped, name: str, reason: str) -> None:
    """Notes that input tensor ``name`` is left out, and why (no-op without a dict)."""
    if dropped is not None:
        dropped[name] = reason


def swin_official_to_d2(
    state_dict: Dict[str, Tensor], source: str = "checkpoint", dropped: Dropped = None
) -> Dict[str, Tensor]:
    """Official Swin classification names -> ``D2SwinTransformer`` names.

    The names of the stages are the same; dropped are the classifier (``head.*``), the
    final norm (``norm.*``: the backbone has one norm per output, ``norm{i}``) and the
    precomputed shifted-window masks (``*.attn_mask``, recomputed for every input size).
    ``absolute_pos_embed`` is reshaped from (1, L, C) to (1, C, sqrt(L), sqrt(L)).
    """
    converted = {}
    for name, tensor in state_dict.items():
        if name.startswith(("head.", "norm.")):
            record_drop(dropped, name, IMAGENET_CLASSIFIER + " and its final norm")
            continue
        if name.endswith(".attn_mask"):
            record_drop(dropped, name, "precomputed window masks (recomputed per input size)")
            continue
        if name == "absolute_pos_embed" and tensor.dim() == 3:
            side = math.isqrt(tensor.shape[1])
            tensor = tensor.transpose(1, 2).reshape(1, tensor.shape[2], side, side)
        elif not name.startswith(("patch_embed.", "layers.")):
            raise CheckpointFormatError(
                f"{source}: unexpected key '{name}' for an official Swin checkpoint"
            )
        converted[name] = tensor
    if not converted:
        raise CheckpointFormatError(
            f"{source}: no Swin weights found (expected patch_embed.*, layers.*)"
        )
    return converted


_RESNET_STEM = re.compile(r"^(conv1|bn1)\.(.+)$")
_RESNET_BLOCK = re.compile(r"^layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.0|downsample\.1)\.(.+)$")


def torchvision_resnet_to_d2(
    state_dict: Dict[str, Tensor], source: str = "checkpoint", dropped: Dropped = None
) -> Dict[str, Tensor]:
    """torchvision ResNet names -> detectron2 ResNet names.

    ``conv1``/``bn1`` -> ``stem.conv1``/``stem.conv1.norm``; ``layer{k}.{i}.conv{j}`` ->
    ``res{k+1}.{i}.conv{j}``, ``bn{j}`` -> ``conv{j}.norm``, ``downsample.0``/``.1`` ->
    ``shortcut``/``shortcut.norm``. The classifier (``fc.*``) and ``num_batches_tracked``
    (absent from detectron2's FrozenBatchNorm2d) are dropped.
    """
    converted = {}
    for name, tensor in state_dict.items():
        if name.startswith("fc."):
            record_drop(dropped, name, IMAGENET_CLASSIFIER)
            continue
        if name.endswith("num_batches_tracked"):
            record_drop(dropped, name, "BatchNorm step counters (frozen BatchNorm has none)")
            continue
        stem = _RESNET_STEM.match(name)
        block = _RESNET_BLOCK.match(name)
        if stem:
            module, param = stem.groups()
            new_name = "stem.conv1." + ("norm." if module == "bn1" else "") + param
        elif block:
            stage, index, module, param = block.groups()
            prefix = f"res{int(stage) + 1}.{index}."
            target = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}.get(module)
            if target is None:
                target = module if module.startswith("conv") else f"conv{module[2:]}.norm"
            new_name = prefix + target + "." + param
        else:
            raise CheckpointFormatError(
                f"{source}: unexpected key '{name}' for a torchvision ResNet state dict"
            )
        converted[new_name] = tensor
    return converted


_PVT_PREFIXES = ("patch_embed", "block", "norm")


def pvt_v2_official_to_d2(
    state_dict: Dict[str, Tensor], source: str = "checkpoint", dropped: Dropped = None
) -> Dict[str, Tensor]:
    """Official PVTv2 classification names (``pvt_v2_b1.pth``) -> ``D2MsgShifT`` names: the
    same names; the classifier (``head.*``) is dropped. The messenger tokens are not in
    the file and keep their initialisation."""
    converted = {}
    for name, tensor in state_dict.items():
        if name.startswith("head."):
            record_drop(dropped, name, IMAGENET_CLASSIFIER)
            continue
        if not name.startswith(_PVT_PREFIXES):
            raise CheckpointFormatError(
                f"{source}: unexpected key '{name}' for an official PVTv2 checkpoint"
            )
        converted[name] = tensor
    if not converted:
        raise CheckpointFormatError(f"{source}: no PVTv2 weights (patch_embed*, block*, norm*)")
    return converted
