"""The checkpointer: atomic saves, safe loads, Mask2Former-named weights, class names.

See the package docstring (``ifr.checkpoint``)."""

import collections
import logging
import os
from typing import Any, Dict, Iterable, List, Optional

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts

from ..utils.atomic_io import atomic_torch_save, atomic_write_text
from ..utils.errors import UserInputError
from ..utils.tensor_io import (  # noqa: F401  (re-exported: the checkpoint layer's errors)
    CheckpointFormatError,
    UnsafeCheckpointError,
    load_arrays_pickle,
    load_tensor_file,
)
from .mask2former import LOSS_PREFIXES, rename_mask2former_keys

logger = logging.getLogger(__name__)

# Extras saved with every checkpoint of a training run (see ``extra_data``).
CLASS_NAMES_KEY = "class_names"
CLASS_COLORS_KEY = "class_colors"


class IncompleteCheckpointError(UserInputError):
    """Weights that leave model tensors unloaded where every tensor must load."""


def _group_by_module(keys: Iterable[str], depth: int = 3) -> List[str]:
    """``["a.b.weight", "a.b.bias", "c.weight"]`` -> ``["a.b (2)", "c (1)"]``: tensor names
    without the parameter name, cut to ``depth`` levels, with counts."""
    counts = collections.Counter(".".join(k.split(".")[:-1][:depth]) or k for k in keys)
    return [f"{prefix} ({n})" for prefix, n in sorted(counts.items())]


class IFRCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with atomic saves, safe loading and Mask2Former key mapping."""

    def __init__(
        self,
        model,
        save_dir: str = "",
        *,
        allow_pickle: bool = False,
        require_complete: bool = False,
        extra_data: Optional[Dict[str, Any]] = None,
        **kwargs,
    ):
        """``require_complete``: refuse weights that leave a model tensor unloaded (missing
        or of another shape). ``extra_data``: saved in every checkpoint (class names)."""
        super().__init__(model, save_dir, **kwargs)
        self.allow_pickle = allow_pickle
        self.require_complete = require_complete
        self.extra_data = dict(extra_data or {})
        self._loading_path = ""

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(self.extra_data)
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
        self._loading_path = path
        return super().load(path, checkpointables=checkpointables)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        if filename.endswith(".pkl"):
            loaded = super()._load_file(filename) if self.allow_pickle else self._load_pkl(filename)
        else:
            loaded = load_tensor_file(
                filename, self.allow_pickle, "set MODEL.WEIGHTS_ALLOW_PICKLE True"
            )
            if isinstance(loaded, dict) and "model" not in loaded and "state_dict" in loaded:
                loaded = {"model": loaded["state_dict"]}  # mmdetection's files (TeViT)
            elif not (isinstance(loaded, dict) and "model" in loaded):
                loaded = {"model": loaded}
        check_named_tensors(loaded["model"], filename)
        return loaded

    def _load_pkl(self, filename: str) -> Dict[str, Any]:
        try:
            data = load_arrays_pickle(filename)
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(
                f"{filename}: {e}. If you trust the file, set MODEL.WEIGHTS_ALLOW_PICKLE True."
            ) from e
        if not isinstance(data, dict):
            raise CheckpointFormatError(
                f"{filename}: holds a {type(data).__name__}, not a dict of named arrays"
            )
        if "model" in data:
            self.logger.info("Reading a file from '%s'", data.get("__author__", "unknown"))
            return data
        if "blobs" in data:  # Caffe2 detection model zoo
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def _load_model(self, checkpoint: Dict[str, Any]):
        loss_constants = sorted(k for k in checkpoint["model"] if k.startswith(LOSS_PREFIXES))
        checkpoint["model"] = rename_mask2former_keys(checkpoint["model"])
        # A system whose official checkpoints name modules otherwise maps them (IFC).
        rename = getattr(self.model, "rename_checkpoint_keys", None)
        if rename is not None:
            checkpoint["model"] = rename(checkpoint["model"])
        self._align_by_heuristics(checkpoint)
        provided = set(checkpoint["model"])
        incompatible = super()._load_model(checkpoint)
        not_loaded = self._log_load_summary(provided, incompatible, loss_constants)
        if not_loaded and self.require_complete:
            raise IncompleteCheckpointError(
                _incomplete_message(self._loading_path, not_loaded, incompatible, self.model)
            )
        return incompatible

    def _align_by_heuristics(self, checkpoint: Dict[str, Any]) -> None:
        """Backbone-only files (Detectron2's ImageNet R-50/R-101 ``.pkl``, Caffe2 blobs) name
        tensors without the model's prefixes (``res2.0.conv1.weight``): rename them to the
        model's names here, with Detectron2's matching heuristics, so that the load summary
        counts what they provide (Detectron2 would do it later, after the count)."""
        if checkpoint.pop("matching_heuristics", False):
            self._convert_ndarray_to_tensor(checkpoint["model"])
            checkpoint["model"] = align_and_update_state_dicts(
                self.model.state_dict(),
                checkpoint["model"],
                c2_conversion=checkpoint.get("__author__") == "Caffe2",
            )

    def _log_load_summary(self, provided, incompatible, loss_constants=()) -> List[str]:
        """Logs one line: how many model tensors loaded, which did not (they keep their
        initialisation), and which of the file's tensors went unused (no such model tensor,
        another shape, or ``loss_constants``: the loss's constants, which the config sets);
        returns the model tensors that did not load (sorted)."""
        model_keys = set(self.model.state_dict())
        mismatched = {k for k, _, _ in incompatible.incorrect_shapes}
        loaded = (provided & model_keys) - mismatched
        not_loaded = sorted(model_keys - loaded)
        parts = [
            f"{getattr(self, '_loading_path', 'weights')}: loaded {len(loaded)} of "
            f"{len(model_keys)} model tensors"
        ]
        if not_loaded:
            parts.append(f"not loaded (keep their initialisation): {_grouped(not_loaded)}")
        unused = sorted(provided - model_keys)
        if unused:
            parts.append(f"unused, not in the model: {_grouped(unused)}")
        if mismatched:
            parts.append(f"unused, another shape: {_grouped(sorted(mismatched))}")
        if loss_constants:
            parts.append(f"unused, loss constants set by the config: {_grouped(loss_constants)}")
        log = self.logger.warning if model_keys and not loaded else self.logger.info
        log("; ".join(parts))
        return not_loaded


def _grouped(keys: List[str]) -> str:
    return ", ".join(_group_by_module(keys))


def check_named_tensors(weights: Any, path: str) -> None:
    """A checkpoint's ``model`` entry must be a non-empty dict of name -> tensor/array;
    raises CheckpointFormatError naming ``path`` and the first entry that is not."""
    if not isinstance(weights, dict):
        raise CheckpointFormatError(
            f"{path}: holds a {type(weights).__name__} where a checkpoint holds a dict of "
            "named tensors"
        )
    if not weights:
        raise CheckpointFormatError(f"{path}: holds no tensors")
    for name, value in weights.items():
        if not isinstance(name, str) or not isinstance(value, (torch.Tensor, np.ndarray)):
            raise CheckpointFormatError(
                f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor"
            )


def _incomplete_message(path: str, not_loaded: List[str], incompatible, model) -> str:
    total = len(model.state_dict())
    shapes = [
        f"{key} {tuple(file_shape)} in the file, {tuple(model_shape)} in the model"
        for key, file_shape, model_shape in incompatible.incorrect_shapes[:3]
    ]
    shape_text = f" (shapes differ: {'; '.join(shapes)})" if shapes else ""
    groups = _group_by_module(not_loaded, depth=2 if len(not_loaded) > 20 else 3)
    if len(groups) > 12:
        groups = groups[:12] + [f"and {len(groups) - 12} more modules"]
    return (
        f"{path}: {len(not_loaded)} of {total} model tensors are not in it or have another "
        f"shape{shape_text}: {', '.join(groups)}. The weights do not fit "
        "the model of this config (another NUM_CLASSES or backbone, or the wrong file): pass "
        "the right MODEL.WEIGHTS, or set MODEL.WEIGHTS_ALLOW_PARTIAL True to run them with "
        "those tensors at their random initialisation."
    )


def load_inference_weights(model: torch.nn.Module, cfg) -> Dict[str, Any]:
    """MODEL.WEIGHTS into ``model`` for evaluation or the demo.

    Every model tensor must load unless MODEL.WEIGHTS_ALLOW_PARTIAL (else
    IncompleteCheckpointError listing the rest). Without weights the model stays untrained,
    with a warning. Returns the checkpoint's extras (``class_names``, ...; empty without
    weights)."""
    if not cfg.MODEL.WEIGHTS:
        logger.warning(
            "MODEL.WEIGHTS is empty: this is an UNTRAINED model with random weights and its "
            "predictions mean nothing. Pass MODEL.WEIGHTS path/to/model_final.pth."
        )
        return {}
    checkpointer = IFRCheckpointer(
        model,
        allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE,
        require_complete=not cfg.MODEL.WEIGHTS_ALLOW_PARTIAL,
    )
    return checkpointer.load(cfg.MODEL.WEIGHTS, checkpointables=[])
