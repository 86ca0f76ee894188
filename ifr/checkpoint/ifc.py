"""Official IFC checkpoints (``detr.*`` names, e.g. its YouTube-VIS R-50/R-101 models) ->
this project's module names, every tensor used; ``IFC.rename_checkpoint_keys`` applies it to
every state dict the checkpointer loads."""

import re
from typing import Any, Dict, List, Tuple

__all__ = ["rename_official_ifc_keys"]


def _official_ifc_renames() -> List[Tuple["re.Pattern[str]", str]]:
    """(regex, replacement) from the official IFC module names to this codebase's."""
    dec = "transformer_decoder."
    renames = [
        (r"^detr\.backbone\.0\.backbone\.", "backbone."),
        (r"^detr\.input_proj\.", "pixel_decoder.input_proj."),
        (r"^detr\.mask_head\.(adapter[12])\.", r"pixel_decoder.\1."),
        (r"^detr\.mask_head\.convert_to_weight\.", dec + "mask_embed."),
        (r"^detr\.mask_head\.", dec + "mask_head."),
        (r"^detr\.(class_embed|query_embed)\.", dec + r"\1."),
        (r"^detr\.transformer\.memory_bus$", dec + "encoder.memory_tokens"),
        (r"^detr\.transformer\.memory_pos$", dec + "encoder.memory_pos"),
        (r"^detr\.transformer\.encoder\.out_norm\.", dec + "encoder.frame_norm."),
        (r"^detr\.transformer\.encoder\.bus_norm\.", dec + "encoder.memory_norm."),
        (r"^detr\.transformer\.clip_decoder\.norm\.", dec + "decoder_norm."),
    ]
    # DETR encoder layers: self_attn + norm1, then linear1/linear2 + norm2.
    for official, ours in (("enc_layers", "receive"), ("bus_layers", "communicate")):
        layer = rf"^detr\.transformer\.encoder\.{official}\.(\d+)\."
        renames += [
            (layer + r"self_attn\.", dec + f"encoder.{ours}_attention." + r"\1.self_attn."),
            (layer + r"norm1\.", dec + f"encoder.{ours}_attention." + r"\1.norm."),
            (layer + r"(linear[12])\.", dec + f"encoder.{ours}_ffn." + r"\1.\2."),
            (layer + r"norm2\.", dec + f"encoder.{ours}_ffn." + r"\1.norm."),
        ]
    # DETR decoder layers: self_attn + norm1, multihead_attn + norm2, linear1/2 + norm3.
    layer = r"^detr\.transformer\.clip_decoder\.layers\.(\d+)\."
    renames += [
        (layer + r"self_attn\.", dec + r"self_attention_layers.\1.self_attn."),
        (layer + r"norm1\.", dec + r"self_attention_layers.\1.norm."),
        (layer + r"multihead_attn\.", dec + r"cross_attention_layers.\1.multihead_attn."),
        (layer + r"norm2\.", dec + r"cross_attention_layers.\1.norm."),
        (layer + r"(linear[12])\.", dec + r"ffn_layers.\1.\2."),
        (layer + r"norm3\.", dec + r"ffn_layers.\1.norm."),
    ]
    return [(re.compile(pattern), replacement) for pattern, replacement in renames]


_OFFICIAL_IFC_RENAMES = _official_ifc_renames()


def rename_official_ifc_keys(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """Official IFC names (``detr.transformer.encoder.bus_layers.0.norm1.weight``) -> this
    codebase's (``transformer_decoder.encoder.communicate_attention.0.norm.weight``); other
    names (this codebase's own checkpoints, ImageNet backbones) are kept."""
    renamed = {}
    for key, value in state_dict.items():
        for pattern, replacement in _OFFICIAL_IFC_RENAMES:
            new_key, count = pattern.subn(replacement, key)
            if count:
                key = new_key
                break
        renamed[key] = value
    return renamed
