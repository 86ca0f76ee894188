"""Speed and memory of a config on synthetic input, for ``tools/benchmark.py``.

Figures, never asserts: timings depend on the machine."""

import resource
import time
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances

from ..inference import run_inference
from ..inference.memory import measure_inference_memory, random_video_input


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


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
        synthetic_clip(cfg.INPUT.SAMPLING_FRAME_NUM, size, 3, cfg.MODEL.IFR.NUM_CLASSES, generator)
        for _ in range(cfg.SOLVER.IMS_PER_BATCH)
    ]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(warmup + iters):
        if step == warmup:
            _synchronize(device)
            start = time.perf_counter()
        with torch.autocast(device.type, enabled=cfg.SOLVER.AMP.ENABLED and device.type == "cuda"):
            loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _synchronize(device)
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
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        run_inference(model, video)
    _synchronize(device)
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
