"""Comparing configs (IFR against a baseline): every config trained with the same data,
iterations, overrides and seeds, then one table row per config, as the paper's Table 3
plus AP.

A comparison is a sweep whose axis is the config file, made of ordinary sweeps: config
``A.yaml`` is the sweep ``DIR/A`` (its ``sweep.json``, one folder ``DIR/A/seed=<s>`` per
seed), prepared by :func:`ifr.experiments.sweep.prepare_sweep`, each run trained by
:func:`ifr.experiments.sweep.train_run_locally`, seed by seed across the configs. So it
resumes as a sweep does: finished runs are skipped, the others start with ``--resume``;
a failed run does not stop the others; ``tools/aggregate.py DIR/A`` works on one config.

The table (``DIR/table.md``, ``.csv``, ``.png``): ``mean ± std (n)`` of AP, AP50, AP75,
AR1, AR10, IDF1, MOTA, IDP, IDR, IDs, and of HOTA, DetA, AssA, OneQuery, QueriesPerTrack
where the runs report them; sample std (ddof=1) over the seeds, n the runs that report the
metric (a -1, "nothing to measure", is left out).
"""

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from detectron2.config import CfgNode

from ..engine.defaults import build_cfg
from ..engine.trainer import FINAL_METRICS_FILE
from ..evaluation.tracking import TRACKING_METRIC_NAMES
from ..utils.atomic_io import atomic_write_text
from ..utils.paths import check_output_folder
from .aggregate import (
    DEFAULT_METRICS,
    choose_metrics,
    collect_metrics,
    missing_runs,
    summarize_setting,
    write_csv,
)
from .manifest import (
    RunRecord,
    SweepManifest,
    load_manifest,
    manifest_path,
    refresh_states,
    save_manifest,
)
from .plot import save_comparison_figure
from .summary import SweepSummary, format_stats
from .sweep import (
    DEFAULT_TRAIN_SCRIPT,
    build_train_command,
    console_log_path,
    failure_reason,
    prepare_sweep,
    run_label,
    sigterm_raises_interrupt,
    train_run_locally,
    unfinished_runs,
)

CONFIG_COLUMN = "config"
# Columns shown when the runs report them. The tracking ones (ifr.evaluation.tracking)
# include HOTA and its detection / association parts (higher-order tracking accuracy),
# OneQuery (% of ground-truth tracks covered by exactly one predicted track) and
# QueriesPerTrack (mean number of predicted tracks covering one).
TABLE_METRICS = DEFAULT_METRICS + TRACKING_METRIC_NAMES
TABLE_MD, TABLE_CSV, TABLE_PNG = "table.md", "table.csv", "table.png"
# What every compared config must share, after the overrides: the data and the schedule.
SHARED_KEYS = ("DATASETS.TRAIN", "DATASETS.TEST", "SOLVER.MAX_ITER", "SOLVER.IMS_PER_BATCH")


@dataclass
class ConfigSweep:
    """One compared config: its row label (the file's stem), its sweep folder, manifest."""

    label: str
    sweep_dir: str
    manifest: SweepManifest


def config_label(config_file: str) -> str:
    """``configs/tiny/ifr_tiny.yaml`` -> ``ifr_tiny``: the config's row and folder name."""
    return os.path.splitext(os.path.basename(config_file))[0]


def check_labels(config_files: Sequence[str]) -> List[str]:
    """The labels of the configs; raises ValueError for fewer than two configs or two
    configs of one name (their runs would share a folder)."""
    if len(config_files) < 2:
        raise ValueError(
            f"--configs: a comparison needs at least two configs, got {list(config_files)}"
        )
    labels: Dict[str, str] = {}
    for path in config_files:
        label = config_label(path)
        if label in labels:
            raise ValueError(
                f"--configs: {labels[label]} and {path} have the same name "
                f"{label!r}; copy one to a file of another name"
            )
        labels[label] = path
    return list(labels)


def check_shared_settings(config_files: Sequence[str], overrides: Sequence[str]) -> None:
    """Raises ValueError unless every config, with the overrides, trains on the same data
    for the same iterations and batch (:data:`SHARED_KEYS`), naming the key and values.
    The configs and overrides must be valid (:func:`prepare_comparison` checks them first)."""
    cfgs = {config_label(path): build_cfg(path, overrides) for path in config_files}
    for key in SHARED_KEYS:
        values = {label: _lookup(cfg, key) for label, cfg in cfgs.items()}
        if len({repr(v) for v in values.values()}) > 1:
            listed = ", ".join(f"{label}: {value!r}" for label, value in values.items())
            raise ValueError(
                f"the configs differ in {key} ({listed}); a comparison trains every config "
                f"on the same data for the same iterations: pass {key} VALUE to set it for all"
            )


def prepare_comparison(
    output_dir: str,
    config_files: Sequence[str],
    num_seeds: Optional[int] = None,
    seed_list: Optional[str] = None,
    overrides: Sequence[str] = (),
    train_script: str = DEFAULT_TRAIN_SCRIPT,
    write: bool = True,
) -> List[ConfigSweep]:
    """Validates every config (all errors before any file is written) and returns one sweep
    per config, merged with the one already in ``DIR/<label>`` if any; ``write=False`` (dry
    run) leaves the disk untouched.

    Raises ValueError / FileNotFoundError naming the argument, config, key or file at fault.
    """
    check_output_folder("--output-dir", output_dir)
    labels = check_labels(config_files)
    sweeps = []
    for label, config_file in zip(labels, config_files):
        sweep_dir = os.path.join(os.path.abspath(output_dir), label)
        manifest = prepare_sweep(
            sweep_dir, config_file, (), num_seeds, seed_list, overrides, train_script, write=False
        )
        sweeps.append(ConfigSweep(label, sweep_dir, manifest))
    check_shared_settings(config_files, overrides)
    if write:
        for sweep in sweeps:
            save_manifest(sweep.manifest, sweep.sweep_dir)
    return sweeps


def load_comparison(output_dir: str, config_files: Sequence[str]) -> List[ConfigSweep]:
    """The sweeps already in ``output_dir`` for ``config_files`` (``--table-only``): their
    own manifests, whatever command trained them, so tabulating needs no overrides."""
    sweeps = []
    for label in check_labels(config_files):
        sweep_dir = os.path.join(os.path.abspath(output_dir), label)
        if not os.path.isfile(manifest_path(sweep_dir)):
            raise FileNotFoundError(
                f"{manifest_path(sweep_dir)}: no comparison of {label} in {output_dir} yet "
                "(--table-only tabulates runs that a compare command trained there)"
            )
        manifest = load_manifest(sweep_dir)
        refresh_states(manifest, sweep_dir)
        sweeps.append(ConfigSweep(label, sweep_dir, manifest))
    return sweeps


def dry_run_commands(sweeps: Sequence[ConfigSweep], num_gpus: int = 1) -> List[List[str]]:
    """The ``train_net.py`` command of every unfinished run, config after config."""
    launch_args = ["--num-gpus", str(num_gpus)]
    return [
        build_train_command(s.manifest, record, s.sweep_dir, launch_args)
        for s in sweeps
        for record in unfinished_runs(s.manifest, s.sweep_dir)
    ]


def run_order(sweeps: Sequence[ConfigSweep]) -> List[Tuple[ConfigSweep, RunRecord]]:
    """Every run, seed by seed and, within a seed, config by config: a comparison stopped
    early has as many runs of every config."""
    records = [list(sweep.manifest.runs.values()) for sweep in sweeps]
    rounds = max(len(r) for r in records)
    return [
        (sweep, runs[i])
        for i in range(rounds)
        for sweep, runs in zip(sweeps, records)
        if i < len(runs)
    ]


def run_comparison(
    sweeps: Sequence[ConfigSweep], num_gpus: int = 1, echo: Callable[[str], None] = print
) -> Dict[str, List[RunRecord]]:
    """Trains the unfinished runs in :func:`run_order`; returns label -> failed runs.

    Each run goes through :func:`ifr.experiments.sweep.train_run_locally`, so it is
    skipped when finished, resumed otherwise, recorded in its config's ``sweep.json``. A
    failed run does not stop the others; on Ctrl-C or SIGTERM the current run is stopped
    and recorded as interrupted, and the exception propagates.
    """
    for sweep in sweeps:
        refresh_states(sweep.manifest, sweep.sweep_dir)
        todo = len(unfinished_runs(sweep.manifest, sweep.sweep_dir))
        total = len(sweep.manifest.runs)
        echo(
            f"{sweep.label}: {total} runs in {sweep.sweep_dir}, {total - todo} finished, "
            f"{todo} to run"
        )
    order = run_order(sweeps)
    failed: Dict[str, List[RunRecord]] = {sweep.label: [] for sweep in sweeps}
    with sigterm_raises_interrupt():
        for index, (sweep, record) in enumerate(order, start=1):
            prefix = f"[{index}/{len(order)}] {sweep.label} {run_label(record)}"
            if not train_run_locally(
                sweep.manifest, record, sweep.sweep_dir, num_gpus, echo, prefix
            ):
                failed[sweep.label].append(record)
    num_failed = sum(len(records) for records in failed.values())
    echo(f"Comparison: {len(order) - num_failed}/{len(order)} runs finished, {num_failed} failed")
    for sweep in sweeps:
        for record in failed[sweep.label]:
            echo(
                f"  FAILED {sweep.label} {run_label(record)} ({failure_reason(record)}): "
                f"{console_log_path(sweep.sweep_dir, record)}"
            )
    return failed


def summarize_comparison(
    sweeps: Sequence[ConfigSweep], metrics: Optional[Sequence[str]] = None
) -> SweepSummary:
    """One setting ``{"config": label}`` per config, in the given order, over its finished
    runs; the columns are ``metrics`` or the :data:`TABLE_METRICS` that some run reports.
    Runs without (readable) metrics are listed as missing, named ``<label>/seed=<s>``."""
    per_config: List[Tuple[str, int, Dict[str, Dict[str, float]]]] = []
    missing = []
    for sweep in sweeps:
        manifest = sweep.manifest
        refresh_states(manifest, sweep.sweep_dir)
        run_metrics, unreadable = collect_metrics(manifest, sweep.sweep_dir)
        per_config.append((sweep.label, len(manifest.runs), run_metrics))
        missing += missing_runs(
            manifest, sweep.sweep_dir, run_metrics, unreadable, prefix=f"{sweep.label}/"
        )
    every_run = {f"{label}/{name}": m for label, _, runs in per_config for name, m in runs.items()}
    metrics = choose_metrics(every_run, metrics, defaults=TABLE_METRICS)
    settings = [
        summarize_setting({CONFIG_COLUMN: label}, list(runs.values()), metrics, num_planned)
        for label, num_planned, runs in per_config
    ]
    return SweepSummary([CONFIG_COLUMN], metrics, settings, missing)


def format_table(summary: SweepSummary, seeds: Sequence[int]) -> str:
    """The markdown table: one row per config, ``runs`` = finished / planned."""
    header = [CONFIG_COLUMN, "runs"] + summary.metrics
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary.settings:
        cells = [s.setting[CONFIG_COLUMN], f"{s.num_runs}/{s.num_planned}"]
        cells += [format_stats(s.stats.get(m)) for m in summary.metrics]
        lines.append("| " + " | ".join(cells) + " |")
    seed_text = ", ".join(str(seed) for seed in seeds)
    text = (
        f"Mean ± sample std (ddof=1) (n runs) over seeds {seed_text}; every config "
        "trained on the same data for the same iterations.\n\n" + "\n".join(lines)
    )
    if summary.missing:
        text += f"\n\nMissing runs ({len(summary.missing)}, no readable {FINAL_METRICS_FILE}):\n\n"
        text += "\n".join(f"- {m.name} ({m.state}): {m.log}" for m in summary.missing)
    return text + "\n"


def write_comparison_table(
    sweeps: Sequence[ConfigSweep],
    output_dir: str,
    metrics: Optional[Sequence[str]] = None,
    echo: Callable[[str], None] = print,
) -> SweepSummary:
    """Writes ``table.md``, ``table.csv`` and ``table.png`` into ``output_dir``; raises
    ValueError when no run of any config has finished."""
    summary = summarize_comparison(sweeps, metrics)
    if not any(s.num_runs for s in summary.settings):
        raise ValueError(f"{output_dir}: no finished run ({FINAL_METRICS_FILE}) to compare")
    seeds = sorted({seed for sweep in sweeps for seed in sweep.manifest.seeds})
    table = format_table(summary, seeds)
    atomic_write_text(os.path.join(output_dir, TABLE_MD), table)
    write_csv(summary, os.path.join(output_dir, TABLE_CSV))
    save_comparison_figure(summary, os.path.join(output_dir, TABLE_PNG))
    echo(table)
    echo(f"Wrote {TABLE_MD}, {TABLE_CSV} and {TABLE_PNG} in {output_dir}")
    return summary


def _lookup(cfg: CfgNode, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg
