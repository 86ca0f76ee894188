"""The device report (``tools/benchmark.py --report gpu``): the GPU path's speed and memory
figures in one run, written to a JSON file and printed as markdown tables.

Sections, in order (each guarded: one that fails records its error, the others still run;
the JSON is rewritten atomically after every row, so a run cut short keeps what it got):

- ``msda``: multi-scale deformable attention alone at the deformable encoder's scale
  (one query per pixel of strides 8/16/32), forward and forward+backward time and peak
  memory, pure PyTorch against Triton, fp32 against bf16 (``benchmark_msda``);
- ``train``: the training step (forward, backward, AdamW) of IFR-R50 and of the in-tree
  Mask2Former-VIS R50 on the same 2 clips x 2 frames at 480p, and their ratio;
- ``memory``: peak inference memory against video length (100, 300, 1,000 frames of a
  720p video at the test size 360, ``FEATURE_STORAGE cpu``), above what the model's
  weights already hold (``measure_inference_memory``);
- ``inference``: whole-video inference frames/s of IFR-R50 on a 36-frame video at 360p
  and 720p, eager, then with the compiled frame step (at 360p);
- ``frame_step``: the IFR decoder alone (the L x T recurrence), eager against compiled.

Models start from random weights (``MODEL.WEIGHTS ""``): speed and memory do not depend
on the weights. ``small=True`` shrinks every size (tiny configs) so the whole report runs
on CPU in seconds, for the tests; its figures mean nothing.

A row starts only while the time budget lasts (``budget_s``); the rest are recorded as
skipped. The benchmark's thresholds are checked at the end (``aims``).
"""

import dataclasses
import json
import math
import os
import platform
import subprocess
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from tabulate import tabulate

from ..engine.defaults import build_cfg
from ..modeling.registry import build_transformer_decoder
from ..modeling.transformer_decoder import ifr as ifr_decoder
from ..utils.atomic_io import atomic_write_json
from ..utils.precision import PRECISIONS, precision_autocast
from .measure import (
    benchmark_inference,
    benchmark_msda,
    benchmark_training,
    memory_vs_length,
    synchronize,
    timed_ms,
)

SECTIONS = ("msda", "train", "memory", "inference", "frame_step")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class ReportSizes:
    """Everything the report's size depends on."""

    # MSDA: (label, batch, image size) of the deformable encoder's input.
    msda_cases: Tuple[Tuple[str, int, Tuple[int, int]], ...]
    msda_iters: int
    # (label, config file) of the two training-step models, IFR first.
    train_models: Tuple[Tuple[str, str], ...]
    train_size: Tuple[int, int]  # frame size of the training clips
    train_clips: int
    train_frames: int
    train_iters: int
    train_warmup: int
    # (label, model input size) of the inference rows.
    infer_sizes: Tuple[Tuple[str, Tuple[int, int]], ...]
    infer_frames: int
    infer_iters: int
    # (precision, frame step) rows of the inference section: the eager ones at every
    # size first, then the compiled ones at the sizes of infer_compile_sizes.
    infer_variants: Tuple[Tuple[str, str], ...]
    infer_compile_sizes: Tuple[str, ...]
    memory_precisions: Tuple[str, ...]
    memory_lengths: Tuple[int, ...]
    memory_size: Tuple[int, int]  # model input size
    memory_original_size: Tuple[int, int]  # where masks are rendered
    frame_step_frames: int
    frame_step_size: Tuple[int, int]  # input size whose feature maps the decoder reads
    frame_step_iters: int
    # (precision, frame step): "eager", "compiled", "compiled, CUDA graphs" (CUDA only).
    frame_step_variants: Tuple[Tuple[str, str], ...]
    compile_backend: str  # "inductor" (the real one) or "aot_eager" (capture only)
    overrides: Tuple[str, ...] = ()  # KEY VALUE pairs for every model


FULL_SIZES = ReportSizes(
    msda_cases=(("480x640, 6,300 queries", 1, (480, 640)), ("720x1280, 18,920 q.", 1, (720, 1280))),
    msda_iters=10,
    train_models=(
        ("IFR-R50", "configs/ytvis19/r50.yaml"),
        ("Mask2Former-VIS R50", "configs/ytvis19/m2f_vis_r50.yaml"),
    ),
    train_size=(480, 853),  # a 720x1280 video at the shorter side 480
    train_clips=2,
    train_frames=2,
    train_iters=8,
    train_warmup=2,
    infer_sizes=(("360p", (360, 640)), ("720p", (720, 1280))),
    infer_frames=36,
    infer_iters=2,
    infer_variants=(
        ("fp32", "eager"),
        ("bf16", "eager"),
        ("bf16", "compiled"),
        ("bf16", "compiled, CUDA graphs"),
    ),
    infer_compile_sizes=("360p",),
    memory_precisions=("bf16", "fp32"),
    memory_lengths=(100, 300, 1000),
    memory_size=(360, 640),
    memory_original_size=(720, 1280),
    frame_step_frames=36,
    frame_step_size=(360, 640),
    frame_step_iters=3,
    frame_step_variants=(
        ("bf16", "eager"),
        ("bf16", "compiled"),
        ("bf16", "compiled, CUDA graphs"),
        ("fp32", "eager"),
        ("fp32", "compiled"),
    ),
    compile_backend="inductor",
)

SMALL_SIZES = ReportSizes(
    msda_cases=(("32x48", 1, (32, 48)),),
    msda_iters=1,
    train_models=(
        ("IFR tiny", "configs/tiny/ifr_tiny.yaml"),
        ("Mask2Former-VIS tiny", "configs/tiny/m2f_vis_tiny.yaml"),
    ),
    train_size=(64, 96),
    train_clips=1,
    train_frames=2,
    train_iters=1,
    train_warmup=0,
    infer_sizes=(("64x96", (64, 96)),),
    infer_frames=3,
    infer_iters=1,
    infer_variants=(("fp32", "eager"), ("bf16", "eager")),  # compiling: frame_step only
    infer_compile_sizes=(),
    memory_precisions=("bf16",),
    memory_lengths=(2, 4),
    memory_size=(64, 96),
    memory_original_size=(96, 144),
    frame_step_frames=3,
    frame_step_size=(64, 96),
    frame_step_iters=1,
    frame_step_variants=(("fp32", "eager"),),  # compiling takes a minute on CPU: tests/modeling/
    compile_backend="aot_eager",  # test_frame_step.py checks the compiled step
    overrides=("MODEL.VIS.TRAIN_NUM_POINTS", "256"),
)


class Budget:
    """Wall-clock budget of the report: a row starts only while time is left."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def exhausted(self) -> bool:
        return self.elapsed() >= self.seconds


class Report:
    """The report's JSON document, rewritten atomically after every change."""

    def __init__(self, path: Optional[str], meta: Dict[str, Any]):
        self.path = path
        self.data: Dict[str, Any] = {"meta": meta, "sections": {}, "aims": []}
        self.save()

    def section(self, name: str) -> Dict[str, Any]:
        return self.data["sections"].setdefault(name, {"rows": [], "error": None})

    def add_row(self, section: str, row: Dict[str, Any]) -> None:
        self.section(section)["rows"].append(row)
        print(f"[{section}] {_one_line(row)}", flush=True)
        self.save()

    def save(self) -> None:
        if self.path:
            atomic_write_json(self.path, _finite(self.data))


def _one_line(row: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={_format(v)}" for k, v in row.items())


def _finite(value: Any) -> Any:
    """NaN/inf -> None, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def environment(device: torch.device) -> Dict[str, Any]:
    """Where the figures were measured."""
    meta = {
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "git_commit": _git_commit(),
    }
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    try:
        import triton

        meta["triton"] = triton.__version__
    except ImportError:
        meta["triton"] = None
    return meta


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() or None


# ----------------------------------------------------------------- helpers
def _config(
    config_file: str, device: torch.device, precision: str, sizes: ReportSizes, *extra: str
):
    """A config at random initialisation on ``device`` in ``precision``; Detectron2's
    SOLVER.AMP.ENABLED off so that MODEL.PRECISION alone sets the precision."""
    opts = [
        "MODEL.WEIGHTS",
        "",
        "MODEL.DEVICE",
        str(device),
        "MODEL.PRECISION",
        precision,
        "SOLVER.AMP.ENABLED",
        "False",
        *sizes.overrides,
        *extra,
    ]
    cfg = build_cfg(os.path.join(REPO_ROOT, config_file), opts)
    cfg.freeze()
    return cfg


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float:
    """Peak device memory since the last reset (CUDA); NaN elsewhere (a process's peak
    RSS cannot be reset per row)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return float("nan")


# ----------------------------------------------------------------- sections
def section_msda(report: Report, budget: Budget, device: torch.device, sizes: ReportSizes):
    impls = ["pytorch", "triton"] if device.type == "cuda" else ["pytorch"]
    for label, batch, image_size in sizes.msda_cases:
        for precision in ("fp32", "bf16"):
            for impl in impls:
                if _skip(report, "msda", budget, case=label, precision=precision, impl=impl):
                    continue
                result = benchmark_msda(
                    device,
                    PRECISIONS[precision],
                    impl,
                    batch=batch,
                    image_size=image_size,
                    iters=sizes.msda_iters,
                    warmup=min(2, sizes.msda_iters),
                )
                report.add_row(
                    "msda", {"case": label, "precision": precision, "impl": impl, **result}
                )
                _free(device)


def section_train(report: Report, budget: Budget, device: torch.device, sizes: ReportSizes):
    for precision in ("bf16", "fp32"):
        for label, config_file in sizes.train_models:
            if _skip(report, "train", budget, model=label, precision=precision):
                continue
            cfg = _config(
                config_file,
                device,
                precision,
                sizes,
                "SOLVER.IMS_PER_BATCH",
                str(sizes.train_clips),
                "INPUT.SAMPLING_FRAME_NUM",
                str(sizes.train_frames),
            )
            result = benchmark_training(
                cfg, sizes.train_size, sizes.train_iters, sizes.train_warmup
            )
            report.add_row(
                "train",
                {
                    "model": label,
                    "precision": precision,
                    "clips x frames": f"{sizes.train_clips} x {sizes.train_frames}",
                    "size": "x".join(map(str, sizes.train_size)),
                    "step_ms": 1000 / result["train_iter_per_s"],
                    "peak_mib": result["train_peak_mem_mb"] if device.type == "cuda" else math.nan,
                },
            )
            _free(device)


def section_inference(report: Report, budget: Budget, device: torch.device, sizes: ReportSizes):
    ifr_config = sizes.train_models[0][1]
    variants = [v for v in sizes.infer_variants if device.type == "cuda" or "CUDA" not in v[1]]
    rows = [(*s, *v) for v in variants if v[1] == "eager" for s in sizes.infer_sizes]
    rows += [
        (*s, *v)
        for v in variants
        if v[1] != "eager"
        for s in sizes.infer_sizes
        if s[0] in sizes.infer_compile_sizes
    ]
    for size_label, size, precision, mode in rows:
        labels = {"size": size_label, "precision": precision, "frame step": mode}
        if _skip(report, "inference", budget, **labels):
            continue
        cfg = _config(ifr_config, device, precision, sizes, *_compile_opts(mode))
        with _compile_backend(sizes.compile_backend):
            start = time.perf_counter()
            result = benchmark_inference(cfg, size, sizes.infer_frames, sizes.infer_iters)
        report.add_row(
            "inference",
            {
                "size": size_label,
                "input": "x".join(map(str, size)),
                "frames": sizes.infer_frames,
                "precision": precision,
                "frame step": mode,
                "frames_per_s": result["infer_frames_per_s"],
                "wall_s (incl. warm-up/compile)": time.perf_counter() - start,
            },
        )
        _free(device)


def section_memory(report: Report, budget: Budget, device: torch.device, sizes: ReportSizes):
    ifr_config = sizes.train_models[0][1]
    for precision in sizes.memory_precisions:
        for length in sizes.memory_lengths:
            if _skip(report, "memory", budget, frames=length, precision=precision):
                continue
            cfg = _config(
                ifr_config, device, precision, sizes, "MODEL.VIS.TEST.FEATURE_STORAGE", "cpu"
            )
            start = time.perf_counter()
            [(_, peak)] = memory_vs_length(
                cfg, sizes.memory_size, [length], sizes.memory_original_size
            )
            report.add_row(
                "memory",
                {
                    "frames": length,
                    "input": "x".join(map(str, sizes.memory_size)),
                    "masks at": "x".join(map(str, sizes.memory_original_size)),
                    "precision": precision,
                    "feature storage": "cpu",
                    "peak_mib": peak,
                    "memory kind": "GPU allocated" if device.type == "cuda" else "CPU RSS",
                    "wall_s": time.perf_counter() - start,
                },
            )
            _free(device)


def section_frame_step(report: Report, budget: Budget, device: torch.device, sizes: ReportSizes):
    """The IFR decoder alone on stored features: inference over a whole video (eval, no
    autograd) and one training forward+backward on 2 clips x 2 frames."""
    ifr_config = sizes.train_models[0][1]
    for precision, mode in sizes.frame_step_variants:
        if device.type != "cuda" and "CUDA" in mode:
            continue
        if _skip(report, "frame_step", budget, **{"precision": precision, "frame step": mode}):
            continue
        cfg = _config(ifr_config, device, precision, sizes, *_compile_opts(mode))
        with _compile_backend(sizes.compile_backend):
            row = _decoder_timings(cfg, device, sizes, precision)
        report.add_row("frame_step", {"precision": precision, "frame step": mode, **row})
        _free(device)


def _decoder_timings(cfg, device: torch.device, sizes: ReportSizes, precision: str) -> dict:
    channels = cfg.MODEL.PIXEL_DECODER.CONVS_DIM
    decoder = build_transformer_decoder(
        cfg, in_channels=channels, mask_dim=cfg.MODEL.PIXEL_DECODER.MASK_DIM
    ).to(device)
    height, width = sizes.frame_step_size
    generator = torch.Generator().manual_seed(0)

    def features(batch: int, frames: int):
        levels = [
            torch.randn(
                batch,
                frames,
                channels,
                math.ceil(height / s),
                math.ceil(width / s),
                generator=generator,
            ).to(device)
            for s in (32, 16, 8)
        ]
        mask = torch.randn(
            batch,
            frames,
            cfg.MODEL.PIXEL_DECODER.MASK_DIM,
            math.ceil(height / 4),
            math.ceil(width / 4),
            generator=generator,
        ).to(device)
        return levels, mask

    video = features(1, sizes.frame_step_frames)
    clips = features(2, 2)

    def infer():
        with torch.no_grad(), precision_autocast(device.type, precision):
            decoder(*video, return_masks=False)

    def train():
        with precision_autocast(device.type, precision):
            out = decoder(*clips, return_masks=True)
        (out["pred_masks"].float().mean() + out["pred_logits"].float().mean()).backward()

    decoder.eval()
    start = time.perf_counter()
    infer()  # the first call compiles
    synchronize(device)
    first_call_s = time.perf_counter() - start
    _reset_peak(device)
    infer_ms = timed_ms(infer, device, sizes.frame_step_iters, warmup=1)
    infer_peak = _peak_mib(device)
    decoder.train()
    train()
    train_ms = timed_ms(train, device, sizes.frame_step_iters, warmup=1)
    layers = decoder.num_layers
    return {
        "video_frames": sizes.frame_step_frames,
        "infer_ms": infer_ms,
        "ms_per_step": infer_ms / (layers * sizes.frame_step_frames),
        "infer_peak_mib": infer_peak,
        "train_fwd_bwd_ms (2 x 2 frames)": train_ms,
        "first_call_s": first_call_s,
    }


def _compile_opts(mode: str) -> List[str]:
    if mode == "eager":
        return ["MODEL.IFR.COMPILE_FRAME_STEP", "False"]
    compile_mode = "reduce-overhead" if "CUDA graphs" in mode else "default"
    return ["MODEL.IFR.COMPILE_FRAME_STEP", "True", "MODEL.IFR.COMPILE_MODE", compile_mode]


class _compile_backend:
    """The compiled frame step built with ``backend`` for the duration of a row (the
    tests use "aot_eager": graph capture without code generation)."""

    def __init__(self, backend: str):
        self.backend = backend

    def __enter__(self):
        self.saved = dict(ifr_decoder._COMPILED_FRAME_STEPS)
        if self.backend != "inductor":
            ifr_decoder._COMPILED_FRAME_STEPS.clear()
            for mode in ifr_decoder.COMPILE_MODES:
                ifr_decoder._COMPILED_FRAME_STEPS[mode] = torch.compile(
                    ifr_decoder.frame_step, backend=self.backend
                )
        return self

    def __exit__(self, *exc):
        if self.backend != "inductor":
            ifr_decoder._COMPILED_FRAME_STEPS.clear()
            ifr_decoder._COMPILED_FRAME_STEPS.update(self.saved)


def _skip(report: Report, section: str, budget: Budget, **labels) -> bool:
    """Record a skipped row once the budget is spent."""
    if not budget.exhausted():
        return False
    report.add_row(section, {**labels, "skipped": f"time budget ({budget.seconds:.0f} s) spent"})
    return True


SECTION_FUNCTIONS = {
    "msda": section_msda,
    "train": section_train,
    "inference": section_inference,
    "memory": section_memory,
    "frame_step": section_frame_step,
}


# ----------------------------------------------------------------- aims
def check_aims(data: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The benchmark's thresholds (one H100/H200) against the measured rows; ``met`` is None where a
    figure is missing or was not measured on a CUDA device."""
    rows = {name: section["rows"] for name, section in data["sections"].items()}
    on_gpu = str(data["meta"].get("device", "")).startswith("cuda")
    aims = []

    def row(section, **match):
        for r in rows.get(section, []):
            if all(r.get(k) == v for k, v in match.items()) and "skipped" not in r:
                return r
        return None

    msda = rows.get("msda", [])
    cases = [r["case"] for r in msda if "case" in r]
    largest = cases[-1] if cases else None
    triton = row("msda", case=largest, precision="bf16", impl="triton")
    pytorch = row("msda", case=largest, precision="bf16", impl="pytorch")
    speedup = memory_ratio = None
    if triton and pytorch:
        speedup = pytorch["fwd_bwd_ms"] / triton["fwd_bwd_ms"]
        if triton.get("peak_mib") and pytorch.get("peak_mib"):
            memory_ratio = triton["peak_mib"] / pytorch["peak_mib"]
    aims.append(
        _aim(
            f"Triton MSDA bf16 fwd+bwd >= 2x faster than PyTorch bf16 ({largest})",
            speedup,
            lambda v: v >= 2.0,
            "x",
        )
    )
    aims.append(
        _aim("... at <= half PyTorch's peak memory", memory_ratio, lambda v: v <= 0.5, "of")
    )
    infer = [
        r["frames_per_s"]
        for r in rows.get("inference", [])
        if r.get("size") == "360p" and r.get("precision") == "bf16" and "frames_per_s" in r
    ]
    aims.append(
        _aim(
            "IFR-R50 offline inference >= 60 frames/s at 360p in bf16 (best frame step)",
            max(infer) if infer else None,
            lambda v: v >= 60,
            "frames/s",
        )
    )
    longest = row("memory", frames=1000, precision="bf16")
    aims.append(
        _aim(
            "a 1,000-frame 720p video in < 8 GB of GPU memory (bf16)",
            longest["peak_mib"] / 1024 if longest else None,
            lambda v: v < 8,
            "GiB",
        )
    )
    models = [label for label, _ in FULL_SIZES.train_models]
    ifr = row("train", model=models[0], precision="bf16")
    m2f = row("train", model=models[1], precision="bf16")
    aims.append(
        _aim(
            "IFR-R50 training step no slower than Mask2Former-VIS R50 (bf16, step time ratio)",
            ifr["step_ms"] / m2f["step_ms"] if ifr and m2f else None,
            lambda v: v <= 1.0,
            "x",
        )
    )
    if not on_gpu:
        for aim in aims:
            aim["met"] = None
    return aims


def _aim(text: str, value: Optional[float], test, unit: str) -> Dict[str, Any]:
    return {
        "aim": text,
        "value": value,
        "unit": unit,
        "met": None if value is None else bool(test(value)),
    }


def train_ratios(data: Dict[str, Any]) -> List[Dict[str, Any]]:
    """IFR's step time and peak memory over Mask2Former-VIS's, per precision."""
    rows = [r for r in data["sections"].get("train", {}).get("rows", []) if "step_ms" in r]
    ratios = []
    for precision in ("bf16", "fp32"):
        pair = [r for r in rows if r["precision"] == precision]
        if len(pair) == 2:
            ifr, m2f = pair
            ratios.append(
                {
                    "precision": precision,
                    "step time IFR / M2F-VIS": ifr["step_ms"] / m2f["step_ms"],
                    "peak memory IFR / M2F-VIS": _ratio(ifr["peak_mib"], m2f["peak_mib"]),
                }
            )
    return ratios


def _ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


# ----------------------------------------------------------------- main
def run_report(
    device: str = "cuda",
    small: bool = False,
    output: Optional[str] = None,
    budget_s: float = 420.0,
    sections: Sequence[str] = SECTIONS,
    sizes: Optional[ReportSizes] = None,
) -> Dict[str, Any]:
    """Run the report's ``sections`` on ``device``; returns its JSON document (also written
    to ``output``). ``budget_s``: no row starts after that many seconds (each row takes
    at most about a minute on one H100/H200 at the full sizes, so 420 s keeps the report
    under 8 minutes). ``sizes`` replaces the full or small sizes."""
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"--sections: unknown {unknown}; choose from {', '.join(SECTIONS)}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available here (use --device cpu)")
    sizes = sizes or (SMALL_SIZES if small else FULL_SIZES)
    budget = Budget(budget_s)
    meta = {**environment(device), "small": small, "budget_s": budget_s}
    meta["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report = Report(output, meta)
    for name in sections:
        section = report.section(name)
        start = time.perf_counter()
        try:
            SECTION_FUNCTIONS[name](report, budget, device, sizes)
        except Exception as error:  # one failing section must not stop the others
            section["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:500]
            print(f"[{name}] error: {section['error']}", flush=True)
            _free_after_error(device)
        section["elapsed_s"] = time.perf_counter() - start
        report.save()
    report.data["train_ratio"] = train_ratios(report.data)
    report.data["aims"] = check_aims(report.data)
    report.data["meta"]["elapsed_s"] = budget.elapsed()
    report.save()
    return report.data


def _free_after_error(device: torch.device) -> None:
    try:
        _free(device)
    except Exception:  # the device may be what failed; the other sections still try
        pass


# ----------------------------------------------------------------- tables
def markdown(data: Dict[str, Any]) -> str:
    """The report as markdown tables, one per section, then the ratios and the aims."""
    meta = data["meta"]
    lines = [
        f"Device report: {meta.get('gpu') or meta['device']}, torch {meta['torch']}, "
        f"triton {meta.get('triton')}, commit {str(meta.get('git_commit'))[:10]}, "
        f"{meta.get('elapsed_s', 0):.0f} s"
        + (" (small sizes: figures mean nothing)" if meta.get("small") else ""),
    ]
    for name, section in data["sections"].items():
        lines += ["", f"### {name}"]
        if section["rows"]:
            lines.append(_table(section["rows"]))
        if section.get("error"):
            lines.append(f"error: {section['error']}")
    if data.get("train_ratio"):
        lines += ["", "### train: IFR / Mask2Former-VIS", _table(data["train_ratio"])]
    if data.get("aims"):
        lines += ["", "### aims", _table(data["aims"])]
    return "\n".join(lines)


def _table(rows: List[Dict[str, Any]]) -> str:
    headers: List[str] = []
    for row in rows:
        headers += [k for k in row if k not in headers]
    body = [[_format(row.get(h, "")) for h in headers] for row in rows]
    return tabulate(body, headers=headers, tablefmt="github")


def _format(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def load_report(path: str) -> Dict[str, Any]:
    with open(path) as f:
        return json.load(f)
