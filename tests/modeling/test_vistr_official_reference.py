"""VisTR against the official code's own output. ``reference/vistr_official.pth`` holds the
outputs (``pred_logits``, ``pred_boxes``, ``pred_masks``) of the official ``VisTRsegm``
(Epiphqny/VisTR's ``VisTR``, DETR ``Transformer``, ``MHAttentionMap``,
``MaskHeadSmallConv`` and the 3-D ``insmask_head``) at d = 384 (its mask head's widths
require it), 8 heads, FFN 64, 1 encoder and 2 decoder layers, 2 frames x 2 slots, 3
classes, run in float64 on res2..res5 features of a 64 x 64 clip, with the names and
shapes of its parameters. The features and weights are not stored: both sides draw them
from one seeded generator, the features first, then every official parameter in sorted
name order (``_seeded``). The deformable convolution ran as torchvision's
``deform_conv2d`` (the official operator is a CUDA extension), with random offsets.
Loaded through ``vistr_to_ifr``, this project's decoder must give the same outputs, the
class columns after the official unused class 0."""

import os

import torch
import torchvision

from ifr.checkpoint.vistr import vistr_to_ifr
from ifr.modeling.transformer_decoder.vistr import VisTRTransformerDecoder

REFERENCE = os.path.join(os.path.dirname(__file__), "reference", "vistr_official.pth")
FEATURES = (("res2", 256, 4), ("res3", 512, 8), ("res4", 1024, 16), ("res5", 2048, 32))


def _seeded(reference, frames, height, width):
    """The features (T, C, h, w) and the official state dict, drawn as the reference."""
    generator = torch.Generator().manual_seed(0)
    features = {
        name: torch.randn(
            frames, channels, height // s, width // s, generator=generator, dtype=torch.float64
        )
        for name, channels, s in FEATURES
    }
    state = {
        name: torch.randn(shape, generator=generator, dtype=torch.float64) * 0.05
        for name, shape in zip(reference["names"], reference["shapes"])
    }
    return features, state


def test_the_official_vistr_outputs():
    reference = torch.load(REFERENCE, weights_only=True)
    d, heads, ffn, enc, dec, frames, slots, classes, height, width = reference["sizes"].tolist()
    features, official = _seeded(reference, frames, height, width)
    # a backbone in the official names, as every VisTR file has (not compared here)
    backbone = torchvision.models.resnet50().state_dict()
    official.update({f"vistr.backbone.0.body.{k}": v for k, v in backbone.items()})
    converted = vistr_to_ifr(official)
    prefix = "transformer_decoder."
    decoder = VisTRTransformerDecoder(
        in_channels={name: channels for name, channels, _ in FEATURES},
        num_classes=classes - 1,  # the official class 0 is never a target: dropped
        num_frames=frames,
        num_instances=slots,
        hidden_dim=d,
        nheads=heads,
        dim_feedforward=ffn,
        enc_layers=enc,
        dec_layers=dec,
        dropout=0.0,
        pre_norm=False,
    ).double()  # before loading: float64 weights, not float32-rounded ones
    decoder.load_state_dict(
        {k[len(prefix) :]: v for k, v in converted.items() if k.startswith(prefix)}, strict=True
    )
    decoder.eval()
    clip = {name: features[name][None] for name, _, _ in FEATURES}  # (1, T, C, h, w)
    with torch.no_grad():
        out = decoder([clip["res5"], clip["res4"], clip["res3"]], clip["res2"])

    def frame_major(x):  # (1, n, T, ...) -> (1, T * n, ...): query t * n + i
        return x.transpose(1, 2).flatten(1, 2)

    torch.testing.assert_close(
        frame_major(out["pred_logits"]), reference["pred_logits"][..., 1:], atol=1e-14, rtol=0
    )
    torch.testing.assert_close(
        frame_major(out["pred_boxes"]), reference["pred_boxes"], atol=1e-14, rtol=0
    )
    torch.testing.assert_close(
        frame_major(out["pred_masks"]), reference["pred_masks"], atol=1e-14, rtol=0
    )
