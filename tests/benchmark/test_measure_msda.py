"""benchmark_msda / msda_inputs of ifr/benchmark/measure.py, at small sizes on CPU."""

import math

import torch

from ifr.benchmark.measure import benchmark_msda, msda_inputs


def test_encoder_inputs_reference_pixel_centres_at_point_distances():
    value, shapes, starts, locations, weights = msda_inputs(
        torch.device("cpu"), torch.float32, batch=1, image_size=(64, 96), heads=2, d_model=8
    )
    # Strides 8/16/32 of 64x96: 8x12, 4x6, 2x3 maps, one query per pixel.
    assert shapes.tolist() == [[8, 12], [4, 6], [2, 3]]
    assert starts.tolist() == [0, 96, 120]
    assert value.shape == (1, 126, 2, 4)
    assert locations.shape == (1, 126, 2, 3, 4, 2)
    torch.testing.assert_close(weights.sum((-2, -1)), torch.ones(1, 126, 2))
    # Query 13 is pixel (x=1, y=1) of the 8x12 level, centred at (1.5 / 12, 1.5 / 8).
    centre = torch.tensor([1.5 / 12, 1.5 / 8])
    extent = torch.tensor([[12.0, 8.0], [6.0, 4.0], [3.0, 2.0]])  # (W, H) per level
    pixels = (locations[0, 13].detach() - centre) * extent[:, None]  # (heads, L, P, 2)
    torch.testing.assert_close(pixels.norm(dim=-1), torch.arange(1.0, 5.0).expand(2, 3, 4))


def test_random_queries_and_dtype():
    _, _, _, locations, weights = msda_inputs(
        torch.device("cpu"), torch.bfloat16, batch=2, image_size=(32, 32), num_queries=5
    )
    assert locations.shape == (2, 5, 8, 3, 4, 2)
    assert locations.dtype == weights.dtype == torch.bfloat16
    assert locations.requires_grad and weights.requires_grad


def test_benchmark_msda_on_cpu_reports_times():
    result = benchmark_msda(
        "cpu", torch.float32, "pytorch", batch=1, image_size=(32, 32), iters=1, warmup=0
    )
    assert set(result) == {"forward_ms", "fwd_bwd_ms", "peak_mib"}
    assert result["forward_ms"] > 0 and result["fwd_bwd_ms"] > 0
    assert math.isnan(result["peak_mib"])  # measured on CUDA only
