#!/usr/bin/env python
"""Train a grid of config values x seeds, locally (one run after another) or on SLURM.

    python tools/sweep.py --config-file configs/ytvis19/r50.yaml \\
        --param MODEL.IFR.LAMBDA_E=0,0.1,0.3,0.5,1.0 --seeds 5 --output-dir output/lambda_e
    python tools/sweep.py ... --launcher slurm --partition gpu --nodes 1 --gpus-per-node 8
    python tools/aggregate.py output/lambda_e

Re-running the same command skips finished runs, resumes interrupted ones and retries
failed ones. Trailing KEY VALUE pairs override the config for every run.
"""

import argparse
import shlex
import sys

import ifr  # noqa: F401
from ifr.engine.cli import EXIT_ERROR, run_tool
from ifr.experiments.grid import add_seed_arguments
from ifr.experiments.slurm import (
    SlurmOptions,
    check_slurm_available,
    job_name,
    make_train_job,
    submit_sweep_to_slurm,
)
from ifr.experiments.sweep import (
    add_train_script_argument,
    build_train_command,
    prepare_sweep,
    run_sweep_locally,
    unfinished_runs,
)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a swept config key and its values; several --param make a grid",
    )
    add_seed_arguments(parser)
    parser.add_argument(
        "--output-dir",
        required=True,
        metavar="DIR",
        help="the sweep folder: sweep.json and one folder per run",
    )
    add_train_script_argument(parser)
    parser.add_argument("--num-gpus", type=int, default=1, help="GPUs per run (local launcher)")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and print the commands; write and run nothing",
    )
    slurm = parser.add_argument_group("slurm (--launcher slurm)")
    slurm.add_argument("--partition")
    slurm.add_argument("--nodes", type=int, default=1)
    slurm.add_argument("--gpus-per-node", type=int, help="default: --num-gpus")
    slurm.add_argument("--cpus-per-task", type=int, default=8)
    slurm.add_argument("--timeout", type=int, default=24 * 60, metavar="MIN")
    slurm.add_argument("--mem-gb", type=int)
    slurm.add_argument(
        "--resubmit",
        action="store_true",
        help="submit runs recorded as submitted again (their jobs are gone)",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides for every run"
    )
    return parser


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    if args.gpus_per_node is not None and args.num_gpus not in (1, args.gpus_per_node):
        raise ValueError(
            f"--num-gpus {args.num_gpus} and --gpus-per-node {args.gpus_per_node} "
            "disagree; with slurm give --gpus-per-node"
        )
    return SlurmOptions(
        partition=args.partition,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node or args.num_gpus,
        cpus_per_task=args.cpus_per_task,
        timeout_min=args.timeout,
        mem_gb=args.mem_gb,
    )


def print_dry_run(manifest, sweep_dir: str, args: argparse.Namespace) -> None:
    todo = unfinished_runs(manifest, sweep_dir)
    print(f"Dry run: {len(manifest.runs)} runs, {len(todo)} unfinished")
    for record in todo:
        if args.launcher == "local":
            command = build_train_command(
                manifest, record, sweep_dir, ["--num-gpus", str(args.num_gpus)]
            )
        else:
            options = slurm_options(args)
            print(options.executor_parameters(job_name(record)))
            command = make_train_job(manifest, record, sweep_dir, options).command(
                0, "<first node>", "<job id>"
            )
        print(shlex.join(command))


def main(argv=None) -> int:
    args = argument_parser().parse_args(argv)
    try:
        options = slurm_options(args) if args.launcher == "slurm" else None
        if options is not None and not args.dry_run:
            check_slurm_available()
        manifest = prepare_sweep(
            args.output_dir,
            args.config_file,
            args.param,
            args.seeds,
            args.seed_list,
            args.opts,
            args.train_script,
            write=not args.dry_run,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if args.dry_run:
        print_dry_run(manifest, args.output_dir, args)
        return 0
    if options is not None:
        submit_sweep_to_slurm(manifest, args.output_dir, options, resubmit=args.resubmit)
        return 0
    try:
        result = run_sweep_locally(
            manifest,
            args.output_dir,
            num_gpus=args.num_gpus,
            echo=lambda line: print(line, flush=True),
        )
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (SweepInterrupted)
        print(
            f"sweep: interrupted ({e or 'Ctrl-C'}); re-run the same command to resume",
            file=sys.stderr,
        )
        return 130
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(run_tool(main))  # bad input: one error line
