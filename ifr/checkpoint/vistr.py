"""VisTR's checkpoints (Epiphqny/VisTR layout) -> this project's module names.

VisTR initialises from COCO-pretrained DETR segmentation weights at d = 384 (its
``r50_pretrained.pth`` / ``r101_pretrained.pth``: ``detr.*`` or ``vistr.*`` model keys, the
mask head at the top level), dropping ``class_embed`` and ``query_embed`` (other classes,
other queries). Its trained models add ``insmask_head.*`` (the 3-D fusion). Both convert
here (``tools/convert_pretrained.py --kind detr-vistr`` / ``--kind vistr``) into a
checkpoint of full model names that ``MODEL.WEIGHTS`` loads through the safe loader; a
trained model's file may also be given to ``MODEL.WEIGHTS`` as it is
(``VisTR.rename_checkpoint_keys`` converts it on load).

The class head of a trained VisTR model has ``num_classes + 1`` = 42 rows for YouTube-VIS
(its ``num_classes = 41``: category ids 1..40 index their rows directly, row 0 is never a
target, row 41 is no-object); here the K + 1 rows are the contiguous classes 0..K-1 and
no-object, so row 0 is dropped. Not converted: DETR's ``mask_head.lay5.*`` and
``mask_head.out_lay.*`` (a plain last convolution and a single-channel output that VisTR's
model does not have: its ``load_state_dict(strict=False)`` leaves them out too).
"""

import re
from typing import Dict

from torch import Tensor

from ..utils.tensor_io import CheckpointFormatError
from .backbones import Dropped, record_drop, torchvision_resnet_to_d2

_DECODER = "transformer_decoder."
_MASK_HEAD = _DECODER + "mask_head."
_ENCODER_LAYER = re.compile(r"^transformer\.encoder\.layers\.(\d+)\.(\w+)\.(.+)$")
_DECODER_LAYER = re.compile(r"^transformer\.decoder\.layers\.(\d+)\.(\w+)\.(.+)$")
# DETR layer submodule -> (this project's layer list, submodule)
_ENCODER_PARTS = {
    "self_attn": ("encoder_self_attention_layers", "self_attn"),
    "norm1": ("encoder_self_attention_layers", "norm"),
    "linear1": ("encoder_ffn_layers", "linear1"),
    "linear2": ("encoder_ffn_layers", "linear2"),
    "norm2": ("encoder_ffn_layers", "norm"),
}
_DECODER_PARTS = {
    "self_attn": ("self_attention_layers", "self_attn"),
    "norm1": ("self_attention_layers", "norm"),
    "multihead_attn": ("cross_attention_layers", "multihead_attn"),
    "norm2": ("cross_attention_layers", "norm"),
    "linear1": ("ffn_layers", "linear1"),
    "linear2": ("ffn_layers", "linear2"),
    "norm3": ("ffn_layers", "norm"),
}
_DROPPED = ("mask_head.lay5.", "mask_head.out_lay.")
# VisTR's class head rows: row 0 (category id 0) is never a target.
_UNUSED_CLASS_ROWS = 1
# VisTR's own (trained) models only; dropped when initialising from DETR.
_DETR_ONLY_DROPPED = ("class_embed.", "query_embed.")


def is_official_vistr(state_dict: Dict[str, Tensor]) -> bool:
    """Whether ``state_dict`` has the official VisTR / DETR layout (its backbone at
    ``[vistr.|detr.]backbone.0.body.*``)."""
    return any(re.match(r"^(detr\.|vistr\.)?backbone\.0\.body\.", name) for name in state_dict)


def vistr_to_ifr(
    state_dict: Dict[str, Tensor], source: str = "checkpoint", dropped: Dropped = None
) -> Dict[str, Tensor]:
    """A VisTR model (``vistr.*``, ``bbox_attention.*``, ``mask_head.*``,
    ``insmask_head.*``) -> full names of this project's ``VisTR`` model."""
    converted: Dict[str, Tensor] = {}
    backbone = {}
    for name, tensor in state_dict.items():
        name = re.sub(r"^(detr|vistr)\.", "", name)
        if name.startswith(_DROPPED):
            record_drop(dropped, name, "DETR's mask output layers, which VisTR does not have")
            continue
        if name.startswith("backbone.0.body."):
            backbone[name[len("backbone.0.body.") :]] = tensor
            continue
        new_name = _rename(name)
        if new_name is None:
            raise CheckpointFormatError(f"{source}: unexpected key '{name}' for a VisTR checkpoint")
        if name.startswith("class_embed."):
            tensor = tensor[_UNUSED_CLASS_ROWS:]
        converted[new_name] = tensor
    if not backbone or not any(k.startswith(_DECODER + "transformer.") for k in converted):
        raise CheckpointFormatError(
            f"{source}: not a DETR/VisTR checkpoint (no backbone.0.body.* or transformer.*)"
        )
    for name, tensor in torchvision_resnet_to_d2(backbone, source, dropped).items():
        converted["backbone." + name] = tensor
    return converted


def detr_to_vistr_init(
    state_dict: Dict[str, Tensor], source: str = "checkpoint", dropped: Dropped = None
) -> Dict[str, Tensor]:
    """VisTR's initialisation from its COCO DETR weights: ``vistr_to_ifr`` without the
    class head and the query embeddings, as VisTR's ``main.py`` deletes them."""
    converted = vistr_to_ifr(state_dict, source, dropped)
    coco_only = tuple(_DECODER + prefix for prefix in _DETR_ONLY_DROPPED)
    for name in converted:
        if name.startswith(coco_only):
            record_drop(dropped, name, "DETR's COCO class head and queries (VisTR starts anew)")
    return {k: v for k, v in converted.items() if not k.startswith(coco_only)}


# Both return full model names (``convert_checkpoint`` adds no ``backbone.`` prefix).
vistr_to_ifr.full_model = True
detr_to_vistr_init.full_model = True


def _rename(name: str):
    """A non-backbone VisTR name -> this project's, None if unknown."""
    for pattern, parts in ((_ENCODER_LAYER, _ENCODER_PARTS), (_DECODER_LAYER, _DECODER_PARTS)):
        match = pattern.match(name)
        if match and match.group(2) in parts:
            layers, module = parts[match.group(2)]
            return f"{_DECODER}transformer.{layers}.{match.group(1)}.{module}.{match.group(3)}"
    simple = {
        "transformer.encoder.norm.": _DECODER + "transformer.encoder_norm.",
        "transformer.decoder.norm.": _DECODER + "transformer.decoder_norm.",
        "input_proj.": _DECODER + "input_proj.",
        "class_embed.": _DECODER + "class_embed.",
        "bbox_embed.": _DECODER + "bbox_embed.",
        "query_embed.": _DECODER + "query_embed.",
        "bbox_attention.": _MASK_HEAD + "bbox_attention.",
        "mask_head.": _MASK_HEAD + "mask_head.",
        "insmask_head.": _MASK_HEAD + "insmask_head.layers.",
    }
    for old, new in simple.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return None
