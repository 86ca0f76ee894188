"""Conversion of ImageNet-pretrained backbone weights to the detectron2 checkpoint format
that ``DetectionCheckpointer`` loads into the model (``backbone.<name>`` keys).

- Official Swin classification checkpoints (``{"model": state_dict}``) ->
  ``D2SwinTransformer`` names (the classifier head and final norm dropped).
- torchvision ResNet state dicts -> detectron2 ResNet names.

Input files are loaded without unpickling arbitrary objects unless the caller allows it.
"""

import collections
import os
from typing import Callable, Dict, Optional

from torch import Tensor

from ..utils.atomic_io import atomic_torch_save
from ..utils.errors import UserInputError
from ..utils.tensor_io import CheckpointFormatError, UnsafeCheckpointError, load_tensor_file
from .backbones import pvt_v2_official_to_d2, swin_official_to_d2, torchvision_resnet_to_d2
from .tevit import tevit_to_ifr
from .vistr import detr_to_vistr_init, vistr_to_ifr

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


CONVERTERS: Dict[str, Callable[..., Dict[str, Tensor]]] = {
    "swin": swin_official_to_d2,
    "torchvision-resnet": torchvision_resnet_to_d2,
    "pvt-v2": pvt_v2_official_to_d2,  # TeViT's MsgShifT from ImageNet PVTv2 weights
    # Whole VisTR models (full names): its COCO DETR initialisation, its trained models.
    "detr-vistr": detr_to_vistr_init,
    "vistr": vistr_to_ifr,
    # Whole TeViT models (full names): its trained models, the COCO QueryInst it starts from.
    "tevit": tevit_to_ifr,
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
    dropped: Dict[str, str] = {}
    backbone_state = converter(state_dict, source=input_path, dropped=dropped)
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
        log(
            conversion_summary(
                input_path, output_path, len(state_dict), checkpoint, dropped, converter
            )
        )
    return checkpoint


def conversion_summary(
    input_path: str,
    output_path: str,
    num_read: int,
    checkpoint: dict,
    dropped: Dict[str, str],
    converter: Callable,
) -> str:
    """One line: tensors read and written, and every dropped group with its reason."""
    written = len(checkpoint["model"])
    note = getattr(converter, "written_note", "")
    line = f"{input_path}: {num_read} tensors read, {written} written" + (
        f" ({note})" if note else ""
    )
    if dropped:
        reasons = collections.Counter(dropped.values())
        line += f"; {len(dropped)} left out: " + "; ".join(
            f"{count} {reason}" for reason, count in sorted(reasons.items())
        )
    else:
        line += "; nothing left out"
    return f"{line} -> {output_path}"
