"""IFC's model pieces: the encoder's memory-token communication on hand-made cases, the
decoder's shapes and dynamic mask head, the per-frame projections, and the meta-architecture
(training forward, inference reading the decoder's own mask features)."""

import os

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from model_test_utils import frame_instances
from torch.nn import functional as F

from ifr.engine.defaults import build_cfg
from ifr.inference.video import decode_segment, encode_frames_of
from ifr.modeling.pixel_decoder import IFCInputProjection
from ifr.modeling.transformer_decoder.ifc import IFCEncoder, IFCTransformerDecoder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "ifc_tiny.yaml")
FAST = ["MODEL.VIS.NUM_QUERIES", "5"]


def _encoder(num_memory_tokens: int, num_layers: int = 2) -> IFCEncoder:
    torch.manual_seed(0)
    return IFCEncoder(8, 2, 16, num_layers, num_memory_tokens).eval()


def _frames(batch: int = 1, frames: int = 3, tokens: int = 5, dim: int = 8):
    torch.manual_seed(1)
    return torch.randn(tokens, batch, frames, dim), torch.randn(tokens, batch, frames, dim)


# ------------------------------------------------------------------ encoder
@torch.no_grad()
def test_encoder_shapes_memory_tokens_of_every_frame():
    tokens, pos = _frames(batch=2, frames=4)
    encoded, memory = _encoder(3)(tokens, pos)
    assert encoded.shape == (5, 2, 4, 8)
    assert memory.shape == (3, 2, 4, 8)  # M tokens for every frame of every video


@torch.no_grad()
def test_without_memory_tokens_frames_do_not_communicate():
    """M = 0: frame 0's output does not depend on frame 1's input at all."""
    encoder = _encoder(0)
    tokens, pos = _frames()
    changed = tokens.clone()
    changed[:, :, 1] += 3.0
    before, memory = encoder(tokens, pos)
    after, _ = encoder(changed, pos)
    assert memory.shape == (0, 1, 3, 8)
    torch.testing.assert_close(after[:, :, 0], before[:, :, 0], rtol=0, atol=0)
    torch.testing.assert_close(after[:, :, 2], before[:, :, 2], rtol=0, atol=0)
    assert not torch.allclose(after[:, :, 1], before[:, :, 1])


@torch.no_grad()
def test_memory_tokens_carry_information_between_frames():
    """M > 0: after one block only the memory tokens of frame 0 know frame 1 (communication
    follows encode-receive); from the second block frame 0's own tokens do."""
    tokens, pos = _frames()
    changed = tokens.clone()
    changed[:, :, 1] += 3.0
    one_block = _encoder(2, num_layers=1)
    before, memory_before = one_block(tokens, pos)
    after, memory_after = one_block(changed, pos)
    torch.testing.assert_close(after[:, :, 0], before[:, :, 0], rtol=0, atol=0)
    assert not torch.allclose(memory_after[:, :, 0], memory_before[:, :, 0])

    two_blocks = _encoder(2, num_layers=2)
    before, _ = two_blocks(tokens, pos)
    after, _ = two_blocks(changed, pos)
    assert (after[:, :, 0] - before[:, :, 0]).abs().max() > 1e-3


@torch.no_grad()
def test_videos_of_a_batch_do_not_communicate():
    encoder = _encoder(2)
    tokens, pos = _frames(batch=2)
    changed = tokens.clone()
    changed[:, 1] += 3.0
    before, memory_before = encoder(tokens, pos)
    after, memory_after = encoder(changed, pos)
    torch.testing.assert_close(after[:, 0], before[:, 0])
    torch.testing.assert_close(memory_after[:, 0], memory_before[:, 0])


def _make_mean_attention(layer) -> None:
    """Self-attention whose output is the mean of its inputs: zero query/key projections
    (uniform weights), identity value and output projections."""
    attention = layer.self_attn
    dim = attention.embed_dim
    with torch.no_grad():
        attention.in_proj_weight.zero_()
        attention.in_proj_weight[2 * dim :] = torch.eye(dim)
        attention.in_proj_bias.zero_()
        attention.out_proj.weight.copy_(torch.eye(dim))
        attention.out_proj.bias.zero_()


@torch.no_grad()
def test_gather_communicate_by_hand():
    """Communication with mean attention and a zero FFN is, per memory slot and video,
    ``LN(LN(x_t + mean over the video's frames of x))``: a slot gathers its own tokens of
    every frame of its video, and nothing of other slots or videos."""
    encoder = _encoder(2, num_layers=1)
    _make_mean_attention(encoder.communicate_attention[0])
    with torch.no_grad():
        encoder.communicate_ffn[0].linear2.weight.zero_()
        encoder.communicate_ffn[0].linear2.bias.zero_()
    batch, frames, slots, dim = 2, 3, 2, 8
    torch.manual_seed(2)
    memory = torch.randn(slots, batch, frames, dim)
    out = encoder._communicate(0, memory.flatten(1, 2), batch, frames)
    out = out.view(slots, batch, frames, dim)

    expected = torch.empty_like(memory)
    for m in range(slots):
        for b in range(batch):
            mean = memory[m, b].mean(0)  # over the video's frames
            for t in range(frames):
                once = F.layer_norm(memory[m, b, t] + mean, (dim,))
                expected[m, b, t] = F.layer_norm(once, (dim,))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_encoder_refuses_bad_sizes():
    with pytest.raises(ValueError, match="MODEL.IFC.NUM_MEMORY_TOKENS"):
        IFCEncoder(8, 2, 16, 1, -1)
    with pytest.raises(ValueError, match="MODEL.IFC.ENC_LAYERS"):
        IFCEncoder(8, 2, 16, 0, 2)


# ------------------------------------------------------------------ decoder
def _decoder(
    in_channels: int = 32, num_memory_tokens: int = 2, enc_layers: int = 2, dec_layers: int = 3
) -> IFCTransformerDecoder:
    torch.manual_seed(0)
    return IFCTransformerDecoder(
        in_channels,
        mask_dim=32,
        num_classes=3,
        hidden_dim=32,
        num_queries=4,
        nheads=4,
        dim_feedforward=64,
        enc_layers=enc_layers,
        dec_layers=dec_layers,
        num_memory_tokens=num_memory_tokens,
        dropout=0.0,
        pre_norm=False,
    )


def _decoder_inputs(batch: int = 2, frames: int = 3, size=(2, 3)):
    torch.manual_seed(3)
    h, w = size
    coarse = torch.randn(batch, frames, 32, h, w)
    lateral16 = torch.randn(batch, frames, 32, 2 * h, 2 * w)
    lateral8 = torch.randn(batch, frames, 32, 4 * h, 4 * w)
    return [coarse, lateral16], lateral8


def test_decoder_shapes_and_deep_supervision():
    decoder = _decoder().train()
    multi_scale, lateral8 = _decoder_inputs()
    out = decoder(multi_scale, lateral8, return_masks=True)
    assert out["pred_logits"].shape == (2, 4, 4)  # K + 1 columns
    assert out["pred_mask_embeds"].shape == (2, 4, 3, 32)
    assert out["mask_features"].shape == (2, 3, 32, 8, 12)  # stride 8
    assert out["pred_masks"].shape == (2, 4, 3, 8, 12)
    assert len(out["aux_outputs"]) == 2  # every decoder layer but the last
    for aux in out["aux_outputs"]:
        assert aux["pred_masks"].shape == (2, 4, 3, 8, 12)
    decoder.eval()
    with torch.no_grad():
        out = decoder(multi_scale, lateral8, return_masks=False)
    assert out["aux_outputs"] == [] and "pred_masks" not in out


@torch.no_grad()
def test_number_of_queries_does_not_depend_on_clip_length():
    decoder = _decoder().eval()
    for frames in (1, 2, 6):
        multi_scale, lateral8 = _decoder_inputs(batch=1, frames=frames)
        out = decoder(multi_scale, lateral8, return_masks=True)
        assert out["pred_logits"].shape == (1, 4, 4)
        assert out["pred_masks"].shape[:3] == (1, 4, frames)


@torch.no_grad()
def test_dynamic_mask_head_is_a_1x1_conv_with_the_query_weights():
    decoder = _decoder().eval()
    multi_scale, lateral8 = _decoder_inputs()
    out = decoder(multi_scale, lateral8, return_masks=True)
    weights = out["pred_mask_embeds"][:, :, 0]  # (B, N, d), the same for every frame
    torch.testing.assert_close(out["pred_mask_embeds"][:, :, 2], weights)
    for b in range(2):
        for t in range(3):
            conv = F.conv2d(out["mask_features"][b, t][None], weights[b][:, :, None, None])
            torch.testing.assert_close(out["pred_masks"][b, :, t], conv[0], rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_mask_features_of_a_frame_see_other_frames_only_through_memory_tokens():
    multi_scale, lateral8 = _decoder_inputs(batch=1)
    changed = [f.clone() for f in multi_scale]
    changed[0][:, 1] += 3.0  # frame 1's stride-32 features
    for num_memory, communicates in ((0, False), (2, True)):
        decoder = _decoder(num_memory_tokens=num_memory).eval()
        before = decoder(multi_scale, lateral8)["mask_features"]
        after = decoder(changed, lateral8)["mask_features"]
        frame0_changed = (after[:, 0] - before[:, 0]).abs().max() > 1e-4
        assert bool(frame0_changed) == communicates
        assert (after[:, 1] - before[:, 1]).abs().max() > 1e-4


def test_decoder_refuses_bad_inputs():
    decoder = _decoder()
    multi_scale, lateral8 = _decoder_inputs()
    with pytest.raises(ValueError, match="2 feature levels"):
        decoder([*multi_scale, lateral8], lateral8)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        decoder([multi_scale[0][:, :2], multi_scale[1]], lateral8)
    with pytest.raises(ValueError, match="MODEL.PIXEL_DECODER.CONVS_DIM"):
        _decoder(in_channels=64, enc_layers=1, dec_layers=1)


# ------------------------------------------------------------------ per-frame projections
def test_input_projection_levels_and_strides():
    shapes = {
        "res3": ShapeSpec(channels=12, stride=8),
        "res4": ShapeSpec(channels=20, stride=16),
        "res5": ShapeSpec(channels=40, stride=32),
    }
    projection = IFCInputProjection(shapes, conv_dim=16)
    features = {
        "res3": torch.randn(6, 12, 16, 24),
        "res4": torch.randn(6, 20, 8, 12),
        "res5": torch.randn(6, 40, 4, 6),
    }
    finest, (coarse, middle) = projection.forward_features(features)
    assert finest.shape == (6, 16, 16, 24)
    assert coarse.shape == (6, 16, 4, 6) and middle.shape == (6, 16, 8, 12)
    with pytest.raises(ValueError, match="res3"):
        IFCInputProjection({k: v for k, v in shapes.items() if k != "res3"}, conv_dim=16)


# ------------------------------------------------------------------ the model
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(build_cfg(TINY, FAST))


def _clip(size=(64, 96), frames: int = 3):
    """Two instances on a fixed random clip; instance 1 leaves after the first frame."""
    generator = torch.Generator().manual_seed(4)
    images = [
        torch.randint(0, 255, (3, *size), dtype=torch.uint8, generator=generator)
        for _ in range(frames)
    ]
    per_frame = []
    for t in range(frames):
        ids = [7, 9 if t == 0 else -1]
        masks = torch.zeros((2, *size), dtype=torch.bool)
        masks[0, 8 + 4 * t : 40 + 4 * t, 10:50] = True
        if ids[1] >= 0:
            masks[1, 30:60, 60:90] = True
        per_frame.append(frame_instances(size, [0, 2], ids, masks))
    return {"image": images, "instances": per_frame, "height": size[0], "width": size[1]}


def test_training_forward_gives_ifc_losses_and_gradients(model):
    model.train()
    losses = model([_clip(), _clip()])
    expected = {"loss_ce", "loss_mask", "loss_dice"}
    expected |= {f"{k}_{i}" for k in ("loss_ce", "loss_mask", "loss_dice") for i in (0, 1)}
    assert set(losses) == expected == set(model.criterion.weight_dict)
    assert all(torch.isfinite(v) for v in losses.values())
    model.zero_grad()
    sum(losses.values()).backward()
    # Every parameter is used (the tiny backbone returns no stride-4 level IFC would skip).
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@torch.no_grad()
def test_inference_reads_the_decoders_mask_features(model):
    """The decoder's mask features (the mask head on the encoder's output) are what masks
    are rendered from, not the pixel decoder's res3 projection."""
    model.eval()
    frames = _clip()["image"]
    multi_scale, lateral8, sizes = encode_frames_of(model, frames)
    segment = decode_segment(model, multi_scale, lateral8, sizes, 0, len(frames))
    outputs = model.transformer_decoder(multi_scale, lateral8, return_masks=False)
    torch.testing.assert_close(segment.mask_features, outputs["mask_features"][0])
    assert not torch.allclose(segment.mask_features, lateral8[0])
    video = {"image": frames, "height": 64, "width": 96, "video_id": 1, "length": 3}
    (result,) = model([video])
    assert len(result["pred_scores"]) == model.inference_options.top_k
    assert all(0 <= c < 3 for c in result["pred_labels"])


@torch.no_grad()
def test_per_clip_inference_encodes_each_clip_on_its_own():
    """Near-online IFC: a clip's mask features come from that clip's encoder pass (its
    memory tokens hear only its frames), so frames 1-2 seen as a clip differ from frames
    1-2 of the whole video; per-clip inference links such clips into tracks."""
    model = build_model(
        build_cfg(
            TINY,
            FAST
            + [
                "MODEL.VIS.TEST.MODE",
                "clip",
                "MODEL.VIS.TEST.CLIP_LENGTH",
                "2",
                "MODEL.VIS.TEST.CLIP_OVERLAP",
                "1",
                "MODEL.VIS.TEST.CLIP_MIN_SCORE",
                "0.0",
            ],
        )
    ).eval()
    frames = _clip(frames=4)["image"]
    multi_scale, lateral8, sizes = encode_frames_of(model, frames)
    whole = decode_segment(model, multi_scale, lateral8, sizes, 0, 4)
    clip = decode_segment(model, multi_scale, lateral8, sizes, 1, 3)
    assert clip.mask_features.shape == whole.mask_features[1:3].shape
    assert not torch.allclose(clip.mask_features, whole.mask_features[1:3], atol=1e-4)
    video = {"image": frames, "height": 64, "width": 96, "video_id": 1, "length": 4}
    (result,) = model([video])
    assert len(result["pred_scores"]) == model.inference_options.top_k
    assert all(len(masks) == 4 for masks in result["pred_masks"])


def test_ifc_refuses_another_pixel_decoder():
    wrong = FAST + ["MODEL.PIXEL_DECODER.NAME", "MSDeformAttnPixelDecoder"]
    with pytest.raises(ValueError, match="MODEL.PIXEL_DECODER.NAME"):
        build_model(build_cfg(TINY, wrong))


def test_a_few_iterations_lower_the_loss_on_a_tiny_clip():
    torch.manual_seed(0)
    net = build_model(build_cfg(TINY, FAST)).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    clip = _clip()
    totals = []
    for _ in range(12):
        losses = net([clip])
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert min(totals[-3:]) < 0.7 * totals[0], totals


def test_padding_mask_by_hand():
    from ifr.modeling.transformer_decoder.common import padding_mask

    mask = padding_mask([(64, 65), (96, 128)], (3, 4), 32, "cpu")
    # 64 x 65: ceil(64/32) = 2 rows, ceil(65/32) = 3 columns are the image
    assert mask[0].tolist() == [[False] * 3 + [True]] * 2 + [[True] * 4]
    assert not mask[1].any()


@torch.no_grad()
def test_padded_tokens_change_nothing_the_queries_see():
    """IFC's padding masks: a clip padded by one row and two columns of random tokens,
    with its image size given, predicts the classes of the clip without padding (the
    padding is no key of any attention, positions count only the image's tokens); without
    the image size the padding is attended to and the classes change."""
    decoder = _decoder().eval()
    (coarse, lateral16), lateral8 = _decoder_inputs(batch=1, frames=2, size=(2, 3))
    padded = [torch.randn(1, 2, 32, 3, 5), torch.randn(1, 2, 32, 6, 10)]
    padded[0][..., :2, :3] = coarse
    padded_lateral8 = torch.randn(1, 2, 32, 12, 20)
    plain = decoder([coarse, lateral16], lateral8, return_masks=False)
    masked = decoder(padded, padded_lateral8, return_masks=False, image_sizes=[(64, 96)])
    torch.testing.assert_close(masked["pred_logits"], plain["pred_logits"], atol=1e-5, rtol=0)
    unmasked = decoder(padded, padded_lateral8, return_masks=False)
    assert not torch.allclose(unmasked["pred_logits"], plain["pred_logits"], atol=1e-3)


def test_objects_only_is_refused_for_a_sigmoid_class_head():
    import os

    from detectron2.modeling import build_model

    from ifr.engine.defaults import build_cfg

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cfg = build_cfg(
        os.path.join(root, "configs", "tiny", "ifr_tiny.yaml"),
        ["MODEL.VIS.TEST.OBJECTS_ONLY", "True"],
    )
    with pytest.raises(ValueError, match="MODEL.VIS.TEST.OBJECTS_ONLY needs a softmax"):
        build_model(cfg)
