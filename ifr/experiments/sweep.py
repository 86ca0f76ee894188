"""Sweeps: many ``train_net.py`` runs over a grid of config values and seeds.

:func:`prepare_sweep` validates the command line against the config and writes the
``sweep.json`` manifest; :func:`run_sweep_locally` trains the unfinished runs one after
another on this machine (``ifr.experiments.slurm`` submits them to a cluster instead).

Every run is ``python TRAIN_SCRIPT --config-file CFG <launch args> --resume [overrides]
[swept values] SEED s OUTPUT_DIR <sweep dir>/<run name>``. ``--resume`` is always passed:
with no checkpoint detectron2 starts from scratch, so a re-run resumes an interrupted run
and starts a new one alike. A run is finished when its ``final_metrics.json`` exists.
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence

from ..utils.paths import check_output_folder
from .grid import OUTPUT_DIR_KEY, SEED_KEY, expand_grid, parse_param, parse_seeds
from .manifest import (
    CONSOLE_LOG_NAME,
    DONE,
    FAILED,
    INTERRUPTED,
    RUNNING,
    RunRecord,
    SweepManifest,
    is_finished,
    load_manifest,
    manifest_path,
    merge_manifests,
    refresh_states,
    save_manifest,
)
from .validation import build_reference_config, parse_overrides, validate_sweep

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_TRAIN_SCRIPT = os.path.join(REPO_ROOT, "tools", "train_net.py")
# Seconds a run gets to exit after SIGTERM before it is killed, when the sweep is stopped.
TERMINATE_GRACE_S = 30.0


def add_train_script_argument(parser: argparse.ArgumentParser) -> None:
    """``--train-script PATH`` (default ``tools/train_net.py``); the sweep and comparison
    tools share it."""
    parser.add_argument(
        "--train-script",
        default=DEFAULT_TRAIN_SCRIPT,
        metavar="PATH",
        help="training entry point with train_net.py's command line",
    )


class SweepInterrupted(KeyboardInterrupt):
    """The sweep received SIGTERM (Ctrl-C raises KeyboardInterrupt itself)."""


@dataclass
class SweepResult:
    finished: List[str]  # run names with final_metrics.json
    failed: List[RunRecord]


def prepare_sweep(
    sweep_dir: str,
    config_file: str,
    param_texts: Sequence[str] = (),
    num_seeds: Optional[int] = None,
    seed_list: Optional[str] = None,
    overrides: Sequence[str] = (),
    train_script: str = DEFAULT_TRAIN_SCRIPT,
    write: bool = True,
) -> SweepManifest:
    """Validates a sweep (every error before any run starts) and returns its manifest,
    merged with the one already in ``sweep_dir`` if any. ``write=False`` (dry run) leaves
    the disk untouched.

    Raises ValueError / FileNotFoundError naming the argument, key or file at fault.
    """
    check_output_folder("--output-dir", sweep_dir)
    sweep_dir, config_file = os.path.abspath(sweep_dir), os.path.abspath(config_file)
    train_script = os.path.abspath(train_script)
    if not os.path.isfile(train_script):
        raise FileNotFoundError(
            f"training script {train_script} not found; pass --train-script PATH"
        )
    params = [parse_param(text) for text in param_texts]
    seeds = parse_seeds(num_seeds, seed_list)
    cfg = build_reference_config(config_file)
    params, override_pairs = validate_sweep(cfg, params, parse_overrides(overrides))
    manifest = SweepManifest.create(
        config_file, train_script, params, seeds, override_pairs, expand_grid(params, seeds)
    )
    if os.path.isfile(manifest_path(sweep_dir)):
        manifest = merge_manifests(manifest, load_manifest(sweep_dir), sweep_dir)
    refresh_states(manifest, sweep_dir)
    if write:
        save_manifest(manifest, sweep_dir)
    return manifest


def run_dir(sweep_dir: str, record: RunRecord) -> str:
    return os.path.join(os.path.abspath(sweep_dir), record.name)


def console_log_path(sweep_dir: str, record: RunRecord) -> str:
    return os.path.join(run_dir(sweep_dir, record), CONSOLE_LOG_NAME)


def run_label(record: RunRecord) -> str:
    """``"MODEL.IFR.LAMBDA_E=0.3 seed=1"``: a run as the console shows it."""
    return " ".join([f"{k}={v}" for k, v in record.setting.items()] + [f"seed={record.seed}"])


def build_train_command(
    manifest: SweepManifest, record: RunRecord, sweep_dir: str, launch_args: Sequence[str]
) -> List[str]:
    """The command of one run, the one place it is built (local runs and SLURM jobs alike):
    ``python TRAIN_SCRIPT --config-file CFG <launch_args> --resume [overrides] [swept
    values] SEED s OUTPUT_DIR <run dir>``.

    ``launch_args`` are the process-group flags (``--num-gpus N`` locally;
    ``--num-machines``/``--machine-rank``/``--dist-url`` too on a cluster). They go before
    the config opts, which detectron2 parses as a remainder.
    """
    opts: List[str] = []
    for key, value in list(manifest.overrides) + list(record.setting.items()):
        opts += [key, value]
    opts += [SEED_KEY, str(record.seed), OUTPUT_DIR_KEY, run_dir(sweep_dir, record)]
    head = [sys.executable, manifest.train_script, "--config-file", manifest.config_file]
    return head + list(launch_args) + ["--resume"] + opts


def unfinished_runs(manifest: SweepManifest, sweep_dir: str) -> List[RunRecord]:
    return [r for r in manifest.runs.values() if not is_finished(sweep_dir, r.name)]


def run_sweep_locally(
    manifest: SweepManifest,
    sweep_dir: str,
    num_gpus: int = 1,
    echo: Callable[[str], None] = print,
) -> SweepResult:
    """Trains every unfinished run, one after another, and reports each on the console.

    A failed run is recorded and the sweep goes on. On Ctrl-C or SIGTERM the current run's
    process group is terminated, the run is recorded as interrupted and the exception
    propagates; the manifest on disk stays consistent throughout.
    """
    refresh_states(manifest, sweep_dir)
    records = list(manifest.runs.values())
    total = len(records)
    todo = unfinished_runs(manifest, sweep_dir)
    echo(f"Sweep {sweep_dir}: {total} runs, {total - len(todo)} finished, {len(todo)} to run")
    failed: List[RunRecord] = []
    with sigterm_raises_interrupt():
        for index, record in enumerate(records, start=1):
            prefix = f"[{index}/{total}] {run_label(record)}"
            if not train_run_locally(manifest, record, sweep_dir, num_gpus, echo, prefix):
                failed.append(record)
    finished = [r.name for r in records if is_finished(sweep_dir, r.name)]
    _echo_summary(echo, sweep_dir, total, finished, failed)
    return SweepResult(finished, failed)


def train_run_locally(
    manifest: SweepManifest,
    record: RunRecord,
    sweep_dir: str,
    num_gpus: int,
    echo: Callable[[str], None],
    prefix: str,
) -> bool:
    """Trains one run of ``manifest`` unless it is finished, reporting it on the console
    as ``<prefix>: ...``; True when the run is finished afterwards. Interrupts propagate
    (see :func:`run_sweep_locally`)."""
    if is_finished(sweep_dir, record.name):
        echo(f"{prefix}: done (finished earlier, skipped)")
        return True
    command = build_train_command(manifest, record, sweep_dir, ["--num-gpus", str(num_gpus)])
    echo(f"{prefix}: running (log: {console_log_path(sweep_dir, record)})")
    start = time.monotonic()
    _run_one(manifest, record, sweep_dir, command)
    elapsed = _format_duration(time.monotonic() - start)
    if record.state == DONE:
        echo(f"{prefix}: done in {elapsed}")
        return True
    echo(f"{prefix}: FAILED ({failure_reason(record)}, log: {console_log_path(sweep_dir, record)})")
    return False


def _run_one(
    manifest: SweepManifest, record: RunRecord, sweep_dir: str, command: List[str]
) -> None:
    """Runs one training process, its output appended to the run's console log."""
    os.makedirs(run_dir(sweep_dir, record), exist_ok=True)
    record.mark(RUNNING, attempts=record.attempts + 1, exit_code=None)
    save_manifest(manifest, sweep_dir)
    with open(console_log_path(sweep_dir, record), "a") as log:
        log.write(
            f"\n=== sweep attempt {record.attempts} at {record.updated}\n"
            f"=== {subprocess.list2cmdline(command)}\n"
        )
        log.flush()
        # Own process group: stopping the sweep also stops the workers train_net spawns.
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            exit_code = process.wait()
        except BaseException:
            _terminate_group(process)
            record.mark(INTERRUPTED, exit_code=process.returncode)
            save_manifest(manifest, sweep_dir)
            raise
    if is_finished(sweep_dir, record.name):
        record.mark(DONE, exit_code=exit_code)
    else:
        record.mark(FAILED, exit_code=exit_code)
    save_manifest(manifest, sweep_dir)


def _terminate_group(process: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, TERMINATE_GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def sigterm_raises_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`SweepInterrupted`, so it is cleaned up like
    Ctrl-C. Signal handlers can only be set from the main thread; elsewhere, do nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SweepInterrupted(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def failure_reason(record: RunRecord) -> str:
    if record.exit_code == 0:
        return "exit code 0 but no final_metrics.json"
    return f"exit code {record.exit_code}"


def _format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _echo_summary(echo, sweep_dir, total, finished, failed) -> None:
    echo(f"Sweep {sweep_dir}: {len(finished)}/{total} runs finished, {len(failed)} failed")
    for record in failed:
        echo(
            f"  FAILED {run_label(record)} ({failure_reason(record)}): "
            f"{console_log_path(sweep_dir, record)}"
        )
    if failed:
        echo("Re-run the same command to retry the failed runs (finished ones are skipped).")
