"""The Triton MSDA kernels (ifr/modeling/ops/ms_deform_attn_triton.py) against the
pure-PyTorch reference, on CPU through Triton's interpreter, and the dispatch between them.

Triton decides between compiled and interpreted kernels when a kernel is decorated, from
``TRITON_INTERPRET``; so the kernels run in a subprocess started with
``TRITON_INTERPRET=1`` that loads the kernel module by path (it imports only torch and
triton). This process writes the inputs, the subprocess writes outputs and gradients, and
the tests compare them with ``ms_deform_attn_pytorch`` here. The interpreted tests are
marked slow: about 25 s (wall) for the subprocess on the shared 2-core test machine.
"""

import importlib
import os
import subprocess
import sys

import pytest
import torch

from ifr.modeling.ops.ms_deform_attn import (
    MSDeformAttn,
    ms_deform_attn,
    ms_deform_attn_pytorch,
    resolve_msda_impl,
)
from ifr.utils.errors import UserInputError

pytest.importorskip("triton")

# The module (the package re-exports a function of the same name).
msda = importlib.import_module("ifr.modeling.ops.ms_deform_attn")

KERNEL_FILE = os.path.abspath(msda.__file__).replace(
    "ms_deform_attn.py", "ms_deform_attn_triton.py"
)

# Runs in the TRITON_INTERPRET=1 subprocess: argv = kernel file, inputs file, outputs file.
_RUNNER = """
import importlib.util, sys, time
import torch
spec = importlib.util.spec_from_file_location("msda_triton", sys.argv[1])
kernels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kernels)
assert kernels.is_interpreted()
cases, results = torch.load(sys.argv[2]), {}
for name, case in cases.items():
    start = time.perf_counter()
    leaves = [case[k].clone().requires_grad_() for k in ("value", "locations", "weights")]
    value, locations, weights = leaves
    args = (value, case["shapes"], case["starts"], locations, weights)
    if case.get("gradcheck"):
        fn = lambda v, loc, w: kernels.ms_deform_attn_triton(v, args[1], args[2], loc, w)
        try:
            # fast_mode: a few random directions instead of the full Jacobians, which would
            # cost a kernel call per input element in the (slow) interpreter.
            ok = torch.autograd.gradcheck(fn, tuple(leaves), eps=1e-6, atol=1e-5, fast_mode=True)
        except Exception as error:  # gradcheck raises with the mismatching Jacobians
            ok = str(error)
        results[name] = {"gradcheck": ok}
        results[name]["seconds"] = time.perf_counter() - start
        continue
    out = kernels.ms_deform_attn_triton(*args)
    out.backward(case["grad_out"])
    results[name] = {
        "out": out.detach(),
        "grad_value": value.grad,
        "grad_locations": locations.grad,
        "grad_weights": weights.grad,
        "seconds": time.perf_counter() - start,
    }
torch.save(results, sys.argv[3])
"""


def _case(
    shapes=((4, 5), (2, 3)),
    batch=2,
    queries=5,
    heads=2,
    head_dim=8,
    points=2,
    dtype=torch.float32,
    seed=0,
):
    """Random inputs; locations span [-0.2, 1.2] so that some samples fall partly or wholly
    outside the maps, and a few sit on the borders and outside corners exactly."""
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    areas = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    levels = len(shapes)
    value = torch.randn(batch, int(areas.sum()), heads, head_dim, generator=generator)
    locations = torch.rand(batch, queries, heads, levels, points, 2, generator=generator)
    locations = locations * 1.4 - 0.2
    locations[0, 0, 0, :, 0] = torch.tensor([0.0, 0.0])  # top-left corner of the map
    locations[0, 0, 0, :, 1] = torch.tensor([1.0, 1.0])  # bottom-right corner
    locations[-1, -1, -1] = torch.tensor([-0.7, 0.5])  # every point outside: reads zero
    weights = torch.rand(batch, queries, heads, levels, points, generator=generator)
    grad_out = torch.randn(batch, queries, heads * head_dim, generator=generator)
    case = {
        "value": value,
        "shapes": spatial_shapes,
        "starts": starts,
        "locations": locations,
        "weights": weights,
        "grad_out": grad_out,
    }
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in case.items()}


CASES = {
    "fp32": _case(),
    # Non-power-of-two head dim (masked channels), more queries than one block (16).
    "fp32_ragged": _case(shapes=((3, 3), (1, 2), (2, 1)), batch=1, queries=40, head_dim=6),
    "bf16": _case(dtype=torch.bfloat16, seed=1),
    # What the pixel decoder passes under bf16 autocast: bf16 values (a linear layer's
    # output), float32 locations and weights (reference points, softmax).
    "bf16_value_fp32_rest": dict(_case(seed=2), value=_case(seed=2)["value"].bfloat16()),
    "fp64_gradcheck": dict(
        _case(shapes=((3, 2), (2, 2)), batch=1, queries=2, head_dim=2, dtype=torch.float64),
        gradcheck=True,
    ),
}


@pytest.fixture(scope="module")
def triton_results(tmp_path_factory):
    """Outputs and gradients of the kernels, interpreted on CPU, for every case."""
    folder = tmp_path_factory.mktemp("msda_triton")
    torch.save(CASES, folder / "inputs.pt")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-c", _RUNNER, KERNEL_FILE]
    command += [str(folder / "inputs.pt"), str(folder / "outputs.pt")]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(folder / "outputs.pt")


def _reference(case, dtype=torch.float64):
    """ms_deform_attn_pytorch's output and gradients for the case's inputs, in ``dtype``."""
    names = ("value", "locations", "weights")
    leaves = [case[k].detach().to(dtype).requires_grad_() for k in names]
    value, locations, weights = leaves
    out = ms_deform_attn_pytorch(value, case["shapes"], case["starts"], locations, weights)
    out.backward(case["grad_out"].to(dtype))
    return {
        "out": out.detach(),
        "grad_value": value.grad,
        "grad_locations": locations.grad,
        "grad_weights": weights.grad,
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fp32", "fp32_ragged"])
def test_fp32_matches_pytorch_reference(triton_results, name):
    result, expected = triton_results[name], _reference(CASES[name])
    for key, want in expected.items():
        assert result[key].dtype == torch.float32, key
        assert result[key].shape == want.shape, key
        # Location gradients are scaled by the map size (d/dx = W d/dpx).
        torch.testing.assert_close(result[key].double(), want, atol=2e-5, rtol=1e-5, msg=key)


@pytest.mark.slow
def test_samples_outside_the_maps_read_zero(triton_results):
    # The last (batch, query, head) samples only at x = -0.7, left of every map: its output
    # is zero, and so are the gradients of its locations and weights.
    result = triton_results["fp32"]
    assert result["out"][-1, -1, -8:].abs().max() == 0
    assert result["grad_locations"][-1, -1, -1].abs().max() == 0
    assert result["grad_weights"][-1, -1, -1].abs().max() == 0
    assert result["grad_weights"][-1, -1, 0].abs().max() > 0  # the other head's are not


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bf16", "bf16_value_fp32_rest"])
def test_bf16_close_to_float64_reference(triton_results, name):
    """bf16 inputs, float32 accumulation: outputs and gradients come back in each input's
    dtype (the output in value's), within bf16's rounding (8 bits of mantissa) of the
    reference on the same (rounded) inputs."""
    result, expected = triton_results[name], _reference(CASES[name])
    dtypes = {"out": "value", "grad_value": "value"}
    for key, want in expected.items():
        source = dtypes.get(key, key.replace("grad_", ""))
        assert result[key].dtype == CASES[name][source].dtype, key
        scale = want.abs().max().item()
        torch.testing.assert_close(
            result[key].double(), want, atol=1e-2 * scale, rtol=1e-2, msg=key
        )


@pytest.mark.slow
def test_gradcheck_float64(triton_results):
    assert triton_results["fp64_gradcheck"]["gradcheck"] is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled kernels need a GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_kernels_on_cuda_match_reference(dtype):
    """On a GPU: the compiled kernels at encoder-like shapes (3 levels, 8 heads of 32
    channels, 4 points) against the float64 reference, and "auto" picks them."""
    cuda = torch.device("cuda")
    assert resolve_msda_impl("auto", cuda) == "triton"
    shapes = ((24, 32), (12, 16), (6, 8))
    case = _case(shapes=shapes, batch=2, queries=300, heads=8, head_dim=32, points=4)
    case = {k: v.to(cuda) for k, v in case.items()}
    names = ("value", "locations", "weights")
    leaves = [case[k].to(dtype).clone().requires_grad_() for k in names]
    out = ms_deform_attn(leaves[0], case["shapes"], case["starts"], *leaves[1:], impl="auto")
    out.backward(case["grad_out"].to(dtype))
    rounded = {k: v.to(dtype) if v.is_floating_point() else v for k, v in case.items()}
    expected = _reference(rounded)
    got = dict(zip(("grad_value", "grad_locations", "grad_weights"), (x.grad for x in leaves)))
    got["out"] = out.detach()
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    for key, want in expected.items():
        assert got[key].dtype == dtype, key
        scale = want.abs().max().item()
        torch.testing.assert_close(
            got[key].double(), want, atol=tolerance * scale, rtol=tolerance, msg=key
        )


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_kernels_compile_for_sm90(dtype):
    """The interpreter does not run Triton's compiler: compile both kernels to an sm_90
    (H100/H200) cubin here, with the ptxas Triton ships, so that code the interpreter
    accepts but the compiler rejects fails without a GPU."""
    import inspect

    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from ifr.modeling.ops import ms_deform_attn_triton as kernels

    constants = dict(NUM_HEADS=8, HEAD_DIM=32, NUM_LEVELS=3, NUM_POINTS=4, BLOCK_Q=16, BLOCK_D=32)
    constants["ACC"] = tl.float32
    pointers = {
        kernels._msda_forward_kernel: [dtype] * 6,
        kernels._msda_backward_kernel: [dtype] * 6 + ["fp32", dtype, dtype],
    }
    for kernel, types in pointers.items():
        names = list(inspect.signature(kernel.fn).parameters)
        signature = {name: f"*{t}" if t != "i32" else t for name, t in zip(names, types)}
        signature["shapes_ptr"] = signature["starts_ptr"] = "*i32"
        signature.update(num_values="i32", num_queries="i32")
        signature.update({name: "constexpr" for name in constants})
        compiled = triton.compile(
            ASTSource(kernel, signature, constexprs=constants),
            target=GPUTarget("cuda", 90, 32),
            options={"num_warps": 4},
        )
        assert len(compiled.asm["cubin"]) > 0


def test_dispatch_auto_is_pytorch_on_cpu():
    assert resolve_msda_impl("auto", torch.device("cpu")) == "pytorch"
    assert resolve_msda_impl("pytorch", torch.device("cuda")) == "pytorch"
    case = CASES["fp32"]
    inputs = [case[k] for k in ("value", "shapes", "starts", "locations", "weights")]
    assert torch.equal(ms_deform_attn(*inputs), ms_deform_attn_pytorch(*inputs))


def test_dispatch_auto_on_cuda_follows_triton_availability(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(msda, "triton_available", lambda: True)
    assert resolve_msda_impl("auto", cuda) == "triton"
    assert resolve_msda_impl("triton", cuda) == "triton"
    monkeypatch.setattr(msda, "triton_available", lambda: False)
    assert resolve_msda_impl("auto", cuda) == "pytorch"
    with pytest.raises(RuntimeError, match="triton package does not import"):
        resolve_msda_impl("triton", cuda)
    # A GPU older than Triton supports (Pascal, 6.0) stays on PyTorch.
    monkeypatch.setattr(msda, "triton_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 0))
    assert resolve_msda_impl("auto", cuda) == ("triton" if torch.version.hip else "pytorch")


def test_dispatch_rejects_unknown_impl():
    with pytest.raises(ValueError, match="impl='cuda' is not one of auto, pytorch, triton"):
        resolve_msda_impl("cuda", torch.device("cpu"))
    with pytest.raises(ValueError, match="impl='fast'"):
        MSDeformAttn(d_model=8, n_levels=1, n_heads=2, n_points=1, impl="fast")


def test_triton_on_cpu_without_interpreter_is_a_clear_error():
    from ifr.modeling.ops.ms_deform_attn_triton import is_interpreted

    if is_interpreted():
        pytest.skip("this process runs with TRITON_INTERPRET=1")
    case = CASES["fp32"]
    inputs = [case[k] for k in ("value", "shapes", "starts", "locations", "weights")]
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ms_deform_attn(*inputs, impl="triton")


def test_config_key_reaches_every_attention_module(make_cfg):
    from detectron2.layers import ShapeSpec

    from ifr.modeling.pixel_decoder import MSDeformAttnPixelDecoder

    shapes = {f"res{i}": ShapeSpec(channels=8, stride=2**i) for i in (2, 3, 4, 5)}
    assert make_cfg().MODEL.PIXEL_DECODER.MSDA_IMPL == "auto"
    args = MSDeformAttnPixelDecoder.from_config(
        make_cfg(overrides={"MODEL.PIXEL_DECODER.MSDA_IMPL": "pytorch"}), shapes
    )
    assert args["msda_impl"] == "pytorch"
    args.update(conv_dim=32, mask_dim=8, transformer_dim_feedforward=16, transformer_nheads=2)
    decoder = MSDeformAttnPixelDecoder(**args)
    impls = [m.impl for m in decoder.modules() if isinstance(m, MSDeformAttn)]
    assert impls == ["pytorch"] * args["transformer_enc_layers"]


def test_config_rejects_unknown_impl(make_cfg):
    from detectron2.layers import ShapeSpec

    from ifr.modeling.pixel_decoder import MSDeformAttnPixelDecoder

    cfg = make_cfg(overrides={"MODEL.PIXEL_DECODER.MSDA_IMPL": "cuda"})
    shapes = {f"res{i}": ShapeSpec(channels=8, stride=2**i) for i in (2, 3, 4, 5)}
    with pytest.raises(UserInputError, match=r"^MODEL.PIXEL_DECODER.MSDA_IMPL: 'cuda' is not"):
        MSDeformAttnPixelDecoder.from_config(cfg, shapes)
