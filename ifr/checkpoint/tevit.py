"""TeViT's checkpoints (hustvl/TeViT, mmdetection layout) -> this project's module names.

A trained TeViT file (``{"meta", "state_dict", ...}``) names its parts as mmdetection:
``backbone.layers.*`` (MsgShifT in mmdetection's PVTv2 layout), ``neck.*`` (FPN),
``rpn_head.*`` (the learnt proposals), ``roi_head.bbox_head.{i}.*`` / ``mask_head.{i}.*``
(the STQI stages). The COCO QueryInst model its README starts from (``load_from``) has the
same layout without ``msg_tokens`` and with 80 classes (its class-shaped tensors then do
not fit a YouTube-VIS model and are reported as such by the load summary).

Differences of layout, undone here (mmdetection's ``pvt_convert`` does the opposite):
- the backbone's attention is one ``in_proj`` of 3C rows: the first C rows are ``q``, the
  other 2C ``kv``;
- the backbone's MixFFN linear layers are 1x1 convolutions: (out, in, 1, 1) -> (out, in);
- mmcv's ``ConvModule`` / ``FFN`` / ``MultiheadAttention`` wrappers add a level
  (``conv.``, ``bn.``, ``layers.0.0.``, ``attn.``) that the plain modules here do not have.
``tevit_to_ifr`` serves ``tools/convert_pretrained.py --kind tevit`` and
``TeViT.rename_checkpoint_keys`` (so ``MODEL.WEIGHTS`` may name the official file).
"""

import re
from typing import Dict

from torch import Tensor

from ..utils.tensor_io import CheckpointFormatError
from .backbones import Dropped

__all__ = ["is_official_tevit", "tevit_to_ifr"]

_DECODER = "transformer_decoder."
# (regex on an official name, replacement) for everything but the attention split.
_RENAMES = [
    (r"^backbone\.layers\.(\d+)\.0\.projection\.", lambda m: f"backbone.patch_embed{_s(m)}.proj."),
    (r"^backbone\.layers\.(\d+)\.0\.norm\.", lambda m: f"backbone.patch_embed{_s(m)}.norm."),
    (r"^backbone\.layers\.(\d+)\.2\.", lambda m: f"backbone.norm{_s(m)}."),
    (
        r"^backbone\.layers\.(\d+)\.1\.(\d+)\.(norm1|norm2)\.",
        lambda m: f"backbone.block{_s(m)}.{m.group(2)}.{m.group(3)}.",
    ),
    (
        r"^backbone\.layers\.(\d+)\.1\.(\d+)\.attn\.(sr|norm)\.",
        lambda m: f"backbone.block{_s(m)}.{m.group(2)}.attn.{m.group(3)}.",
    ),
    (
        r"^backbone\.layers\.(\d+)\.1\.(\d+)\.attn\.attn\.out_proj\.",
        lambda m: f"backbone.block{_s(m)}.{m.group(2)}.attn.proj.",
    ),
    (
        r"^backbone\.layers\.(\d+)\.1\.(\d+)\.ffn\.layers\.(0|1|4)\.",
        lambda m: (
            f"backbone.block{_s(m)}.{m.group(2)}.mlp."
            + {"0": "fc1.", "1": "dwconv.dwconv.", "4": "fc2."}[m.group(3)]
        ),
    ),
    (r"^backbone\.msg_tokens$", lambda m: "backbone.msg_tokens"),
    (
        r"^neck\.lateral_convs\.(\d+)\.conv\.",
        lambda m: f"pixel_decoder.lateral_convs.{m.group(1)}.",
    ),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.", lambda m: f"pixel_decoder.output_convs.{m.group(1)}."),
    (r"^rpn_head\.(init_proposal_\w+)\.", lambda m: f"{_DECODER}{m.group(1)}."),
    (
        r"^roi_head\.bbox_head\.(\d+)\.attention\.attn\.",
        lambda m: f"{_DECODER}stages.{m.group(1)}.attention.",
    ),
    (
        r"^roi_head\.bbox_head\.(\d+)\.ffn\.layers\.0\.0\.",
        lambda m: f"{_DECODER}stages.{m.group(1)}.ffn.0.",
    ),
    (
        r"^roi_head\.bbox_head\.(\d+)\.ffn\.layers\.1\.",
        lambda m: f"{_DECODER}stages.{m.group(1)}.ffn.2.",
    ),
    (
        r"^roi_head\.bbox_head\.(\d+)\.(attention_norm|instance_interactive_conv|"
        r"instance_interactive_conv_norm|ffn_norm|cls_fcs|reg_fcs|fc_cls|fc_reg)\.",
        lambda m: f"{_DECODER}stages.{m.group(1)}.{m.group(2)}.",
    ),
    # ConvModule j (conv, BatchNorm, ReLU) is entries 3j, 3j + 1 of the Sequential here.
    (
        r"^roi_head\.mask_head\.(\d+)\.convs\.(\d+)\.(conv|bn)\.",
        lambda m: (
            f"{_DECODER}mask_heads.{m.group(1)}.convs.{3 * int(m.group(2)) + (m.group(3) == 'bn')}."
        ),
    ),
    (
        r"^roi_head\.mask_head\.(\d+)\.(instance_interactive_conv|upsample|conv_logits)\.",
        lambda m: f"{_DECODER}mask_heads.{m.group(1)}.{m.group(2)}.",
    ),
]
_COMPILED = [(re.compile(pattern), replace) for pattern, replace in _RENAMES]
_IN_PROJ = re.compile(r"^backbone\.layers\.(\d+)\.1\.(\d+)\.attn\.attn\.in_proj_(weight|bias)$")
_FFN_LINEAR = re.compile(r"^backbone\.layers\.\d+\.1\.\d+\.ffn\.layers\.(0|4)\.weight$")


def _s(match: "re.Match[str]") -> int:
    """mmdetection's stage index (0-based) -> this project's stage number (1-based)."""
    return int(match.group(1)) + 1


def is_official_tevit(state_dict: Dict[str, Tensor]) -> bool:
    """Whether ``state_dict`` has the official (mmdetection) TeViT / QueryInst layout."""
    return any(
        name.startswith(("rpn_head.init_proposal", "roi_head.bbox_head.")) for name in state_dict
    )


def tevit_to_ifr(
    state_dict: Dict[str, Tensor], source: str = "checkpoint", dropped: Dropped = None
) -> Dict[str, Tensor]:
    """An official TeViT (or QueryInst PVTv2) state dict -> full names of this project's
    ``TeViT`` model, every tensor converted; an unknown name raises CheckpointFormatError
    naming ``source`` and the key. Nothing is dropped (``dropped`` stays empty); each
    backbone attention's ``in_proj`` becomes two tensors."""
    if not is_official_tevit(state_dict):
        raise CheckpointFormatError(
            f"{source}: not a TeViT checkpoint "
            "(no rpn_head.init_proposal_* or roi_head.bbox_head.*)"
        )
    converted: Dict[str, Tensor] = {}
    for name, tensor in state_dict.items():
        in_proj = _IN_PROJ.match(name)
        if in_proj:
            stage, block, kind = in_proj.groups()
            prefix = f"backbone.block{int(stage) + 1}.{block}.attn."
            dim = tensor.shape[0] // 3
            converted[f"{prefix}q.{kind}"] = tensor[:dim]
            converted[f"{prefix}kv.{kind}"] = tensor[dim:]
            continue
        new_name = _rename(name)
        if new_name is None:
            raise CheckpointFormatError(f"{source}: unexpected key '{name}' for a TeViT checkpoint")
        if _FFN_LINEAR.match(name):
            tensor = tensor.flatten(1)  # 1x1 convolution -> linear
        converted[new_name] = tensor
    return converted


# Full model names (``convert_checkpoint`` adds no ``backbone.`` prefix).
tevit_to_ifr.full_model = True
tevit_to_ifr.written_note = "each backbone in_proj written as q and kv"


def _rename(name: str):
    for pattern, replace in _COMPILED:
        match = pattern.match(name)
        if match:
            return replace(match) + name[match.end() :]
    return None
