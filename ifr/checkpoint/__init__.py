"""Checkpoints: atomic saves, safe loads, and every conversion of outside weights.

Weights from outside are untrusted. Without ``allow_pickle`` this checkpointer reads
- ``.pth``/``.pt``: ``torch.load(weights_only=True)`` (tensors and plain containers only),
- ``.safetensors``,
- ``.pkl`` (Detectron2 / Mask2Former model zoo): a restricted unpickler that admits only
  numpy arrays and plain containers, so no code in the file can run.
Anything else needs ``allow_pickle=True`` (``MODEL.WEIGHTS_ALLOW_PICKLE True``). A file that
is not a checkpoint (text, truncated, a pickled list) raises ``CheckpointFormatError`` naming
it. Evaluation and the demo load with ``require_complete``: weights that leave model tensors
unloaded are refused (:func:`load_inference_weights`).

Checkpoints written here also hold ``extra_data``: the training dataset's class names and
colours (``class_names``, ``class_colors``), returned by ``load`` with the other extras.

Conversions of outside weights to this project's module names, one module each:
- ``mask2former``: Mask2Former(-VIS) checkpoints (applied by the checkpointer);
- ``ifc``: official IFC checkpoints (applied through ``IFC.rename_checkpoint_keys``);
- ``vistr``: VisTR's trained models and its COCO DETR initialisation (trained models also
  through ``VisTR.rename_checkpoint_keys``);
- ``tevit``: TeViT's trained models and the COCO QueryInst it starts from (also through
  ``TeViT.rename_checkpoint_keys``);
- ``backbones``: ImageNet Swin, torchvision ResNet, PVTv2 (TeViT's MsgShifT);
- ``files``: reading such a file safely and writing the converted checkpoint
  (``tools/convert_pretrained.py``).
"""

from .checkpointer import (
    CLASS_COLORS_KEY,
    CLASS_NAMES_KEY,
    CheckpointFormatError,
    IFRCheckpointer,
    IncompleteCheckpointError,
    UnsafeCheckpointError,
    check_named_tensors,
    load_arrays_pickle,
    load_inference_weights,
    load_tensor_file,
)
from .mask2former import MASK2FORMER_PREFIXES, rename_mask2former_keys

__all__ = [
    "CLASS_COLORS_KEY",
    "CLASS_NAMES_KEY",
    "CheckpointFormatError",
    "IFRCheckpointer",
    "IncompleteCheckpointError",
    "MASK2FORMER_PREFIXES",
    "UnsafeCheckpointError",
    "check_named_tensors",
    "load_arrays_pickle",
    "load_inference_weights",
    "load_tensor_file",
    "rename_mask2former_keys",
]
