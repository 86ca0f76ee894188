"""Checkpoints: atomic saves, safe loads, and initialisation from Mask2Former weights.

Weights from outside are untrusted. Without ``allow_pickle`` this checkpointer reads
- ``.pth``/``.pt``: ``torch.load(weights_only=True)`` (tensors and plain containers only),
- ``.safetensors``,
- ``.pkl`` (Detectron2 / Mask2Former model zoo): a restricted unpickler that admits only
  numpy arrays and plain containers, so no code in the file can run.
Anything else needs ``allow_pickle=True`` (``MODEL.WEIGHTS_ALLOW_PICKLE True``).
"""
import collections
import logging
import os
from typing import Any, Dict, Iterable, List

from detectron2.checkpoint import DetectionCheckpointer

from .utils.atomic_io import atomic_torch_save, atomic_write_text
from .utils.tensor_io import (  # noqa: F401  (re-exported: the checkpoint layer's errors)
    CheckpointFormatError,
    UnsafeCheckpointError,
    load_arrays_pickle,
    load_tensor_file,
)

logger = logging.getLogger(__name__)

# Mask2Former(-VIS) module prefixes -> this project's modules.
MASK2FORMER_PREFIXES = {
    "sem_seg_head.pixel_decoder.": "pixel_decoder.",
    "sem_seg_head.predictor.": "transformer_decoder.",
}
_IGNORED_PREFIXES = ("criterion.",)


def rename_mask2former_keys(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """Map Mask2Former module names onto IFR's; drop keys of training-only modules."""
    renamed = collections.OrderedDict()
    for key, value in state_dict.items():
        if key.startswith(_IGNORED_PREFIXES):
            continue
        for old, new in MASK2FORMER_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


def _group_by_module(keys: Iterable[str], depth: int = 3) -> List[str]:
    counts = collections.Counter(".".join(k.split(".")[:depth]) for k in keys)
    return [f"{prefix} ({n})" for prefix, n in sorted(counts.items())]


class IFRCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with atomic saves, safe loading and Mask2Former key mapping."""

    def __init__(self, model, save_dir: str = "", *, allow_pickle: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.allow_pickle = allow_pickle

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", path)
        atomic_torch_save(data, path)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    def load(self, path: str, checkpointables=None) -> Dict[str, Any]:
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint {path!r} does not exist (MODEL.WEIGHTS)")
        return super().load(path, checkpointables=checkpointables)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        if filename.endswith(".pkl"):
            return super()._load_file(filename) if self.allow_pickle else self._load_pkl(filename)
        data = load_tensor_file(
            filename, self.allow_pickle, "set MODEL.WEIGHTS_ALLOW_PICKLE True"
        )
        return data if "model" in data else {"model": data}

    def _load_pkl(self, filename: str) -> Dict[str, Any]:
        try:
            data = load_arrays_pickle(filename)
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(
                f"{filename}: {e}. If you trust the file, set MODEL.WEIGHTS_ALLOW_PICKLE True."
            ) from e
        if "model" in data and "__author__" in data:
            self.logger.info("Reading a file from '%s'", data["__author__"])
            return data
        if "blobs" in data:  # Caffe2 detection model zoo
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def _load_model(self, checkpoint: Dict[str, Any]):
        checkpoint["model"] = rename_mask2former_keys(checkpoint["model"])
        provided = set(checkpoint["model"])
        incompatible = super()._load_model(checkpoint)
        self._log_load_summary(provided, incompatible)
        return incompatible

    def _log_load_summary(self, provided, incompatible) -> None:
        model_keys = set(self.model.state_dict())
        mismatched = {k for k, _, _ in incompatible.incorrect_shapes}
        loaded = (provided & model_keys) - mismatched
        self.logger.info("Loaded %d of %d model tensors.", len(loaded), len(model_keys))
        not_loaded = model_keys - loaded
        if not_loaded:
            self.logger.info(
                "Not loaded (keep their initialisation): %s",
                ", ".join(_group_by_module(not_loaded)),
            )
