"""Lowest model layer: pure tensor functions shared by the model (``ifr.modeling``) and by
inference (``ifr.inference``). It imports nothing from ``ifr`` but ``ifr.utils``, so both can
use it without importing each other (see ``tests/test_layering.py``)."""

from .classification import CLASS_ACTIVATIONS, class_probabilities
from .matching_cost import DICE_SMOOTH, batch_dice_cost, batch_sigmoid_ce_cost, clip_matching_cost
from .point_sampling import sample_clip_points, sample_frame_points

__all__ = [
    "CLASS_ACTIVATIONS",
    "DICE_SMOOTH",
    "batch_dice_cost",
    "batch_sigmoid_ce_cost",
    "class_probabilities",
    "clip_matching_cost",
    "sample_clip_points",
    "sample_frame_points",
]
