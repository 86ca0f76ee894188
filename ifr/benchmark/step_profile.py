"""Where the time of a training step goes, for ``tools/profile_train_step.py``.

The trainer is built from the config as ``tools/train_net.py`` builds it (data loader,
model, criterion, optimizer with clipping) and its own ``run_step`` runs; timers wrap the
stages (data, backbone, pixel decoder, transformer decoder, criterion and its parts,
backward, optimizer). Figures, never asserts: timings depend on the machine and its load.
CPU time (the default clock) is what a shared machine measures best with one thread;
wall time is what a run takes.
"""

import collections
import functools
import statistics
import time
from typing import Callable, Dict, Iterator, List, Tuple

import torch
from detectron2.utils.events import EventStorage

from .measure import synthetic_clip

CLOCKS: Dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}

# (object path from the trainer, method, stage name); nested stages after their parent.
_STAGES: List[Tuple[str, str, str]] = [
    ("model", "forward", "forward (all)"),
    ("model", "preprocess_frames", "forward: frame normalisation"),
    ("model.backbone", "forward", "forward: backbone"),
    ("model.pixel_decoder", "forward_features", "forward: pixel decoder"),
    ("model.transformer_decoder", "forward", "forward: transformer decoder"),
    ("model", "prepare_targets", "forward: targets"),
    ("model.criterion", "forward", "forward: criterion (all)"),
    ("model.criterion.matcher", "forward", "criterion: matcher"),
    ("model.criterion", "_sample_uncertain_points", "criterion: uncertain points"),
    ("model.criterion", "extra_mask_losses", "criterion: extra (cross-frame) losses"),
    ("optimizer", "step", "optimizer step (with clipping)"),
    ("optimizer", "zero_grad", "optimizer zero_grad"),
    ("", "_write_metrics", "metrics (loss reductions, storage)"),
]


class StageTimer:
    """Accumulates the time spent in wrapped callables, by stage name."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.totals: Dict[str, float] = collections.defaultdict(float)

    def wrap(self, function: Callable, stage: str) -> Callable:
        @functools.wraps(function)
        def timed(*args, **kwargs):
            start = self.clock()
            try:
                return function(*args, **kwargs)
            finally:
                self.totals[stage] += self.clock() - start

        return timed

    def patch(self, owner, method: str, stage: str) -> None:
        """Time ``owner.method`` (an instance attribute shadows the class's method)."""
        setattr(owner, method, self.wrap(getattr(owner, method), stage))


def _resolve(root, path: str):
    for name in filter(None, path.split(".")):
        root = getattr(root, name, None)
        if root is None:
            return None
    return root


def _timed_batches(loader_iter: Iterator, timer: StageTimer) -> Iterator:
    while True:
        start = timer.clock()
        batch = next(loader_iter)
        timer.totals["data (loader and mapper)"] += timer.clock() - start
        yield batch


def profile_training_step(
    trainer, iters: int, warmup: int, clock: str = "cpu", synthetic_size=None
) -> Dict[str, object]:
    """Run ``warmup`` + ``iters`` steps of ``trainer``'s own ``run_step`` (a
    ``ifr.engine.trainer.Trainer``) and time its stages over the last ``iters``.

    ``synthetic_size`` (H, W): feed the batch ``tools/benchmark.py`` trains on (3
    rectangles per frame) instead of the data loader's.

    Returns:
        ``{"step_s": [s per step], "stages": {stage: s per step}, "threads": n}``.
    """
    timer = StageTimer(CLOCKS[clock])
    step_trainer = trainer._trainer  # detectron2's SimpleTrainer / AMPTrainer
    for path, method, stage in _STAGES:
        owner = _resolve(step_trainer, path)
        if owner is not None and hasattr(owner, method):
            timer.patch(owner, method, stage)
    backward = torch.Tensor.backward
    source = step_trainer._data_loader_iter
    if synthetic_size is not None:
        cfg = trainer.cfg
        generator = torch.Generator().manual_seed(0)
        batch = [
            synthetic_clip(
                cfg.INPUT.SAMPLING_FRAME_NUM,
                tuple(synthetic_size),
                3,
                cfg.MODEL.VIS.NUM_CLASSES,
                generator,
            )
            for _ in range(cfg.SOLVER.IMS_PER_BATCH)
        ]
        source = iter(lambda: batch, None)
    step_trainer._data_loader_iter = _timed_batches(source, timer)
    torch.Tensor.backward = timer.wrap(backward, "backward")
    step_s: List[float] = []
    try:
        with EventStorage(0) as storage:
            step_trainer.storage = storage
            for i in range(warmup + iters):
                if i == warmup:
                    timer.totals.clear()
                storage.iter = step_trainer.iter = i
                start = timer.clock()
                step_trainer.run_step()
                if i >= warmup:
                    step_s.append(timer.clock() - start)
                trainer.scheduler.step()
    finally:
        torch.Tensor.backward = backward
    stages = {k: v / iters for k, v in timer.totals.items()}
    return {"step_s": step_s, "stages": stages, "threads": torch.get_num_threads()}


def breakdown_rows(result: Dict[str, object]) -> List[Tuple[str, float, float]]:
    """(stage, ms per step, % of the median step) rows, stages in pipeline order."""
    median = statistics.median(result["step_s"])
    order = [stage for _, _, stage in _STAGES] + ["data (loader and mapper)", "backward"]
    stages = result["stages"]
    names = sorted(stages, key=lambda s: order.index(s) if s in order else len(order))
    return [(name, stages[name] * 1e3, 100 * stages[name] / median) for name in names]
