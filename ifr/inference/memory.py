"""Peak memory of one inference pass, for the benchmark (``tools/benchmark.py``)."""

import os
import threading
import time
from typing import Optional, Tuple

import torch

from .run import run_inference

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _resident_bytes() -> int:
    """Current resident set size of this process (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


class _PeakRSSSampler:
    """Samples the resident set size in a background thread; ``peak`` is the maximum seen."""

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.peak = _resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _resident_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> "_PeakRSSSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _resident_bytes())


def random_video_input(
    num_frames: int,
    size: Tuple[int, int],
    seed: int = 0,
    original_size: Optional[Tuple[int, int]] = None,
) -> dict:
    """A test-mapper-like input of ``num_frames`` random uint8 frames of ``size`` (H, W),
    the model's input size; masks are rendered at ``original_size`` (default: ``size``),
    the size of the video before the mapper resized it."""
    generator = torch.Generator().manual_seed(seed)
    frames = [
        torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=generator)
        for _ in range(num_frames)
    ]
    height, width = original_size or size
    return {
        "image": frames,
        "height": height,
        "width": width,
        "video_id": -1,
        "length": num_frames,
    }


@torch.no_grad()
def measure_inference_memory(
    model,
    num_frames: int,
    size: Tuple[int, int],
    original_size: Optional[Tuple[int, int]] = None,
) -> int:
    """Peak memory in bytes of ``run_inference`` on a random video of ``num_frames`` frames
    of ``size`` (H, W), masks rendered at ``original_size`` (default ``size``), above what
    was in use before the call.

    On a CUDA model: ``torch.cuda.max_memory_allocated`` of the model's device. On CPU:
    peak resident set size (sampled every 2 ms), so it includes allocator slack; compare
    numbers measured in the same way.
    """
    batched_input = random_video_input(num_frames, size, original_size=original_size)
    model.eval()
    device = torch.device(model.device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        baseline = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run_inference(model, batched_input)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - baseline
    baseline = _resident_bytes()
    with _PeakRSSSampler() as sampler:
        run_inference(model, batched_input)
    return max(0, sampler.peak - baseline)
