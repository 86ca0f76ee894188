"""Statistics of a sweep: every run's ``final_metrics.json``, grouped by setting (the swept
values without the seed), as mean ± sample std (ddof=1) over the seeds.

A setting with one finished run has no std: the tables show ``-`` (and the CSV an empty
cell) rather than a 0 that would read as "no spread". Runs without ``final_metrics.json``
are listed as missing, with their state and log, never dropped silently.
"""

import csv
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..engine.trainer import FINAL_METRICS_FILE
from ..evaluation.tracking import TRACKING_METRIC_NAMES
from ..utils.atomic_io import atomic_open, atomic_write_text
from ..utils.json_io import read_json
from .manifest import SweepManifest, load_manifest, refresh_states
from .plot import choose_x_key, save_summary_figure
from .summary import MissingRun, SettingSummary, SweepSummary, format_stats, mean_std
from .sweep import console_log_path

DEFAULT_METRICS = ("AP", "AP50", "AP75", "AR1", "AR10")
SUMMARY_MD, SUMMARY_CSV, SUMMARY_PNG = "summary.md", "summary.csv", "summary.png"
# COCO-style evaluators report -1 for a metric with nothing to measure (APm without medium
# objects, IDP without predictions); such a value is left out of the statistics. MOTA can
# truly be negative, so its values are all kept.
UNDEFINED_VALUE = -1.0
MAY_BE_NEGATIVE = ("MOTA",)


def read_final_metrics(path: str) -> Dict[str, float]:
    """The flat ``{metric: number}`` object of a run; raises ValueError naming the file."""
    data = read_json(path, "final metrics file")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object of metrics")
    bad = {k: v for k, v in data.items() if isinstance(v, bool) or not isinstance(v, (int, float))}
    if bad:
        key, value = next(iter(bad.items()))
        raise ValueError(f"{path}: {key!r} is {value!r}, not a number")
    return {k: float(v) for k, v in data.items()}


def collect_metrics(
    manifest: SweepManifest, sweep_dir: str
) -> Tuple[Dict[str, Dict[str, float]], Dict[str, str]]:
    """``(run name -> metrics, run name -> error)`` over the finished runs of the manifest.

    A ``final_metrics.json`` that cannot be read (truncated, not an object) is reported
    under its run, not raised: one bad file must not hide the statistics of the others.
    """
    metrics, errors = {}, {}
    for name in manifest.runs:
        path = os.path.join(sweep_dir, name, FINAL_METRICS_FILE)
        if os.path.isfile(path):
            try:
                metrics[name] = read_final_metrics(path)
            except (ValueError, OSError) as e:
                errors[name] = str(e)
    return metrics, errors


def choose_metrics(
    run_metrics: Dict[str, Dict[str, float]],
    requested: Optional[Sequence[str]] = None,
    defaults: Sequence[str] = DEFAULT_METRICS + TRACKING_METRIC_NAMES,
) -> List[str]:
    """The requested metrics (each must occur in some run), else those of ``defaults`` (the
    default ones and the tracking ones) that the runs report, in that order."""
    present = set().union(*run_metrics.values()) if run_metrics else set()
    if requested:
        absent = [m for m in requested if m not in present]
        if absent and run_metrics:
            raise ValueError(
                f"--metrics: {absent} in no run's {FINAL_METRICS_FILE} (found: {sorted(present)})"
            )
        return list(requested)
    return [m for m in defaults if m in present]


def is_defined(metric: str, value: Optional[float]) -> bool:
    """False for a missing value and for the -1 'nothing to measure' of a non-negative metric."""
    if value is None:
        return False
    return metric in MAY_BE_NEGATIVE or value != UNDEFINED_VALUE


def summarize(
    manifest: SweepManifest, sweep_dir: str, metrics: Optional[Sequence[str]] = None
) -> SweepSummary:
    """Groups the finished runs of a sweep by setting, in grid order."""
    run_metrics, unreadable = collect_metrics(manifest, sweep_dir)
    metrics = choose_metrics(run_metrics, metrics)
    groups: Dict[tuple, List[str]] = {}
    for record in manifest.runs.values():
        groups.setdefault(tuple(record.setting.items()), []).append(record.name)
    settings = [
        summarize_setting(
            dict(setting),
            [run_metrics[n] for n in names if n in run_metrics],
            metrics,
            num_planned=len(names),
        )
        for setting, names in groups.items()
    ]
    missing = missing_runs(manifest, sweep_dir, run_metrics, unreadable)
    return SweepSummary(manifest.param_keys, metrics, settings, missing)


def summarize_setting(
    setting: Dict[str, str],
    finished: Sequence[Dict[str, float]],
    metrics: Sequence[str],
    num_planned: int,
) -> SettingSummary:
    """Mean ± std of every metric over the finished runs (one metrics dict per seed) of one
    setting; a metric no run defines is left out of ``stats``."""
    summary = SettingSummary(dict(setting), len(finished), num_planned)
    for metric in metrics:
        values = [m[metric] for m in finished if is_defined(metric, m.get(metric))]
        if values:
            summary.stats[metric] = mean_std(values)
    return summary


def missing_runs(
    manifest: SweepManifest,
    sweep_dir: str,
    run_metrics: Dict[str, dict],
    unreadable: Dict[str, str],
    prefix: str = "",
) -> List[MissingRun]:
    """The runs of the manifest without metrics, with their state (or why their file could
    not be read) and console log; ``prefix`` goes before each run name."""
    missing = []
    for record in manifest.runs.values():
        if record.name in run_metrics:
            continue
        state = record.state
        if record.name in unreadable:
            state = (
                f"unreadable: {unreadable[record.name]}; delete the file and re-run to "
                "train the run again"
            )
        missing.append(MissingRun(prefix + record.name, state, console_log_path(sweep_dir, record)))
    return missing


def format_markdown(summary: SweepSummary) -> str:
    header = summary.param_keys + ["n"] + summary.metrics
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary.settings:
        cells = [s.setting[k] for k in summary.param_keys] + [str(s.num_runs)]
        cells += [format_stats(s.stats.get(m)) for m in summary.metrics]
        lines.append("| " + " | ".join(cells) + " |")
    text = (
        "Mean ± sample std (ddof=1) (runs with the metric) over seeds; n: finished "
        "runs.\n\n" + "\n".join(lines)
    )
    if summary.missing:
        text += f"\n\nMissing runs ({len(summary.missing)}, no readable {FINAL_METRICS_FILE}):\n\n"
        text += "\n".join(f"- {m.name} ({m.state}): {m.log}" for m in summary.missing)
    return text + "\n"


def write_csv(summary: SweepSummary, path: str) -> None:
    """One row per setting: swept values, ``n``, then ``<m>_mean, <m>_std, <m>_n``."""
    columns = summary.param_keys + ["n"]
    columns += [f"{m}_{s}" for m in summary.metrics for s in ("mean", "std", "n")]
    with atomic_open(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for s in summary.settings:
            row = [s.setting[k] for k in summary.param_keys] + [s.num_runs]
            for metric in summary.metrics:
                stats = s.stats.get(metric)
                row += (
                    ["", "", 0]
                    if stats is None
                    else [repr(stats.mean), "" if stats.std is None else repr(stats.std), stats.n]
                )
            writer.writerow(row)


def aggregate_sweep(
    sweep_dir: str,
    metrics: Optional[Sequence[str]] = None,
    x_key: Optional[str] = None,
    echo: Callable[[str], None] = print,
) -> SweepSummary:
    """Writes ``summary.md``, ``summary.csv`` and ``summary.png`` into ``sweep_dir``."""
    manifest = load_manifest(sweep_dir)
    refresh_states(manifest, sweep_dir)
    summary = summarize(manifest, sweep_dir, metrics)
    if not any(s.num_runs for s in summary.settings):
        raise ValueError(f"{sweep_dir}: no finished run ({FINAL_METRICS_FILE}) to aggregate")
    choose_x_key(summary, x_key)  # a wrong --x is refused before any file is written
    markdown = format_markdown(summary)
    atomic_write_text(os.path.join(sweep_dir, SUMMARY_MD), markdown)
    write_csv(summary, os.path.join(sweep_dir, SUMMARY_CSV))
    save_summary_figure(summary, os.path.join(sweep_dir, SUMMARY_PNG), x_key)
    echo(markdown)
    echo(f"Wrote {SUMMARY_MD}, {SUMMARY_CSV} and {SUMMARY_PNG} in {sweep_dir}")
    return summary
