"""Mask2Former(-VIS) checkpoints (model-zoo ``.pkl`` and official ``.pth``) -> this
project's module names: its ``sem_seg_head`` parts become ``pixel_decoder`` and
``transformer_decoder``, so COCO Mask2Former weights initialise IFR, Mask2Former-VIS and the
other Mask2Former-style systems with every shared tensor used."""

import collections
from typing import Any, Dict

__all__ = ["LOSS_PREFIXES", "MASK2FORMER_PREFIXES", "rename_mask2former_keys"]

# Mask2Former(-VIS) module prefixes -> this project's modules.
MASK2FORMER_PREFIXES = {
    "sem_seg_head.pixel_decoder.": "pixel_decoder.",
    "sem_seg_head.predictor.": "transformer_decoder.",
}
# Training constants of the loss (e.g. ``criterion.empty_weight``), set by the config here.
LOSS_PREFIXES = ("criterion.",)

# Some Mask2Former model-zoo files name the learned query features ``static_query``; the
# official decoders rename it to ``query_feat`` when they load a state dict.
_MASK2FORMER_QUERY_RENAMES = {
    "transformer_decoder.static_query.": "transformer_decoder.query_feat.",
}


def rename_mask2former_keys(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """Map Mask2Former module names onto IFR's (and ``static_query`` onto ``query_feat``,
    as the official decoders do); drop keys of training-only modules."""
    renamed = collections.OrderedDict()
    for key, value in state_dict.items():
        if key.startswith(LOSS_PREFIXES):
            continue
        for old, new in MASK2FORMER_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        for old, new in _MASK2FORMER_QUERY_RENAMES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        renamed[key] = value
    return renamed
