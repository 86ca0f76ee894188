import math

import pytest
import torch

from ifr.modeling.ops.ms_deform_attn import MSDeformAttn, ms_deform_attn


def _bilinear_reference(value_map, x, y):
    """Bilinear sample of value_map (C, H, W) at normalised (x, y), pixel centres at
    (i + 0.5) / size, zeros outside: written from the definition, no grid_sample."""
    channels, height, width = value_map.shape
    px = x * width - 0.5
    py = y * height - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(channels, dtype=value_map.dtype)
    for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yi < height and 0 <= xi < width:
                out += wx * wy * value_map[:, yi, xi]
    return out


def _slow_reference(value, spatial_shapes, level_start_index, locations, weights):
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    out = torch.zeros(batch, queries, heads, head_dim, dtype=value.dtype)
    for b in range(batch):
        for q in range(queries):
            for h in range(heads):
                for lvl in range(levels):
                    height, width = spatial_shapes[lvl].tolist()
                    start = int(level_start_index[lvl])
                    flat = value[b, start : start + height * width, h]  # (H*W, C_h)
                    value_map = flat.t().reshape(head_dim, height, width)
                    for p in range(points):
                        x, y = locations[b, q, h, lvl, p].tolist()
                        sample = _bilinear_reference(value_map, x, y)
                        out[b, q, h] += weights[b, q, h, lvl, p] * sample
    return out.reshape(batch, queries, heads * head_dim)


def _random_inputs(
    dtype=torch.float32,
    shapes=((5, 7), (3, 4), (2, 1)),
    batch=2,
    queries=3,
    heads=2,
    head_dim=3,
    points=2,
):
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    areas = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    levels = len(shapes)
    value = torch.randn(batch, int(areas.sum()), heads, head_dim, dtype=dtype)
    # Some locations fall outside [0, 1] to exercise the zero padding.
    locations = torch.rand(batch, queries, heads, levels, points, 2, dtype=dtype) * 1.2 - 0.1
    weights = torch.rand(batch, queries, heads, levels, points, dtype=dtype)
    weights = weights / weights.flatten(-2).sum(-1)[..., None, None]
    return value, spatial_shapes, level_start_index, locations, weights


def test_matches_slow_reference():
    inputs = _random_inputs()
    out = ms_deform_attn(*inputs)
    expected = _slow_reference(*inputs)
    assert out.shape == (2, 3, 2 * 3)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_pixel_centre_reads_exact_value():
    # A location at a pixel centre returns that pixel's value, unblended.
    value_map = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)  # C=1, H=3, W=4
    value = value_map.flatten(1).t()[None, :, None, :]  # (1, 12, 1, 1)
    spatial_shapes = torch.tensor([[3, 4]])
    start = torch.tensor([0])
    x, y = (2 + 0.5) / 4, (1 + 0.5) / 3
    locations = torch.tensor([x, y]).view(1, 1, 1, 1, 1, 2)
    weights = torch.ones(1, 1, 1, 1, 1)
    out = ms_deform_attn(value, spatial_shapes, start, locations, weights)
    assert out.item() == pytest.approx(value_map[0, 1, 2].item())


def test_gradcheck_float64():
    value, shapes, starts, locations, weights = _random_inputs(
        dtype=torch.float64,
        shapes=((3, 2), (2, 2)),
        batch=1,
        queries=2,
        heads=2,
        head_dim=2,
        points=2,
    )
    # Keep locations away from pixel-centre lines where bilinear sampling has kinks.
    locations = (locations * 0.9 + 0.03).requires_grad_()
    value.requires_grad_()
    weights.requires_grad_()

    def fn(v, loc, w):
        return ms_deform_attn(v, shapes, starts, loc, w)

    assert torch.autograd.gradcheck(fn, (value, locations, weights), eps=1e-6, atol=1e-5)


def test_module_initial_offsets_and_uniform_weights():
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    offsets = module.sampling_offsets.bias.view(4, 2, 3, 2)
    # Head 0 points along +x, head 1 along +y (theta = pi/2), distance p + 1.
    torch.testing.assert_close(offsets[0, 1, 2], torch.tensor([3.0, 0.0]))
    torch.testing.assert_close(offsets[1, 0, 1], torch.tensor([0.0, 2.0]), atol=1e-6, rtol=0)
    assert torch.all(module.attention_weights.weight == 0)
    assert set(dict(module.named_parameters())) == {
        f"{name}.{p}"
        for name in ("sampling_offsets", "attention_weights", "value_proj", "output_proj")
        for p in ("weight", "bias")
    }


def test_module_forward_shape_and_padding_mask():
    module = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2)
    shapes = torch.tensor([[4, 4], [2, 2]])
    starts = torch.tensor([0, 16])
    inputs = torch.randn(2, 20, 8)
    query = torch.randn(2, 5, 8)
    refs = torch.rand(2, 5, 2, 2)
    out = module(query, refs, inputs, shapes, starts)
    assert out.shape == (2, 5, 8)
    # Fully padded input: every sampled value is zero, output is the output bias.
    mask = torch.ones(2, 20, dtype=torch.bool)
    out_masked = module(query, refs, inputs, shapes, starts, mask)
    torch.testing.assert_close(out_masked, module.output_proj.bias.expand(2, 5, 8))


def test_module_rejects_inconsistent_shapes():
    module = MSDeformAttn(d_model=8, n_levels=1, n_heads=2, n_points=1)
    with pytest.raises(ValueError, match="spatial_shapes"):
        module(
            torch.randn(1, 2, 8),
            torch.rand(1, 2, 1, 2),
            torch.randn(1, 10, 8),
            torch.tensor([[3, 3]]),
            torch.tensor([0]),
        )
