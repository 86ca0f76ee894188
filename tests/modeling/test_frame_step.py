"""The IFR frame recurrence's step (``frame_step``): the same results as the recurrence
written before it was one function (bit for bit), no host synchronisation in the decoder's
forward (no op that makes the host wait for a GPU: recorded at the aten level, so it is
checked on CPU), one graph for torch.compile (``fullgraph=True``), and the compiled step
(MODEL.IFR.COMPILE_FRAME_STEP) gives the eager step's results.

The compiled-decoder tests use the "aot_eager" backend (graph capture and autograd
tracing, no code generation: seconds); the one with the default inductor backend
generates C++ (about 2.5 min on 2 CPU cores) and is marked slow.
"""

import pytest
import torch
from model_test_utils import HEADS, HIDDEN, LAYERS, MASK_DIM, QUERIES, decoder_kwargs
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from ifr.modeling.transformer_decoder import ifr as ifr_decoder
from ifr.modeling.transformer_decoder.common import unmask_empty_rows
from ifr.modeling.transformer_decoder.ifr import (
    IFRTransformerDecoder,
    compiled_frame_step,
    frame_step,
    frame_step_function,
)

FRAMES = 4
LEVEL_SIZES = [(2, 3), (4, 6), (8, 12)]
MASK_SIZE = (16, 24)


def make_decoder(**overrides) -> IFRTransformerDecoder:
    torch.manual_seed(0)
    # in_channels 24: a real input projection (24 -> 32 channels).
    decoder = IFRTransformerDecoder(**decoder_kwargs(in_channels=24, **overrides))
    with torch.no_grad():
        decoder.pair_group_embed.weight.normal_()  # the two halves of Q' differ
    return decoder


def make_inputs(batch: int = 2):
    generator = torch.Generator().manual_seed(1)
    features = [torch.randn(batch, FRAMES, 24, h, w, generator=generator) for h, w in LEVEL_SIZES]
    mask_features = torch.randn(batch, FRAMES, MASK_DIM, *MASK_SIZE, generator=generator)
    return features, mask_features


def recurrence_as_written_before(decoder, layer, clip_queries, features, mask_features, embeds):
    """The frame recurrence as the decoder computed it before ``frame_step`` (commit
    94edeb9): per frame, the attention mask with boolean-index unmasking, the projected
    source, query_pos built per frame, A and B from one call on [Q_i^{t-1}; Q_i], Q' =
    cat(A, B), self-attention, FFN."""
    level = layer % 3
    num_queries, batch = clip_queries.shape[:2]
    query_embed = decoder.query_embed.weight.unsqueeze(1).repeat(1, batch, 1)
    pair_pos = (query_embed.unsqueeze(0) + decoder.pair_group_embed.weight[:, None, None]).flatten(
        0, 1
    )
    previous, per_frame = clip_queries, []
    for t in range(features[level].shape[1]):
        frame_map = features[level][:, t]
        pos = decoder.pe_layer(frame_map).flatten(2).permute(2, 0, 1)
        with torch.no_grad():
            logits = torch.einsum("bnc,bchw->bnhw", embeds[:, :, t], mask_features[:, t])
            logits = F.interpolate(
                logits, size=LEVEL_SIZES[level], mode="bilinear", align_corners=False
            )
            masked = logits.sigmoid().flatten(2) < 0.5
            masked[masked.all(dim=-1)] = False
            masked = masked.repeat_interleave(HEADS, dim=0)
        source = (
            decoder.input_proj[level](frame_map)
            + decoder.level_embed.weight[level][None, :, None, None]
        )
        source = source.flatten(2).permute(2, 0, 1)
        query_pos = decoder.query_embed.weight.unsqueeze(1).repeat(1, batch, 1).repeat(2, 1, 1)
        attended = decoder.transformer_cross_attention_layers[layer](
            torch.cat([previous, clip_queries]),
            source,
            memory_mask=masked.repeat(1, 2, 1),
            pos=pos,
            query_pos=query_pos,
        )
        pair = torch.cat([attended[:num_queries], attended[num_queries:]])
        pair = decoder.transformer_self_attention_layers[layer](pair, query_pos=pair_pos)
        previous = decoder.transformer_ffn_layers[layer](pair[:num_queries])
        per_frame.append(previous)
    return torch.stack(per_frame).permute(2, 1, 0, 3)


def test_unmask_empty_rows_equals_boolean_index_assignment():
    generator = torch.Generator().manual_seed(0)
    masked = torch.rand(3, 7, 20, generator=generator) < 0.6
    masked[0, 2] = True  # rows masked everywhere: they must attend everywhere
    masked[2, 5] = True
    expected = masked.clone()
    expected[expected.all(dim=-1)] = False
    actual = unmask_empty_rows(masked.clone(), 2)
    assert torch.equal(actual, expected.repeat_interleave(2, dim=0))
    assert not actual[0].all(dim=-1).any()  # the empty rows now attend everywhere
    assert actual[0, 2].sum() == 0


@pytest.mark.parametrize("layer", [0, 1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_frame_recurrence_is_bit_identical_to_before(layer, training):
    decoder = make_decoder().train(training)
    features, mask_features = make_inputs()
    clip_queries = torch.randn(QUERIES, 2, HIDDEN)
    embeds = torch.randn(2, QUERIES, FRAMES, MASK_DIM)
    with torch.no_grad():
        expected = recurrence_as_written_before(
            decoder, layer, clip_queries, features, mask_features, embeds
        )
        actual = decoder._frame_recurrence(layer, clip_queries, features, mask_features, embeds)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_frame_step_is_one_graph_without_host_synchronisation():
    """fullgraph=True refuses any graph break: a .item(), a nonzero() or a boolean-mask
    index (the host waits for the device there) would raise."""
    decoder = make_decoder().eval()
    features, mask_features = make_inputs()
    blocks = decoder._step_blocks(1)
    clip_queries = torch.randn(QUERIES, 2, HIDDEN)
    query_pos = decoder._query_pos(2).repeat(2, 1, 1)
    pair_pos = decoder._pair_query_pos(2)
    frame_map = features[1][:, 0]
    args = (
        blocks,
        decoder.level_embed.weight[1],
        torch.randn(QUERIES, 2, HIDDEN),
        clip_queries,
        frame_map,
        decoder.pe_layer(frame_map).flatten(2).permute(2, 0, 1),
        torch.randn(2, QUERIES, MASK_DIM),
        mask_features[:, 0],
        query_pos,
        pair_pos,
    )
    torch._dynamo.reset()
    captured = torch.compile(frame_step, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(captured(*args), frame_step(*args), rtol=0, atol=0)


class HostSyncRecorder(TorchDispatchMode):
    """Records the aten ops that make the host wait for the device on CUDA: a scalar read
    (``.item()``, a Python ``if`` on a tensor), ``nonzero`` and the ops whose output shape
    depends on values, and indexing with a boolean mask (it runs nonzero)."""

    SYNCING = {
        "_local_scalar_dense",  # .item(), float(t)
        "is_nonzero",  # bool(t), if t:
        "equal",  # torch.equal returns a Python bool
        "nonzero",
        "masked_select",
        "unique",
        "_unique2",
    }
    INDEXING = {"index", "index_put", "index_put_", "_index_put_impl_"}

    def __init__(self):
        super().__init__()
        self.syncs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in self.SYNCING:
            self.syncs.append(name)
        elif name in self.INDEXING and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None
        ):
            self.syncs.append(f"{name} with a boolean mask")
        return func(*args, **kwargs)


@pytest.mark.parametrize("training", [True, False])
def test_decoder_forward_makes_no_host_synchronisation(training):
    decoder = make_decoder().train(training)
    features, mask_features = make_inputs()
    with torch.set_grad_enabled(training), HostSyncRecorder() as recorder:
        decoder(features, mask_features, return_masks=training)
    assert recorder.syncs == []


def test_the_sync_recorder_sees_the_previous_unmasking_and_item():
    """The check above can fail: boolean-index assignment (the previous unmasking) and a
    scalar read are recorded."""
    masked = torch.rand(2, 3, 4) < 0.5
    with HostSyncRecorder() as recorder:
        masked[masked.all(dim=-1)] = False
        float(masked.float().sum())
    assert recorder.syncs == ["index_put_ with a boolean mask", "_local_scalar_dense"]


@pytest.fixture
def aot_eager_step(monkeypatch):
    """The decoder's compiled step with the "aot_eager" backend (no code generation),
    counting its calls."""
    torch._dynamo.reset()
    compiled = torch.compile(frame_step, backend="aot_eager", fullgraph=True)
    calls = []

    def counted(*args):
        calls.append(1)
        return compiled(*args)

    monkeypatch.setattr(ifr_decoder, "_COMPILED_FRAME_STEPS", {"default": counted})
    return calls


@pytest.mark.slow  # about 10-15 s: tracing forward and backward
def test_compiled_decoder_gives_the_eager_outputs_and_gradients(aot_eager_step):
    eager, compiled = make_decoder().train(), make_decoder(compile_frame_step=True).train()
    features, mask_features = make_inputs()
    outputs = []
    for decoder in (eager, compiled):
        out = decoder(features, mask_features, return_masks=True)
        (out["pred_masks"].square().mean() + out["pred_logits"].sum()).backward()
        outputs.append(out)
    assert len(aot_eager_step) == LAYERS * FRAMES  # every step went through the graph
    torch.testing.assert_close(outputs[1]["pred_masks"], outputs[0]["pred_masks"])
    torch.testing.assert_close(outputs[1]["pred_logits"], outputs[0]["pred_logits"])
    for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled.parameters()):
        if p_eager.grad is not None:
            torch.testing.assert_close(p_compiled.grad, p_eager.grad, msg=name)


@pytest.mark.slow  # about 10-15 s: tracing forward and backward
def test_compiled_decoder_with_recurrence_off_in_eval(aot_eager_step):
    eager = make_decoder(test_recurrence=False).eval()
    compiled = make_decoder(test_recurrence=False, compile_frame_step=True).eval()
    features, mask_features = make_inputs()
    with torch.no_grad():
        expected = eager(features, mask_features, return_masks=False)
        actual = compiled(features, mask_features, return_masks=False)
    torch.testing.assert_close(actual["pred_mask_embeds"], expected["pred_mask_embeds"])


def test_cuda_graphs_only_without_autograd():
    """reduce-overhead (CUDA graphs) is an inference mode; with autograd the step
    compiles in the default mode."""
    assert frame_step_function(False) is frame_step
    with torch.enable_grad():
        assert frame_step_function(True, "reduce-overhead") is compiled_frame_step("default")
    with torch.no_grad():
        replay = frame_step_function(True, "reduce-overhead")
    assert replay is not compiled_frame_step("default") and callable(replay)


def test_a_bad_compile_mode_names_the_key(make_cfg):
    with pytest.raises(ValueError, match="MODEL.IFR.COMPILE_MODE"):
        make_decoder(compile_mode="fast")
    cfg = make_cfg("configs/tiny/ifr_tiny.yaml", {"MODEL.IFR.COMPILE_FRAME_STEP": True})
    from ifr.modeling.registry import build_transformer_decoder

    decoder = build_transformer_decoder(cfg, in_channels=64, mask_dim=64)
    assert decoder.compile_frame_step and decoder.compile_mode == "default"


@pytest.mark.slow
def test_inductor_compiled_decoder_matches_eager():
    """The real default backend (inductor, C++ on CPU), inference as the report runs it."""
    torch._dynamo.reset()
    ifr_decoder._COMPILED_FRAME_STEPS.clear()
    eager, compiled = make_decoder().eval(), make_decoder(compile_frame_step=True).eval()
    features, mask_features = make_inputs(batch=1)
    with torch.no_grad():
        expected = eager(features, mask_features, return_masks=False)
        actual = compiled(features, mask_features, return_masks=False)
    torch.testing.assert_close(actual["pred_mask_embeds"], expected["pred_mask_embeds"])
    torch.testing.assert_close(actual["pred_logits"], expected["pred_logits"])


def test_compiling_the_step_raises_the_graph_limit(monkeypatch):
    """Levels, batch sizes, grad mode, dtypes and modes need more than torch.compile's
    default of 8 graphs per function; past the limit it would silently run eagerly."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    monkeypatch.setattr(config, name, 8)
    monkeypatch.setattr(ifr_decoder, "_COMPILED_FRAME_STEPS", {})
    compiled_frame_step("default")
    assert getattr(config, name) >= 64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_decoder_forward_never_waits_on_cuda():
    """On a GPU: CUDA's own sync check (set_sync_debug_mode "error") over the decoder's
    eval forward, features on the GPU."""
    decoder = make_decoder().cuda().eval()
    features, mask_features = make_inputs()
    features, mask_features = [f.cuda() for f in features], mask_features.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.no_grad():
            decoder(features, mask_features, return_masks=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
