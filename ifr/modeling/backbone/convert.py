"""Conversion of ImageNet-pretrained backbone weights to the detectron2 checkpoint format
that ``DetectionCheckpointer`` loads into the model (``backbone.<name>`` keys).

- Official Swin classification checkpoints (``{"model": state_dict}``) ->
  ``D2SwinTransformer`` names (the classifier head and final norm dropped).
- torchvision ResNet state dicts -> detectron2 ResNet names.

Input files are loaded without unpickling arbitrary objects unless the caller allows it.
"""

import math
import os
import re
from typing import Callable, Dict, Optional

from torch import Tensor

from ...utils.atomic_io import atomic_torch_save
from ...utils.errors import UserInputError
from ...utils.tensor_io import CheckpointFormatError, UnsafeCheckpointError, load_tensor_file
from ..transformer_decoder.vistr_weights import detr_to_vistr_init, vistr_to_ifr
from .msgshift import pvt_v2_official_to_d2

__all__ = [
    "CONVERTERS",
    "CheckpointFormatError",
    "UnsafeCheckpointError",
    "load_state_dict_safely",
    "swin_official_to_d2",
    "torchvision_resnet_to_d2",
    "to_detectron2_checkpoint",
    "convert_checkpoint",
]

AUTHOR = "ifr"


def load_state_dict_safely(path: str, allow_pickle: bool = False) -> Dict[str, Tensor]:
    """Loads the tensors of a checkpoint file (``.pth``/``.pt``/``.bin`` or ``.safetensors``).

    A state dict nested under ``"model"`` or ``"state_dict"`` is unwrapped. Arbitrary
    pickled objects are refused unless ``allow_pickle`` (only for files you trust).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    loaded = load_tensor_file(path, allow_pickle, "pass --allow-pickle (allow_pickle=True)")
    return _unwrap_state_dict(loaded, path)


def _unwrap_state_dict(loaded, path: str) -> Dict[str, Tensor]:
    if isinstance(loaded, dict):
        for key in ("model", "state_dict"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict):
        raise CheckpointFormatError(f"{path}: expected a state dict, got {type(loaded).__name__}")
    not_tensors = [k for k, v in loaded.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise CheckpointFormatError(
            f"{path}: entries {not_tensors[:5]} of the state dict are not tensors"
        )
    return dict(loaded)


def swin_official_to_d2(
    state_dict: Dict[str, Tensor], source: str = "checkpoint"
) -> Dict[str, Tensor]:
    """Official Swin classification names -> ``D2SwinTransformer`` names.

    The names of the stages are the same; dropped are the classifier (``head.*``), the
    final norm (``norm.*``: the backbone has one norm per output, ``norm{i}``) and the
    precomputed shifted-window masks (``*.attn_mask``, recomputed for every input size).
    ``absolute_pos_embed`` is reshaped from (1, L, C) to (1, C, sqrt(L), sqrt(L)).
    """
    converted = {}
    for name, tensor in state_dict.items():
        if name.startswith(("head.", "norm.")) or name.endswith(".attn_mask"):
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
    state_dict: Dict[str, Tensor], source: str = "checkpoint"
) -> Dict[str, Tensor]:
    """torchvision ResNet names -> detectron2 ResNet names.

    ``conv1``/``bn1`` -> ``stem.conv1``/``stem.conv1.norm``; ``layer{k}.{i}.conv{j}`` ->
    ``res{k+1}.{i}.conv{j}``, ``bn{j}`` -> ``conv{j}.norm``, ``downsample.0``/``.1`` ->
    ``shortcut``/``shortcut.norm``. The classifier (``fc.*``) and ``num_batches_tracked``
    (absent from detectron2's FrozenBatchNorm2d) are dropped.
    """
    converted = {}
    for name, tensor in state_dict.items():
        if name.startswith("fc.") or name.endswith("num_batches_tracked"):
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


CONVERTERS: Dict[str, Callable[..., Dict[str, Tensor]]] = {
    "swin": swin_official_to_d2,
    "torchvision-resnet": torchvision_resnet_to_d2,
    "pvt-v2": pvt_v2_official_to_d2,  # TeViT's MsgShifT from ImageNet PVTv2 weights
    # Whole VisTR models (full names): its COCO DETR initialisation, its trained models.
    "detr-vistr": detr_to_vistr_init,
    "vistr": vistr_to_ifr,
}


def to_detectron2_checkpoint(backbone_state: Dict[str, Tensor], prefix: str = "backbone.") -> dict:
    """Wraps backbone weights as a detectron2 checkpoint with exact (prefixed) names."""
    return {
        "model": {prefix + name: tensor.contiguous() for name, tensor in backbone_state.items()},
        "__author__": AUTHOR,
        "matching_heuristics": False,
    }


# What the converter writes: torch checkpoints (MODEL.WEIGHTS reads .pkl as Detectron2 pickles).
OUTPUT_SUFFIXES = (".pth", ".pt")


def convert_checkpoint(
    input_path: str,
    output_path: str,
    kind: str,
    allow_pickle: bool = False,
    log: Optional[Callable] = print,
) -> dict:
    """Converts ``input_path`` with the converter ``kind`` (a key of ``CONVERTERS``) and
    writes the detectron2 checkpoint to ``output_path``. Returns the written object."""
    if kind not in CONVERTERS:
        raise UserInputError(f"unknown conversion '{kind}'; choose one of {sorted(CONVERTERS)}")
    if not output_path.endswith(OUTPUT_SUFFIXES):
        raise UserInputError(
            f"{output_path}: the converter writes a torch checkpoint; name it .pth "
            "(a .pkl name would be read as a Detectron2 pickle of numpy arrays)"
        )
    state_dict = load_state_dict_safely(input_path, allow_pickle=allow_pickle)
    converter = CONVERTERS[kind]
    backbone_state = converter(state_dict, source=input_path)
    if not backbone_state:
        raise UserInputError(
            f"{input_path}: no tensor to convert with --kind {kind} ({len(state_dict)} tensors "
            "in the file, none of that naming); nothing was written"
        )
    # A converter of whole models (``full_model``) gives full names already.
    prefix = "" if getattr(converter, "full_model", False) else "backbone."
    checkpoint = to_detectron2_checkpoint(backbone_state, prefix)
    atomic_torch_save(checkpoint, output_path)
    if log is not None:
        dropped = len(state_dict) - len(backbone_state)
        converted = len(backbone_state)
        log(f"{input_path}: {converted} tensors converted ({dropped} dropped) -> {output_path}")
    return checkpoint
