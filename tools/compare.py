#!/usr/bin/env python
"""Compare configs: train each with the same data, iterations and seeds, evaluate, and
tabulate mean ± std per config (the paper's Table 3 plus AP).

    python tools/compare.py --configs configs/tiny/ifr_tiny.yaml configs/tiny/m2f_vis_tiny.yaml \\
        --seeds 3 --output-dir output/compare_tiny [KEY VALUE ...]

Writes DIR/table.md, DIR/table.csv and DIR/table.png; config A.yaml trains in DIR/A/seed=<s>.
Re-running the same command skips finished runs, resumes interrupted ones and retries
failed ones. Trailing KEY VALUE pairs override every config (put them last).
"""

import argparse
import shlex
import sys

import ifr  # noqa: F401
from ifr.engine.cli import EXIT_ERROR, run_tool
from ifr.experiments.compare import (
    dry_run_commands,
    load_comparison,
    prepare_comparison,
    run_comparison,
    write_comparison_table,
)
from ifr.experiments.grid import add_seed_arguments
from ifr.experiments.sweep import add_train_script_argument

CONFIG_SUFFIXES = (".yaml", ".yml")


def echo(line: str) -> None:
    """Progress lines reach a log file as they happen, not when the buffer fills."""
    print(line, flush=True)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        required=True,
        metavar="FILE",
        help="two or more config files; a row of the table each",
    )
    add_seed_arguments(parser)
    parser.add_argument(
        "--output-dir",
        required=True,
        metavar="DIR",
        help="the comparison folder: one sweep folder per config, the table",
    )
    parser.add_argument(
        "--metrics",
        metavar="AP,AP50,...",
        help="table columns (default: AP, AP50, AP75, AR1, AR10, IDF1, MOTA, "
        "IDP, IDR, IDs, HOTA, DetA, AssA, OneQuery, QueriesPerTrack: those "
        "the runs report)",
    )
    add_train_script_argument(parser)
    parser.add_argument("--num-gpus", type=int, default=1, help="GPUs per run")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and print the commands; write and run nothing",
    )
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="write the table from the runs finished so far; train nothing",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        metavar="KEY VALUE",
        help="config overrides for every run of every config",
    )
    return parser


def check_config_names(configs) -> None:
    for path in configs:
        if not path.endswith(CONFIG_SUFFIXES):
            raise ValueError(
                f"--configs {path}: not a .yaml file (KEY VALUE overrides go "
                "last, after the other options)"
            )


def main(argv=None) -> int:
    args = argument_parser().parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        check_config_names(args.configs)
        if args.table_only:
            sweeps = load_comparison(args.output_dir, args.configs)
        else:
            sweeps = prepare_comparison(
                args.output_dir,
                args.configs,
                args.seeds,
                args.seed_list,
                args.opts,
                args.train_script,
                write=not args.dry_run,
            )
    except (ValueError, FileNotFoundError) as e:
        print(f"compare: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if args.dry_run:
        commands = dry_run_commands(sweeps, args.num_gpus)
        print(f"Dry run: {len(commands)} runs to train")
        for command in commands:
            print(shlex.join(command))
        return 0
    failed = []
    if not args.table_only:
        try:
            results = run_comparison(sweeps, num_gpus=args.num_gpus, echo=echo)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (SweepInterrupted)
            print(
                f"compare: interrupted ({e or 'Ctrl-C'}); re-run the same command to resume "
                "(--table-only tabulates the runs finished so far)",
                file=sys.stderr,
            )
            return 130
        failed = [f"{label}/{r.name}" for label, records in results.items() for r in records]
    try:
        write_comparison_table(sweeps, args.output_dir, metrics)
    except ValueError as e:
        print(f"compare: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if failed:
        print(
            f"compare: {len(failed)} runs failed ({', '.join(failed)}); the table holds the "
            "finished ones. Re-run the same command to retry them.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))  # bad input: one error line
