"""The figures of the experiment tools, drawn on a bare ``matplotlib.figure.Figure`` with
the Agg canvas (no pyplot state):

- a sweep's Fig.-4-style plot: one panel per metric, the metric's mean against the swept
  value with sample-std error bars; one line per combination of the other swept keys;
- a comparison of configs: one panel per metric, one bar per config with its std.
"""

import ast
import math
from typing import Dict, List, Optional

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..utils.atomic_io import atomic_open
from .summary import SettingSummary, SweepSummary

PANEL_COLUMNS = 3
PANEL_SIZE = (4.0, 3.2)  # inches
COMPARISON_COLUMNS = 5
COMPARISON_PANEL_SIZE = (2.4, 2.2)  # inches


def choose_x_key(summary: SweepSummary, x_key: Optional[str]) -> Optional[str]:
    """The swept key on the x axis: ``x_key``, or the only swept key. None: no key swept."""
    if x_key is not None:
        if x_key not in summary.param_keys:
            raise ValueError(f"--x {x_key}: not a swept key (swept: {summary.param_keys})")
        return x_key
    if len(summary.param_keys) > 1:
        raise ValueError(
            f"several keys are swept ({summary.param_keys}); choose the x axis with --x KEY"
        )
    return summary.param_keys[0] if summary.param_keys else None


def numeric_value(text: str) -> Optional[float]:
    """``"0.3"`` -> 0.3; None for a value that is not a finite number (``"[1,2]"``)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _series(summary: SweepSummary, x_key: Optional[str]) -> Dict[str, List[SettingSummary]]:
    """Legend label -> the settings of one line (same values of the other swept keys)."""
    series: Dict[str, List[SettingSummary]] = {}
    for s in summary.settings:
        label = ", ".join(f"{k}={v}" for k, v in s.setting.items() if k != x_key)
        series.setdefault(label, []).append(s)
    return series


def _x_positions(summary: SweepSummary, x_key: Optional[str]) -> Dict[str, float]:
    """Value text -> x position: numeric values at their value, others in grid order."""
    texts = list(dict.fromkeys(s.setting[x_key] for s in summary.settings)) if x_key else [""]
    numbers = [numeric_value(t) for t in texts]
    if all(n is not None for n in numbers):
        return dict(zip(texts, numbers))
    return {t: float(i) for i, t in enumerate(texts)}


def build_summary_figure(summary: SweepSummary, x_key: Optional[str] = None) -> Figure:
    """One axes per metric of ``summary.metrics``, in order."""
    x_key = choose_x_key(summary, x_key)
    positions = _x_positions(summary, x_key)
    num_panels = len(summary.metrics)
    columns = min(PANEL_COLUMNS, num_panels)
    rows = math.ceil(num_panels / columns)
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), layout="constrained")
    FigureCanvasAgg(figure)
    series = _series(summary, x_key)
    max_runs = max(s.num_runs for s in summary.settings)
    for index, metric in enumerate(summary.metrics):
        axes = figure.add_subplot(rows, columns, index + 1)
        for label, settings in series.items():
            points = [
                (positions[s.setting[x_key] if x_key else ""], s.stats[metric])
                for s in settings
                if metric in s.stats
            ]
            points.sort(key=lambda p: p[0])
            if not points:
                continue
            axes.errorbar(
                [x for x, _ in points],
                [st.mean for _, st in points],
                yerr=[st.std or 0.0 for _, st in points],
                marker="o",
                capsize=4,
                label=label or None,
            )
            for x, st in points:  # fewer seeds than elsewhere: say so, the bar hides it
                if st.n < max_runs:
                    axes.annotate(
                        f"n={st.n}",
                        (x, st.mean),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize="x-small",
                    )
        axes.set_title(metric)
        axes.set_xlabel(x_key or "all runs")
        axes.set_xticks(list(positions.values()), [t or "all" for t in positions])
        if len(series) > 1:
            axes.legend(fontsize="small")
        axes.margins(x=0.12)
        axes.grid(alpha=0.3)
    figure.suptitle("mean ± sample std over seeds")
    return figure


def save_summary_figure(summary: SweepSummary, path: str, x_key: Optional[str] = None) -> None:
    figure = build_summary_figure(summary, x_key)
    with atomic_open(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)


def build_comparison_figure(summary: SweepSummary) -> Figure:
    """One panel per metric of ``summary.metrics``; in each, one bar per config (the
    settings of ``summary``, one colour each, legend at the top) at its mean, with a
    sample-std error bar; ``n=k`` above a bar with fewer values than the most of any bar."""
    num_panels = len(summary.metrics)
    columns = min(COMPARISON_COLUMNS, num_panels)
    rows = math.ceil(num_panels / columns)
    figure = Figure(
        figsize=(COMPARISON_PANEL_SIZE[0] * columns, COMPARISON_PANEL_SIZE[1] * rows + 0.6),
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    labels = [", ".join(s.setting.values()) for s in summary.settings]
    colours = [f"C{i % 10}" for i in range(len(labels))]
    for index, metric in enumerate(summary.metrics):
        axes = figure.add_subplot(rows, columns, index + 1)
        stats = [s.stats.get(metric) for s in summary.settings]
        most = max((st.n for st in stats if st is not None), default=0)
        for x, (st, label, colour) in enumerate(zip(stats, labels, colours)):
            if st is None:
                continue
            axes.bar(x, st.mean, yerr=st.std or 0.0, capsize=4, color=colour, label=label)
            if st.n < most:  # above the bar and its error bar
                top = max(st.mean + (st.std or 0.0), 0.0)
                axes.annotate(
                    f"n={st.n}",
                    (x, top),
                    textcoords="offset points",
                    xytext=(0, 3),
                    ha="center",
                    fontsize="x-small",
                )
        axes.set_title(metric)
        axes.set_xticks(range(len(labels)), [""] * len(labels))
        axes.margins(y=0.12)  # room for the n=k labels
        axes.grid(axis="y", alpha=0.3)
    handles = [Patch(color=c, label=lab) for c, lab in zip(colours, labels)]
    figure.legend(handles=handles, loc="outside upper center", ncols=min(len(labels), 4))
    figure.supxlabel(
        "mean ± sample std over seeds (n=k: a config with fewer runs)", fontsize="small"
    )
    return figure


def save_comparison_figure(summary: SweepSummary, path: str) -> None:
    figure = build_comparison_figure(summary)
    with atomic_open(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)
