"""Class probabilities from class logits, for the two classification heads of the models.

- ``"sigmoid"`` (IFR): K independent sigmoid classes, no "no-object" column.
- ``"softmax"`` (Mask2Former-VIS): softmax over K classes + a last "no-object" column,
  which is dropped after the softmax.
"""

import torch

CLASS_ACTIVATIONS = ("sigmoid", "softmax")


def class_probabilities(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """
    Args:
        logits: (..., K) for ``"sigmoid"``, (..., K + 1) for ``"softmax"``.
        activation: one of ``CLASS_ACTIVATIONS``.

    Returns:
        (..., K) probability of each real class.
    """
    if activation == "sigmoid":
        return logits.sigmoid()
    if activation == "softmax":
        return logits.softmax(-1)[..., :-1]
    raise ValueError(f"class activation must be one of {CLASS_ACTIVATIONS}, got {activation!r}")
