"""Class probabilities from class logits, for the two classification heads of the models.

- ``"sigmoid"`` (IFR): K independent sigmoid classes, no "no-object" column.
- ``"softmax"`` (Mask2Former-VIS): softmax over K classes + a last "no-object" column,
  which is dropped after the softmax.

IFR and Mask2Former-VIS can swap their class losses (``MODEL.VIS.CLASS_LOSS``, an
ablation of what separates the two systems): "focal" is the sigmoid head, "softmax_ce" the
softmax head; "" keeps the system's own.
"""

import torch

CLASS_ACTIVATIONS = ("sigmoid", "softmax")
# MODEL.VIS.CLASS_LOSS -> the class activation it trains.
CLASS_LOSS_ACTIVATIONS = {"focal": "sigmoid", "softmax_ce": "softmax"}


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


def configured_class_activation(cfg, own_activation: str) -> str:
    """The class activation ``MODEL.VIS.CLASS_LOSS`` asks for ("focal": "sigmoid",
    "softmax_ce": "softmax"), or ``own_activation``, the system's own, when it is ""."""
    class_loss = cfg.MODEL.VIS.CLASS_LOSS
    if class_loss == "":
        return own_activation
    if class_loss not in CLASS_LOSS_ACTIVATIONS:
        choices = ", ".join(repr(k) for k in ("", *CLASS_LOSS_ACTIVATIONS))
        raise ValueError(f"MODEL.VIS.CLASS_LOSS must be one of {choices}; got {class_loss!r}")
    return CLASS_LOSS_ACTIVATIONS[class_loss]
