#!/usr/bin/env python
"""Speed and memory of a config on synthetic input (no dataset needed).

    python tools/benchmark.py --config-file configs/ytvis19/r50.yaml --size 360 640 \\
        [--lengths 50,100,500] [--original-size 3000 4000] [KEY VALUE ...]

``--size`` is the model's input size; ``--original-size`` the size of the video before
the test mapper resized it, where the masks are rendered (default: ``--size``).

Prints training iterations/s and peak memory, inference frames/s, and peak inference
memory against video length (device memory on GPU; process peak RSS on CPU).

The device report (no config file: it builds its own models):

    python tools/benchmark.py --report gpu --output report.json [--device cpu] [--small] \\
        [--budget-s 420] [--sections msda,train,inference,memory,frame_step]

runs MSDA (PyTorch vs Triton, fp32 vs bf16), the IFR-R50 and Mask2Former-VIS R50
training steps, IFR-R50 inference frames/s at 360p/720p (eager and compiled frame step),
peak memory against video length, and the decoder's frame recurrence alone; it writes
``--output`` (JSON, after every row) and prints markdown tables and the benchmark's thresholds.
``--small`` shrinks every size (tiny configs) so it runs on CPU in seconds.
"""

import argparse
import sys

from tabulate import tabulate

import ifr  # noqa: F401
from ifr.benchmark.measure import benchmark_inference, benchmark_training, memory_vs_length
from ifr.benchmark.report import SECTIONS, markdown, run_report
from ifr.engine.cli import run_tool
from ifr.engine.defaults import build_cfg


def _int_list(text: str):
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", help="the config to measure (not with --report)")
    parser.add_argument(
        "--report", choices=["gpu"], help="run the device report instead (see above)"
    )
    parser.add_argument("--output", help="--report: the JSON file to write")
    parser.add_argument("--device", default="cuda", help="--report: cuda or cpu")
    parser.add_argument("--small", action="store_true", help="--report: small sizes (CPU, tests)")
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="--report: no row starts after this"
    )
    parser.add_argument(
        "--sections",
        type=lambda text: [s for s in text.split(",") if s.strip()],
        default=list(SECTIONS),
        metavar="NAME,...",
        help=f"--report: sections to run ({','.join(SECTIONS)})",
    )
    parser.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    parser.add_argument("--iters", type=int, default=5, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--infer-frames", type=int, default=36, help="frames of the timed video")
    parser.add_argument(
        "--lengths",
        type=_int_list,
        default=[50, 100, 200],
        metavar="N,N,...",
        help="video lengths for the memory table (comma-separated; empty: none)",
    )
    parser.add_argument(
        "--original-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="video size the masks are rendered at in the memory table",
    )
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.report:
        if args.opts:
            raise ValueError(f"--report takes no config overrides, got {args.opts}")
        data = run_report(args.device, args.small, args.output, args.budget_s, args.sections)
        print()
        print(markdown(data))
        return
    if not args.config_file:
        raise ValueError("--config-file is required (or --report gpu)")
    cfg = build_cfg(args.config_file, args.opts)
    cfg.freeze()
    size = tuple(args.size)
    rows = [("device", cfg.MODEL.DEVICE), ("input size (H, W)", size)]
    if not args.skip_train:
        train = benchmark_training(cfg, size, args.iters, args.warmup)
        rows += [
            (
                f"train it/s (batch {cfg.SOLVER.IMS_PER_BATCH} "
                f"x {cfg.INPUT.SAMPLING_FRAME_NUM} frames)",
                f"{train['train_iter_per_s']:.3f}",
            ),
            ("train peak memory (MiB)", f"{train['train_peak_mem_mb']:.0f}"),
        ]
    infer = benchmark_inference(cfg, size, args.infer_frames, args.iters)
    rows.append(
        (
            f"inference frames/s ({args.infer_frames}-frame video)",
            f"{infer['infer_frames_per_s']:.2f}",
        )
    )
    print(tabulate(rows, tablefmt="github", headers=["metric", "value"]))
    if args.lengths:
        original = tuple(args.original_size) if args.original_size else None
        table = memory_vs_length(cfg, size, args.lengths, original)
        print()
        print(
            tabulate(
                [(n, f"{mb:.0f}") for n, mb in table],
                tablefmt="github",
                headers=["video frames", "peak inference memory (MiB)"],
            )
        )


if __name__ == "__main__":
    sys.exit(run_tool(main))  # bad input: one error line
