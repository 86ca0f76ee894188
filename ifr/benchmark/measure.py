"""Speed and memory of a config on synthetic input, for ``tools/benchmark.py``.

Figures, never asserts: timings depend on the machine."""

import math
import resource
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances

from ..inference import run_inference
from ..inference.memory import measure_inference_memory, random_video_input
from ..modeling.ops.ms_deform_attn import ms_deform_attn


def synthetic_clip(
    num_frames: int,
    size: Tuple[int, int],
    num_instances: int,
    num_classes: int,
    generator: torch.Generator,
) -> dict:
    """A training-mapper-like clip: random frames and ``num_instances`` rectangles per frame."""
    height, width = size
    frames, per_frame = [], []
    classes = torch.randint(0, num_classes, (num_instances,), generator=generator)
    for _ in range(num_frames):
        frames.append(
            torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
        )
        masks = torch.zeros((num_instances, height, width), dtype=torch.bool)
        for i in range(num_instances):
            y0 = int(torch.randint(0, height // 2, (1,), generator=generator))
            x0 = int(torch.randint(0, width // 2, (1,), generator=generator))
            masks[i, y0 : y0 + height // 3, x0 : x0 + width // 3] = True
        instances = Instances((height, width))
        instances.gt_classes = classes.clone()
        instances.gt_ids = torch.arange(num_instances)
        instances.gt_masks = BitMasks(masks)
        instances.gt_boxes = Boxes(instances.gt_masks.get_bounding_boxes().tensor)
        per_frame.append(instances)
    return {"image": frames, "instances": per_frame, "height": height, "width": width}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(step: Callable[[], Any], device: torch.device, iters: int, warmup: int) -> float:
    """Mean wall time of ``step()`` in ms over ``iters`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / iters * 1000


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS


def benchmark_training(cfg, size: Tuple[int, int], iters: int, warmup: int) -> Dict[str, float]:
    """Training iterations/s (forward, backward, AdamW step) on SOLVER.IMS_PER_BATCH
    synthetic clips of INPUT.SAMPLING_FRAME_NUM frames."""
    model = build_model(cfg)
    model.train()
    device = model.device
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    batch = [
        synthetic_clip(cfg.INPUT.SAMPLING_FRAME_NUM, size, 3, cfg.MODEL.VIS.NUM_CLASSES, generator)
        for _ in range(cfg.SOLVER.IMS_PER_BATCH)
    ]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(warmup + iters):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
        with torch.autocast(device.type, enabled=cfg.SOLVER.AMP.ENABLED and device.type == "cuda"):
            loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    return {"train_iter_per_s": iters / elapsed, "train_peak_mem_mb": _peak_memory_mb(device)}


@torch.no_grad()
def benchmark_inference(
    cfg, size: Tuple[int, int], num_frames: int, iters: int
) -> Dict[str, float]:
    """Whole-video inference frames/s on a random video of ``num_frames`` frames."""
    model = build_model(cfg)
    model.eval()
    device = model.device
    video = random_video_input(num_frames, size)
    run_inference(model, video)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        run_inference(model, video)
    synchronize(device)
    elapsed = time.perf_counter() - start
    return {"infer_frames_per_s": iters * num_frames / elapsed}


def memory_vs_length(
    cfg,
    size: Tuple[int, int],
    lengths: List[int],
    original_size: Optional[Tuple[int, int]] = None,
) -> List[Tuple[int, float]]:
    """Peak inference memory (MiB, above the model's own) for each video length; frames
    of ``size`` go through the model, masks are rendered at ``original_size`` (default
    ``size``), as for a video the test mapper resized."""
    model = build_model(cfg)
    model.eval()
    return [(n, measure_inference_memory(model, n, size, original_size) / 2**20) for n in lengths]


def msda_inputs(
    device: torch.device,
    dtype: torch.dtype,
    batch: int = 2,
    image_size: Tuple[int, int] = (480, 640),
    strides: Sequence[int] = (8, 16, 32),
    heads: int = 8,
    points: int = 4,
    d_model: int = 256,
    num_queries: Optional[int] = None,
    seed: int = 0,
) -> Tuple[torch.Tensor, ...]:
    """Inputs of ``ms_deform_attn`` at the shapes of Mask2Former's deformable encoder:
    levels of ``image_size`` at ``strides``, ``heads`` heads of ``d_model // heads``
    channels, ``points`` points per head and level.

    ``num_queries=None`` gives the encoder's self-attention: one query per pixel of every
    level, referenced at its centre; otherwise ``num_queries`` queries at uniform random
    reference points. Point p of a head lands (p + 1) pixels (Gaussian direction) from the
    reference point, as Deformable DETR's initial offsets. Returns value (N, S, M, D),
    spatial_shapes (L, 2), level_start_index (L,), sampling_locations (N, Q, M, L, P, 2)
    and attention_weights (N, Q, M, L, P) (softmax over L * P), the float ones in
    ``dtype`` and requiring grad.
    """
    generator = torch.Generator().manual_seed(seed)
    height, width = image_size
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in strides]
    shapes = torch.tensor(sizes, dtype=torch.long)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    levels, total = len(sizes), int(areas.sum())
    if num_queries is None:
        centres = [
            torch.stack(
                torch.meshgrid(
                    (torch.arange(w) + 0.5) / w, (torch.arange(h) + 0.5) / h, indexing="xy"
                ),
                -1,
            ).reshape(-1, 2)
            for h, w in sizes
        ]
        reference = torch.cat(centres)[None].expand(batch, -1, -1)
    else:
        reference = torch.rand(batch, num_queries, 2, generator=generator)
    queries = reference.shape[1]
    extent = torch.tensor([[w, h] for h, w in sizes], dtype=torch.float32)  # (L, 2) = (W, H)
    distance = torch.arange(1, points + 1, dtype=torch.float32)[:, None]  # (P, 1) pixels
    offsets = torch.randn(batch, queries, heads, levels, points, 2, generator=generator)
    offsets = offsets / offsets.norm(dim=-1, keepdim=True) * distance / extent[:, None]
    locations = reference[:, :, None, None, None, :] + offsets
    logits = torch.randn(batch, queries, heads, levels * points, generator=generator)
    weights = logits.softmax(-1).view(batch, queries, heads, levels, points)
    value = torch.randn(batch, total, heads, d_model // heads, generator=generator)

    def leaf(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(device=device, dtype=dtype).requires_grad_()

    return leaf(value), shapes.to(device), starts.to(device), leaf(locations), leaf(weights)


def benchmark_msda(
    device: torch.device,
    dtype: torch.dtype,
    impl: str,
    num_queries: Optional[int] = None,
    batch: int = 2,
    image_size: Tuple[int, int] = (480, 640),
    strides: Sequence[int] = (8, 16, 32),
    heads: int = 8,
    points: int = 4,
    d_model: int = 256,
    iters: int = 20,
    warmup: int = 3,
) -> Dict[str, float]:
    """Speed and memory of multi-scale deformable attention alone (``ms_deform_attn`` with
    ``impl`` "pytorch", "triton" or "auto") on :func:`msda_inputs`; the defaults are
    Mask2Former's encoder on a 480x640 image (strides 8/16/32, 8 heads, 4 points, d 256).

    Returns ``forward_ms`` (mean of ``iters`` forwards without autograd), ``fwd_bwd_ms``
    (forward with autograd + backward to value, locations and weights) and ``peak_mib``:
    the peak memory allocated during one forward + backward above what was allocated
    before it (inputs included there), on CUDA; NaN on other devices.
    """
    device = torch.device(device)
    inputs = msda_inputs(
        device, dtype, batch, image_size, strides, heads, points, d_model, num_queries
    )
    value, shapes, starts, locations, weights = inputs
    grad_out = torch.randn(value.shape[0], locations.shape[1], d_model, device=device, dtype=dtype)

    def forward() -> torch.Tensor:
        return ms_deform_attn(value, shapes, starts, locations, weights, impl=impl)

    def forward_backward() -> None:
        torch.autograd.grad(forward(), (value, locations, weights), grad_out)

    with torch.no_grad():
        forward_ms = timed_ms(forward, device, iters, warmup)
    fwd_bwd_ms = timed_ms(forward_backward, device, iters, warmup)
    peak_mib = float("nan")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        forward_backward()
        synchronize(device)
        peak_mib = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    return {"forward_ms": forward_ms, "fwd_bwd_ms": fwd_bwd_ms, "peak_mib": peak_mib}
