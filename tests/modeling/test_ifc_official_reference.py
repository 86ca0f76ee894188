"""IFC against the official code's own output. ``reference/ifc_official.pth`` holds a small
random IFC in the official names (``detr.*``: d = 32, 4 heads, FFN 32, 2 encoder blocks
with 2 memory tokens, 2 decoder layers, 4 queries, 3 classes), res3/res4/res5 features of
two 3-frame clips padded to 96 x 128 (the second clip's images are 64 x 96) and the
official model's ``pred_logits`` and ``pred_masks`` on them, computed in float64 by the
modules of sukjunhwang/IFC (``IFC.forward_post_backbone`` with ``IFCTransformer`` and
``MaskHead``, padding masks from ``MaskedBackbone``'s rule, positions from its
``PositionEmbeddingSine``). The file loads through the official-name mapping and this
project's ``IFCInputProjection`` + ``IFCTransformerDecoder`` must give the same outputs."""

import os

import torch
from detectron2.layers import ShapeSpec
from torch import nn

from ifr.checkpoint.ifc import rename_official_ifc_keys
from ifr.modeling.pixel_decoder import IFCInputProjection
from ifr.modeling.transformer_decoder.ifc import IFCTransformerDecoder

REFERENCE = os.path.join(os.path.dirname(__file__), "reference", "ifc_official.pth")


def _model(sizes) -> nn.Module:
    d, heads, ffn, enc, dec, memory, queries, classes, _, _, c5, c4, c3 = sizes.tolist()
    model = nn.Module()
    model.pixel_decoder = IFCInputProjection(
        {
            "res3": ShapeSpec(channels=c3, stride=8),
            "res4": ShapeSpec(channels=c4, stride=16),
            "res5": ShapeSpec(channels=c5, stride=32),
        },
        conv_dim=d,
    )
    model.transformer_decoder = IFCTransformerDecoder(
        d,
        mask_dim=d,
        num_classes=classes,
        hidden_dim=d,
        num_queries=queries,
        nheads=heads,
        dim_feedforward=ffn,
        enc_layers=enc,
        dec_layers=dec,
        num_memory_tokens=memory,
        dropout=0.0,
        pre_norm=False,
    )
    return model


def _outputs(image_sizes=None):
    reference = torch.load(REFERENCE, weights_only=True)
    model = _model(reference["sizes"])
    model.load_state_dict(rename_official_ifc_keys(reference["state_dict"]), strict=True)
    model = model.double().eval()
    frames, batch = reference["sizes"][8].item(), reference["sizes"][9].item()
    features = {name: reference[name].double() for name in ("res3", "res4", "res5")}
    mask_features, multi_scale = model.pixel_decoder.forward_features(features)

    def by_clip(x):
        return x.view(batch, frames, *x.shape[1:])

    with torch.no_grad():
        outputs = model.transformer_decoder(
            [by_clip(x) for x in multi_scale],
            by_clip(mask_features),
            return_masks=True,
            image_sizes=image_sizes,
        )
    return reference, outputs


def test_the_official_ifc_outputs_with_padding_masks():
    sizes = [
        tuple(size) for size in torch.load(REFERENCE, weights_only=True)["image_sizes"].tolist()
    ]
    reference, outputs = _outputs(sizes)
    torch.testing.assert_close(outputs["pred_logits"], reference["pred_logits"], atol=1e-10, rtol=0)
    torch.testing.assert_close(outputs["pred_masks"], reference["pred_masks"], atol=1e-9, rtol=0)


def test_without_the_image_sizes_the_padding_changes_the_output():
    reference, outputs = _outputs()
    assert not torch.allclose(outputs["pred_logits"], reference["pred_logits"], atol=1e-3)
