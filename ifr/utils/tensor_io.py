"""Reading weight files without running code in them (checkpoints are untrusted input).

- ``.safetensors``: tensors only, by construction;
- ``torch.save`` files (``.pth``/``.pt``/``.bin``): ``torch.load(weights_only=True)``;
- Detectron2 / model-zoo ``.pkl``: an unpickler that admits only numpy arrays and plain
  containers.

Every failure is one exception naming the file: :class:`UnsafeCheckpointError` when the
file holds objects that loading was not allowed to build, :class:`CheckpointFormatError`
when it is not a readable weight file at all (text, truncated, empty).
"""

import pickle
from typing import Any

import torch

from .errors import UserInputError

__all__ = [
    "CheckpointFormatError",
    "UnsafeCheckpointError",
    "load_arrays_pickle",
    "load_tensor_file",
]

_SAFE_PICKLE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how protocol-2 pickles store bytes
}


class UnsafeCheckpointError(pickle.UnpicklingError, UserInputError):
    """A checkpoint holds objects other than tensors/arrays and loading was not allowed."""


class CheckpointFormatError(UserInputError):
    """A weight file that cannot be read (not a checkpoint, truncated, empty) or does not
    hold what a checkpoint holds (a dict of named tensors)."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_PICKLE_GLOBALS:
            raise UnsafeCheckpointError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def load_arrays_pickle(path: str) -> Any:
    """Read a Detectron2-style ``.pkl`` checkpoint admitting only numpy arrays."""
    with open(path, "rb") as f:
        try:
            return _ArraysOnlyUnpickler(f, encoding="latin1").load()
        except UnsafeCheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
            raise CheckpointFormatError(
                f"{path}: not a readable pickle file, or truncated ({_first_line(e)})"
            ) from e


def load_tensor_file(path: str, allow_pickle: bool, opt_in: str) -> Any:
    """Contents of a ``.safetensors`` or ``torch.save`` file, admitting only tensors and plain
    containers unless ``allow_pickle``; ``opt_in`` tells the user how to allow more."""
    if path.endswith(".safetensors"):
        return _load_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        if not allow_pickle and "weights_only" in str(e):
            raise UnsafeCheckpointError(
                f"{path} holds pickled objects other than tensors. If you trust the file, "
                f"{opt_in}. ({_unpickling_reason(str(e))})"
            ) from e
        raise _format_error(path, e) from e
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise _format_error(path, e) from e


def _load_safetensors(path: str) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except SafetensorError as e:
        raise CheckpointFormatError(f"{path}: not a readable safetensors file ({e})") from e


def _format_error(path: str, error: BaseException) -> CheckpointFormatError:
    return CheckpointFormatError(
        f"{path}: not a readable torch checkpoint (not written by torch.save, truncated or "
        f"empty): {_first_line(error)}"
    )


def _first_line(error: BaseException) -> str:
    """``Type: first sentence`` of an error's message (torch's run to several lines)."""
    text = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _unpickling_reason(message: str) -> str:
    """The line of torch's weights-only error that names what was refused."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    named = [line for line in lines if "WeightsUnpickler error" in line]
    return (named or lines or [message])[0]
