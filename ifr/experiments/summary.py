"""The statistics records of a sweep, shared by :mod:`.aggregate` (which computes and
tabulates them), :mod:`.plot` (which draws them) and :mod:`.compare` (config vs config).

Mean ± sample std (ddof=1) over seeds. A group with one value has no std (``None``): the
tables show ``-`` rather than a 0 that would read as "no spread".
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np


@dataclass
class MetricStats:
    mean: float
    std: Optional[float]  # sample std (ddof=1); None with fewer than 2 values
    n: int


@dataclass
class SettingSummary:
    setting: Dict[str, str]  # swept key -> value text
    num_runs: int  # finished runs (seeds) of this setting
    num_planned: int  # runs (seeds) the manifest lists for this setting
    stats: Dict[str, MetricStats] = field(default_factory=dict)  # metric -> stats


@dataclass
class MissingRun:
    name: str
    state: str  # the manifest's state, or why its final_metrics.json could not be read
    log: str


@dataclass
class SweepSummary:
    param_keys: List[str]
    metrics: List[str]
    settings: List[SettingSummary]
    missing: List[MissingRun]


def format_stats(stats: Optional[MetricStats]) -> str:
    """A table cell: ``"46.5 ± 0.8 (3)"``, mean ± sample std (values); ``"46.5 ± - (1)"``
    for one value, ``"-"`` for none. One decimal, as the paper's tables (percent)."""
    if stats is None:
        return "-"
    std = "-" if stats.std is None else f"{stats.std:.1f}"
    return f"{stats.mean:.1f} ± {std} ({stats.n})"


def mean_std(values: Sequence[float]) -> MetricStats:
    values = np.asarray(values, dtype=np.float64)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return MetricStats(float(values.mean()), std, len(values))
