"""Peak memory of one inference pass, for the benchmark (``tools/benchmark.py``)."""

import os
import threading
import time
from typing import Optional, Tuple

import torch

from .contract import VideoModel
from .run import run_inference

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _resident_bytes() -> int:
    """Current resident set size of this process (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


def _reset_peak_resident() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False where the
    kernel does not offer it (not Linux, or /proc/self/clear_refs not writable)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _peak_resident_bytes() -> int:
    """The kernel's peak RSS of this process since the last reset (VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM line in /proc/self/status")


class _PeakRSSSampler:
    """Peak resident set size over a ``with`` block; ``peak`` is the maximum.

    On Linux the kernel counts the peak exactly (VmHWM, reset on entry), so a transient
    allocation freed between two samples is not missed, whatever the machine's load.
    Elsewhere a background thread samples the RSS every ``interval_s``.
    """

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.peak = _resident_bytes()
        self._kernel_peak = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _resident_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> "_PeakRSSSampler":
        self._kernel_peak = _reset_peak_resident()
        self.peak = _resident_bytes()
        if not self._kernel_peak:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._kernel_peak:
            self.peak = max(self.peak, _peak_resident_bytes())
        else:
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
    model: VideoModel,
    num_frames: int,
    size: Tuple[int, int],
    original_size: Optional[Tuple[int, int]] = None,
) -> int:
    """Peak memory in bytes of ``run_inference`` on a random video of ``num_frames`` frames
    of ``size`` (H, W), masks rendered at ``original_size`` (default ``size``), above what
    was in use before the call.

    On a CUDA model: ``torch.cuda.max_memory_allocated`` of the model's device. On CPU:
    peak resident set size (the kernel's VmHWM on Linux, else sampled every 2 ms), so it
    includes allocator slack and varies between runs (by up to ~20 MiB for the tiny
    model's per-clip inference); compare numbers measured in the same way.
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
