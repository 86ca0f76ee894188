"""The tracking metrics of a comparison's trained models at a fixed score threshold and at
each model's own operating point (:mod:`ifr.evaluation.operating_point`).

For every finished run ``DIR/<config>/seed=<s>`` of a comparison (``tools/compare.py``):

1. inference of ``model_final.pth`` on the tune split (and, when test-time overrides are
   given, again on the run's test split), into ``<run>/<name>/inference/<dataset>/``;
2. the threshold of best IDF1 on the tune split;
3. on the test split: AP and the tracking metrics at the fixed threshold, the tracking
   metrics at the model's own threshold, and IDF1 against the threshold; all kept in
   ``<run>/<name>/operating_point.json``.

Then one table over the configs (mean ± sample std over seeds, two rows per config: the
fixed and the own threshold) in ``DIR/<name>.md`` and ``.csv``, and IDF1 against the
threshold for every config in ``DIR/<name>.png``. Finished runs are skipped
when the command is repeated (their ``operating_point.json`` is read back).
"""

import csv
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..engine.defaults import build_cfg, evaluate
from ..evaluation.offline import evaluate_tracks, load_files
from ..evaluation.operating_point import THRESHOLDS, Curve, choose_threshold, idf1_curve
from ..evaluation.tracking import tracking_metrics
from ..utils.atomic_io import atomic_open, atomic_write_json, atomic_write_text
from ..utils.json_io import read_json
from .manifest import is_finished, load_manifest, sweeps_inside
from .summary import MetricStats, format_stats, mean_std

RESULT_FILE = "operating_point.json"
DEFAULT_NAME = "operating_point"
TABLE_METRICS = ("AP", "IDF1", "MOTA", "HOTA", "AssA", "IDs", "IDP", "IDR")


@dataclass
class RunOperatingPoint:
    """One trained model: its own threshold and its test-split metrics."""

    run: str  # "<config>/seed=<s>"
    threshold: float  # chosen on the tune split
    tune_value: float  # IDF1 on the tune split at that threshold
    fixed: Dict[str, float]  # AP and the tracking metrics at the fixed threshold
    own: Dict[str, float]  # the tracking metrics at the own threshold
    test_curve: Curve  # threshold -> IDF1 on the test split

    def to_json(self) -> dict:
        return {
            "run": self.run,
            "threshold": self.threshold,
            "tune_value": self.tune_value,
            "fixed": self.fixed,
            "own": self.own,
            "test_curve": {str(t): v for t, v in self.test_curve.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> "RunOperatingPoint":
        curve = {float(t): v for t, v in data["test_curve"].items()}
        return cls(
            data["run"], data["threshold"], data["tune_value"], data["fixed"], data["own"], curve
        )


def comparison_configs(comparison_dir: str, labels: Optional[Sequence[str]] = None) -> List[str]:
    """The config labels (sweep folders) of a comparison folder, or ``labels`` checked
    against them. Raises ValueError naming the folder or the unknown label."""
    found = sweeps_inside(comparison_dir)
    if not found:
        raise ValueError(f"{comparison_dir}: no comparison here (no <config>/sweep.json)")
    for label in labels or ():
        if label not in found:
            raise ValueError(f"--configs {label}: not a config of {comparison_dir} ({found})")
    return list(labels) if labels else found


def finished_runs(comparison_dir: str, label: str) -> List[str]:
    """The run folders of one config whose training finished, in seed order."""
    sweep_dir = os.path.join(comparison_dir, label)
    manifest = load_manifest(sweep_dir)
    names = [r.name for r in manifest.runs.values() if is_finished(sweep_dir, r.name)]
    return [os.path.join(sweep_dir, name) for name in names]


def results_path(output_dir: str, dataset: str) -> str:
    return os.path.join(output_dir, "inference", dataset, "results.json")


def infer(run_dir: str, datasets: Sequence[str], opts: Sequence[str], output_dir: str) -> None:
    """Inference of the run's final model on ``datasets`` (its own config plus ``opts``),
    results into ``output_dir/inference/<dataset>/``."""
    overrides = list(opts) + [
        "MODEL.WEIGHTS",
        os.path.join(run_dir, "model_final.pth"),
        "DATASETS.TEST",
        repr(tuple(datasets)),
        "OUTPUT_DIR",
        output_dir,
        # This tool infers the tune split itself (it is one of ``datasets``); the run's own
        # TEST.TRACKING_TUNE_DATASET would run that inference a second time.
        "TEST.TRACKING_TUNE_DATASET",
        "",
    ]
    cfg = build_cfg(os.path.join(run_dir, "config.yaml"), overrides)
    evaluate(cfg)


def dataset_json(dataset: str) -> str:
    """The ground-truth file of a registered dataset (generated first where it is made on
    demand)."""
    DatasetCatalog.get(dataset)
    return MetadataCatalog.get(dataset).json_file


def check_same_opts(output_dir: str, opts: Sequence[str]) -> None:
    """Results in ``output_dir`` are reused only when made with the same overrides."""
    path = os.path.join(output_dir, "opts.json")
    if os.path.isfile(path):
        earlier = read_json(path, "operating point overrides").get("opts")
        if earlier != list(opts):
            raise ValueError(
                f"{path}: made with the overrides {earlier}, not {list(opts)}; choose another "
                "--name or delete the folder"
            )
    else:
        os.makedirs(output_dir, exist_ok=True)
        atomic_write_json(path, {"opts": list(opts)})


def run_operating_point(
    run_dir: str,
    run_label: str,
    tune_dataset: str,
    opts: Sequence[str] = (),
    name: str = DEFAULT_NAME,
    fixed_threshold: float = 0.5,
    thresholds: Sequence[float] = THRESHOLDS,
) -> RunOperatingPoint:
    """Steps 1-3 of the module docstring for one run; read back when done before."""
    output_dir = os.path.join(run_dir, name)
    done = os.path.join(output_dir, RESULT_FILE)
    if os.path.isfile(done):
        return RunOperatingPoint.from_json(read_json(done, "operating point"))
    check_same_opts(output_dir, opts)
    test_dataset = build_cfg(os.path.join(run_dir, "config.yaml")).DATASETS.TEST[0]
    reusable = results_path(run_dir, test_dataset)  # the run's own evaluation, no overrides
    use_own = opts or not os.path.isfile(reusable)
    test_results = results_path(output_dir, test_dataset) if use_own else reusable
    needed = [
        dataset
        for dataset, path in (
            (tune_dataset, results_path(output_dir, tune_dataset)),
            (test_dataset, test_results),
        )
        if not os.path.isfile(path)
    ]
    if needed:
        infer(run_dir, needed, opts, output_dir)
    tune_gt, tune_predictions = load_files(
        dataset_json(tune_dataset), results_path(output_dir, tune_dataset)
    )
    tune_curve = idf1_curve(tune_gt, tune_predictions, thresholds)
    threshold = choose_threshold(tune_curve)
    test_gt, test_predictions = load_files(dataset_json(test_dataset), test_results)
    fixed = dict(evaluate_tracks(test_gt, test_predictions, True, fixed_threshold))
    own = tracking_metrics(test_gt, test_predictions, threshold)
    test_curve = idf1_curve(test_gt, test_predictions, thresholds)
    result = RunOperatingPoint(run_label, threshold, tune_curve[threshold], fixed, own, test_curve)
    atomic_write_json(done, result.to_json())
    return result


def operating_points(
    comparison_dir: str,
    tune_dataset: str,
    labels: Optional[Sequence[str]] = None,
    opts: Sequence[str] = (),
    name: str = DEFAULT_NAME,
    fixed_threshold: float = 0.5,
    echo: Callable[[str], None] = print,
) -> Dict[str, List[RunOperatingPoint]]:
    """:func:`run_operating_point` for every finished run of the comparison's configs."""
    if tune_dataset not in DatasetCatalog.list():
        raise ValueError(f"--tune-dataset {tune_dataset}: not a registered dataset")
    runs = [
        (label, r)
        for label in comparison_configs(comparison_dir, labels)
        for r in finished_runs(comparison_dir, label)
    ]
    if not runs:
        raise ValueError(f"{comparison_dir}: no finished run (final_metrics.json)")
    results: Dict[str, List[RunOperatingPoint]] = {}
    for index, (label, run_dir) in enumerate(runs, start=1):
        run_label = f"{label}/{os.path.basename(run_dir)}"
        point = run_operating_point(run_dir, run_label, tune_dataset, opts, name, fixed_threshold)
        results.setdefault(label, []).append(point)
        echo(
            f"[{index}/{len(runs)}] {run_label}: threshold {point.threshold:.2f} "
            f"(IDF1 {point.tune_value:.1f} on {tune_dataset}); test IDF1 "
            f"{point.fixed['IDF1']:.1f} at {fixed_threshold}, {point.own['IDF1']:.1f} at its own"
        )
    return results


def summarize_rows(
    results: Dict[str, List[RunOperatingPoint]], fixed_threshold: float
) -> List[Dict[str, object]]:
    """Two rows per config: ``{"config", "threshold", "runs", metric: MetricStats}``, at the
    fixed threshold and at each model's own (AP is the same in both: it has no threshold)."""
    rows = []
    for label, points in results.items():
        for kind in ("fixed", "own"):
            values = [
                dict(p.fixed) if kind == "fixed" else dict(p.own, AP=p.fixed["AP"]) for p in points
            ]
            thresholds = [fixed_threshold if kind == "fixed" else p.threshold for p in points]
            row: Dict[str, object] = {
                "config": label,
                "threshold": mean_std(thresholds),
                "kind": kind,
                "runs": len(points),
            }
            for metric in TABLE_METRICS:
                defined = [
                    v[metric] for v in values if v.get(metric, -1.0) != -1.0 or metric == "MOTA"
                ]
                row[metric] = mean_std(defined) if defined else None
            rows.append(row)
    return rows


def _threshold_cell(row: Dict[str, object]) -> str:
    stats: MetricStats = row["threshold"]  # type: ignore[assignment]
    if row["kind"] == "fixed":
        return f"fixed {stats.mean:.2f}"
    std = "-" if stats.std is None else f"{stats.std:.2f}"
    return f"own {stats.mean:.2f} ± {std}"


def format_table(rows: List[Dict[str, object]], tune_dataset: str) -> str:
    header = ["config", "runs", "threshold"] + list(TABLE_METRICS)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["config"]), str(row["runs"]), _threshold_cell(row)]
        cells += [format_stats(row[m]) for m in TABLE_METRICS]  # type: ignore[arg-type]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"Mean ± sample std (n runs) over seeds. 'own': each model's score threshold of best "
        f"IDF1 on {tune_dataset} (neither trained nor evaluated on); AP does not depend "
        "on the threshold.\n\n" + "\n".join(lines) + "\n"
    )


def write_csv(rows: List[Dict[str, object]], path: str) -> None:
    with atomic_open(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["config", "runs", "threshold_kind", "threshold", "threshold_std"]
            + [c for m in TABLE_METRICS for c in (m, f"{m}_std")]
        )
        for row in rows:
            t: MetricStats = row["threshold"]  # type: ignore[assignment]
            cells = [
                row["config"],
                row["runs"],
                row["kind"],
                t.mean,
                "" if t.std is None else t.std,
            ]
            for m in TABLE_METRICS:
                s: Optional[MetricStats] = row[m]  # type: ignore[assignment]
                cells += ["", ""] if s is None else [s.mean, "" if s.std is None else s.std]
            writer.writerow(cells)


def build_curve_figure(
    results: Dict[str, List[RunOperatingPoint]], fixed_threshold: float
) -> Figure:
    """IDF1 on the test split against the score threshold: per config the mean over
    seeds with a ±std band, a dashed line at its mean own threshold; a grey line at the
    fixed one."""
    figure = Figure(figsize=(5.5, 3.8))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for label, points in results.items():
        thresholds = sorted(set.intersection(*(set(p.test_curve) for p in points)))
        values = np.array([[p.test_curve[t] for t in thresholds] for p in points])
        mean = values.mean(axis=0)
        line = axes.plot(thresholds, mean, marker=".", label=f"{label} (n={len(points)})")[0]
        if len(points) > 1:
            std = values.std(axis=0, ddof=1)
            axes.fill_between(thresholds, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        own = float(np.mean([p.threshold for p in points]))
        axes.axvline(own, color=line.get_color(), linestyle="--", linewidth=1)
    axes.axvline(fixed_threshold, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("tracking score threshold")
    axes.set_ylabel("IDF1 (test split)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def write_operating_point_report(
    results: Dict[str, List[RunOperatingPoint]],
    comparison_dir: str,
    tune_dataset: str,
    name: str = DEFAULT_NAME,
    fixed_threshold: float = 0.5,
) -> str:
    """Writes ``DIR/<name>.md``, ``.csv`` and ``.png``; returns the markdown table."""
    rows = summarize_rows(results, fixed_threshold)
    table = format_table(rows, tune_dataset)
    base = os.path.join(comparison_dir, name)
    atomic_write_text(base + ".md", table)
    write_csv(rows, base + ".csv")
    with atomic_open(base + ".png", "wb") as f:
        build_curve_figure(results, fixed_threshold).savefig(f, format="png", dpi=120)
    return table


__all__ = [
    "RunOperatingPoint",
    "operating_points",
    "run_operating_point",
    "summarize_rows",
    "write_operating_point_report",
]
