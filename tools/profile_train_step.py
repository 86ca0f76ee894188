#!/usr/bin/env python
"""Where the time of a training step goes: the trainer of ``tools/train_net.py`` built from
the config, its own steps on the real data, each stage timed.

    python tools/profile_train_step.py --config-file configs/tiny/ifr_tiny.yaml \\
        [--iters 20] [--warmup 3] [--clock cpu|wall] [--synthetic H W] [KEY VALUE ...]

``--clock cpu`` (default) measures CPU time, what a shared machine measures best with one
thread (``OMP_NUM_THREADS=1``); ``--clock wall`` what the run takes. ``--synthetic H W``
feeds the batch ``tools/benchmark.py`` trains on instead of the data loader's. Nested
stages (the criterion's parts) are included in their parents; the step is the median.
The trainer's OUTPUT_DIR is a temporary folder, removed afterwards.
"""

import argparse
import statistics
import sys
import tempfile

from tabulate import tabulate

import ifr  # noqa: F401
from ifr.benchmark.step_profile import CLOCKS, breakdown_rows, profile_training_step
from ifr.engine.cli import run_tool
from ifr.engine.defaults import build_cfg
from ifr.engine.trainer import Trainer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--iters", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--synthetic", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        raise ValueError("--iters must be >= 1 and --warmup >= 0")
    with tempfile.TemporaryDirectory(prefix="profile_train_step_") as output_dir:
        cfg = build_cfg(args.config_file, [*args.opts, "OUTPUT_DIR", output_dir])
        cfg.freeze()
        trainer = Trainer(cfg)
        result = profile_training_step(
            trainer, args.iters, args.warmup, args.clock, synthetic_size=args.synthetic
        )
    steps = result["step_s"]
    print(
        f"{args.clock} time per step over {len(steps)} steps ({result['threads']} threads): "
        f"median {statistics.median(steps) * 1e3:.1f} ms, min {min(steps) * 1e3:.1f} ms"
    )
    rows = [(name, f"{ms:.1f}", f"{pct:.1f}") for name, ms, pct in breakdown_rows(result)]
    print(tabulate(rows, headers=["stage", "ms / step", "% of step"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
