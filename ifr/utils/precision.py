"""Compute precision of the models (``MODEL.PRECISION``): the names, their dtypes, the
autocast context a model runs its network under, and the cast back to float32 of what
leaves it (losses, matching and post-processing stay in float32)."""

import contextlib
from typing import Any, ContextManager

import torch

# MODEL.PRECISION -> the autocast dtype ("fp32": no autocast).
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str, key: str = "MODEL.PRECISION") -> str:
    """``precision`` if it names one of PRECISIONS; ValueError naming ``key`` otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"{key} must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def precision_autocast(device_type: str, precision: str) -> ContextManager:
    """``torch.autocast`` in the dtype of ``precision`` on ``device_type`` ("cuda",
    "cpu"); for "fp32" a context that changes nothing, so an enclosing autocast (e.g.
    Detectron2's AMPTrainer) still applies."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=PRECISIONS[precision])


def float32_autocast_off(device_type: str) -> ContextManager:
    """Autocast off on ``device_type``: what runs inside computes in its inputs' dtype."""
    return torch.autocast(device_type=device_type, enabled=False)


def autocast_dtype(device_type: str) -> torch.dtype:
    """The dtype autocast computes in on ``device_type`` now; float32 where it is off."""
    if not torch.is_autocast_enabled(device_type):
        return torch.float32
    return torch.get_autocast_dtype(device_type)


def to_float32(value: Any) -> Any:
    """Every floating tensor in ``value`` (nested dicts, lists, tuples) cast to float32
    (differentiably); other leaves unchanged. Containers are rebuilt, not modified."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: to_float32(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_float32(v) for v in value]
    if type(value) is tuple:
        return tuple(to_float32(v) for v in value)
    return value
