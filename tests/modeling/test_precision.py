"""MODEL.PRECISION: the network (backbone, pixel decoder, transformer decoder) autocasts,
losses and post-processing stay in float32, and bf16 stays close to fp32 on a tiny model.

Tolerances: bf16 keeps 8 significant bits (a relative rounding error of 2^-9, about 0.2%,
per operation). The tiny models chain about 20 matmuls/convolutions before a loss, so
their losses move by up to a few per cent: measured on these inputs at most 0.3% (IFR)
and 2.1% (Mask2Former-VIS, its Dice loss), class probabilities by at most 0.0024. The
bounds (5% on a loss, 0.01 on a probability) leave room for that and no more: a network
left in float32 would give differences of 0, and that is checked separately (the layers'
output dtypes).
"""

import pytest
import torch
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from ifr.benchmark.measure import synthetic_clip
from ifr.engine.trainer import build_step_trainer, training_precision, use_amp
from ifr.inference.memory import random_video_input
from ifr.inference.video import decode_segment, encode_frames_of
from ifr.modeling.ops.ms_deform_attn import MSDeformAttn
from ifr.utils.precision import check_precision, precision_autocast, to_float32

SIZE = (64, 96)
TINY_OVERRIDES = {"MODEL.VIS.TRAIN_NUM_POINTS": 256, "MODEL.DEVICE": "cpu"}


def _config(make_cfg, name: str, precision: str):
    return make_cfg(f"configs/tiny/{name}.yaml", {**TINY_OVERRIDES, "MODEL.PRECISION": precision})


def _model_pair(make_cfg, name: str):
    """The same tiny model (same weights) in fp32 and in bf16."""
    torch.manual_seed(0)
    fp32 = build_model(_config(make_cfg, name, "fp32"))
    bf16 = build_model(_config(make_cfg, name, "bf16"))
    bf16.load_state_dict(fp32.state_dict())
    return fp32, bf16


def _batch(num_clips: int = 2):
    generator = torch.Generator().manual_seed(0)
    return [synthetic_clip(2, SIZE, 2, 3, generator) for _ in range(num_clips)]


def _record_output_dtypes(model, kinds=(torch.nn.Linear, torch.nn.Conv2d)):
    """{top-level submodule name: set of output dtypes of its Linear/Conv2d layers}."""
    seen = {}

    def hook(name):
        def record(module, args, output):
            seen.setdefault(name.split(".")[0], set()).add(output.dtype)

        return record

    handles = [
        module.register_forward_hook(hook(name))
        for name, module in model.named_modules()
        if isinstance(module, kinds)
    ]
    return seen, handles


def test_precision_names_are_checked():
    assert check_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="MODEL.PRECISION must be one of fp32, fp16, bf16"):
        check_precision("fp8")


def test_a_bad_precision_stops_the_model_build(make_cfg):
    with pytest.raises(ValueError, match="MODEL.PRECISION"):
        build_model(_config(make_cfg, "ifr_tiny", "float16"))


def test_to_float32_casts_floating_tensors_in_nested_containers():
    value = {
        "a": torch.ones(2, dtype=torch.bfloat16),
        "b": [torch.ones(1, dtype=torch.float16), (torch.arange(3), 1.5)],
        "c": "text",
    }
    cast = to_float32(value)
    assert cast["a"].dtype == torch.float32 and cast["b"][0].dtype == torch.float32
    assert cast["b"][1][0].dtype == torch.int64  # integers untouched
    assert cast["b"][1][1] == 1.5 and cast["c"] == "text"
    assert value["a"].dtype == torch.bfloat16  # the input is not modified


def test_fp32_precision_leaves_an_enclosing_autocast_alone():
    """ "fp32" must not switch off the AMPTrainer's autocast (SOLVER.AMP.ENABLED)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with precision_autocast("cpu", "fp32"):
            assert torch.is_autocast_enabled("cpu")
    with precision_autocast("cpu", "bf16"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


@pytest.mark.parametrize("name", ["ifr_tiny", "m2f_vis_tiny"])
def test_bf16_training_runs_the_network_in_bf16_and_losses_in_fp32(make_cfg, name):
    fp32, bf16 = _model_pair(make_cfg, name)
    batch = _batch()
    torch.manual_seed(1)
    reference = fp32.train()(batch)

    dtypes, handles = _record_output_dtypes(bf16)
    criterion_inputs = []

    def record_criterion(module, args):
        outputs = args[0]
        criterion_inputs.append((outputs["pred_masks"].dtype, torch.is_autocast_enabled("cpu")))

    handles.append(bf16.criterion.register_forward_pre_hook(record_criterion))
    torch.manual_seed(1)
    losses = bf16.train()(batch)
    for handle in handles:
        handle.remove()

    for part in ("backbone", "pixel_decoder", "transformer_decoder"):
        assert dtypes[part] == {torch.bfloat16}, part
    assert criterion_inputs == [(torch.float32, False)]  # fp32 masks, autocast off
    assert set(losses) == set(reference)
    for key, value in losses.items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, reference[key], rtol=0.05, atol=1e-3, msg=key)
    sum(losses.values()).backward()
    grads = [p.grad for p in bf16.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and g.isfinite().all() for g in grads)


@pytest.mark.parametrize("name", ["ifr_tiny", "m2f_vis_tiny"])
def test_bf16_inference_is_close_to_fp32(make_cfg, name):
    fp32, bf16 = _model_pair(make_cfg, name)
    video = random_video_input(4, SIZE)
    segments, results = [], []
    with torch.no_grad():
        for model in (fp32.eval(), bf16.eval()):
            multi_scale, mask_features, sizes = encode_frames_of(model, video["image"])
            segments.append(decode_segment(model, multi_scale, mask_features, sizes, 0, 4))
            results.append(model([video])[0])
    reference, candidate = segments
    assert candidate.class_probs.dtype == candidate.mask_embeds.dtype == torch.float32
    assert not torch.equal(candidate.mask_embeds, reference.mask_embeds)  # bf16 did run
    torch.testing.assert_close(candidate.class_probs, reference.class_probs, rtol=0, atol=0.01)
    assert len(results[1]["pred_scores"]) == len(results[0]["pred_scores"])
    torch.testing.assert_close(
        torch.tensor(results[1]["pred_scores"]),
        torch.tensor(results[0]["pred_scores"]),
        rtol=0,
        atol=0.01,
    )
    assert len(results[1]["pred_masks"][0]) == 4  # T RLE frames per instance


def _deformable_attention_dtypes(pixel_decoder, features, autocast_dtype):
    seen = []
    handles = [
        m.value_proj.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
        for m in pixel_decoder.modules()
        if isinstance(m, MSDeformAttn)
    ]
    with torch.no_grad(), torch.autocast("cpu", dtype=autocast_dtype):
        pixel_decoder.forward_features(features)
    for handle in handles:
        handle.remove()
    return set(seen)


def test_pixel_decoder_keeps_fp32_under_fp16_and_runs_bf16(make_cfg):
    """As Mask2Former under AMP, fp16 autocast stops at the pixel decoder (fp16's
    range); bf16 runs through it."""
    model = build_model(_config(make_cfg, "ifr_tiny", "fp32")).eval()
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, *SIZE))
    assert _deformable_attention_dtypes(model.pixel_decoder, features, torch.float16) == {
        torch.float32
    }
    assert _deformable_attention_dtypes(model.pixel_decoder, features, torch.bfloat16) == {
        torch.bfloat16
    }


def test_bf16_trains_through_simple_trainer(make_cfg):
    """bf16 needs no loss scaling: one SimpleTrainer step of the bf16 model updates the
    float32 parameters with finite values."""
    cfg = _config(make_cfg, "ifr_tiny", "bf16")
    model = build_model(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = build_step_trainer(cfg, model, iter([_batch(1)]), optimizer)
    assert type(trainer) is SimpleTrainer
    before = model.transformer_decoder.class_embed.weight.detach().clone()
    trainer.iter = 0
    with EventStorage(0):
        trainer.run_step()
    after = model.transformer_decoder.class_embed.weight
    assert after.dtype == torch.float32 and after.isfinite().all()
    assert not torch.equal(after, before)


def test_training_precision_on_cpu(make_cfg, ifr_caplog):
    base = _config(make_cfg, "ifr_tiny", "bf16")
    assert training_precision(base) == "bf16" and not use_amp(base)
    fp32_amp = _config(make_cfg, "ifr_tiny", "fp32")
    fp32_amp.SOLVER.AMP.ENABLED = True
    assert training_precision(fp32_amp) == "fp32"  # Detectron2's AMP needs CUDA: a warning
    assert "CUDA is not available" in ifr_caplog.text
    with pytest.raises(ValueError, match="MODEL.PRECISION fp16"):
        training_precision(_config(make_cfg, "ifr_tiny", "fp16"))


def test_training_precision_on_cuda(make_cfg, monkeypatch):
    """Where CUDA is present: SOLVER.AMP.ENABLED with fp32 is Detectron2's fp16 AMP
    (AMPTrainer); a bf16 MODEL.PRECISION takes precedence and needs no GradScaler."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def cfg(precision, amp):
        config = _config(make_cfg, "ifr_tiny", precision)
        config.MODEL.DEVICE, config.SOLVER.AMP.ENABLED = "cuda", amp
        return config

    assert (training_precision(cfg("fp32", True)), use_amp(cfg("fp32", True))) == ("fp16", True)
    assert (training_precision(cfg("fp32", False)), use_amp(cfg("fp32", False))) == ("fp32", False)
    assert (training_precision(cfg("bf16", True)), use_amp(cfg("bf16", True))) == ("bf16", False)
    assert (training_precision(cfg("fp16", False)), use_amp(cfg("fp16", False))) == ("fp16", True)


@pytest.mark.parametrize("name", ["ifc_tiny", "tevit_tiny", "vistr_tiny"])
def test_the_other_systems_train_in_bf16_close_to_fp32(make_cfg, name):
    """IFC, TeViT and VisTR take the shared forward: bf16 network, float32 losses (TeViT's
    criterion runs its RoI mask head: in bf16, returning float32). Their total loss is
    compared: one loss can move more where bf16 flips a Hungarian assignment (IFC's
    loss_mask on this clip: 0.437 -> 0.465, 6.5%)."""
    fp32, bf16 = _model_pair(make_cfg, name)
    frames = _config(make_cfg, name, "fp32").INPUT.SAMPLING_FRAME_NUM
    generator = torch.Generator().manual_seed(0)
    batch = [synthetic_clip(frames, SIZE, 2, 3, generator)]
    torch.manual_seed(1)
    reference = fp32.train()(batch)
    dtypes, handles = _record_output_dtypes(bf16)
    torch.manual_seed(1)
    losses = bf16.train()(batch)
    for handle in handles:
        handle.remove()
    assert dtypes["backbone"] == {torch.bfloat16}
    assert torch.bfloat16 in dtypes["transformer_decoder"]
    assert set(losses) == set(reference)
    assert all(v.dtype == torch.float32 and v.isfinite() for v in losses.values())
    total, reference_total = sum(losses.values()), sum(reference.values())
    torch.testing.assert_close(total, reference_total, rtol=0.02, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_on_cuda_trains_and_infers_close_to_fp32(make_cfg):
    """On a GPU: the tiny IFR's bf16 training step and inference against fp32."""

    def cuda_model(precision):
        torch.manual_seed(0)
        cfg = _config(make_cfg, "ifr_tiny", precision)
        cfg.MODEL.DEVICE = "cuda"
        return build_model(cfg)

    fp32, bf16 = cuda_model("fp32"), cuda_model("bf16")
    batch = _batch()
    torch.manual_seed(1)
    reference = fp32.train()(batch)
    torch.manual_seed(1)
    losses = bf16.train()(batch)
    for key, value in losses.items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, reference[key], rtol=0.05, atol=1e-3, msg=key)
    sum(losses.values()).backward()
    video = random_video_input(4, SIZE)
    with torch.no_grad():
        scores = [m.eval()([video])[0]["pred_scores"] for m in (fp32, bf16)]
    torch.testing.assert_close(torch.tensor(scores[1]), torch.tensor(scores[0]), rtol=0, atol=0.01)
