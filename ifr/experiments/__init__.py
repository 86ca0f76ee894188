"""Experiment tooling: config sweeps over seeds (locally or on SLURM), their statistics, and
comparisons of configs.

- ``grid``: ``--param KEY=v1,v2`` parsing, the cartesian grid, run folder names.
- ``validation``: checks a sweep against the config before any run starts.
- ``manifest``: ``sweep.json``, the record of a sweep and its runs' states.
- ``sweep``: train the runs one after another on this machine.
- ``slurm``: submit them as submitit jobs.
- ``summary``: the statistics records (mean ± std per setting and metric).
- ``aggregate`` / ``plot``: mean ± std per setting, tables and the Fig.-4-style plot.
- ``compare``: several configs with the same data, iterations and seeds (one sweep each),
  tabulated as the paper's Table 3 plus AP.
"""

from .aggregate import aggregate_sweep, summarize
from .compare import prepare_comparison, run_comparison, write_comparison_table
from .grid import RunSpec, SweepParam, expand_grid, parse_param, parse_seeds
from .manifest import SweepManifest, load_manifest
from .slurm import SlurmOptions, TrainNetJob, submit_sweep_to_slurm
from .sweep import build_train_command, prepare_sweep, run_sweep_locally

__all__ = [
    "RunSpec",
    "SlurmOptions",
    "SweepManifest",
    "SweepParam",
    "TrainNetJob",
    "aggregate_sweep",
    "build_train_command",
    "expand_grid",
    "load_manifest",
    "parse_param",
    "parse_seeds",
    "prepare_comparison",
    "prepare_sweep",
    "run_comparison",
    "run_sweep_locally",
    "submit_sweep_to_slurm",
    "summarize",
    "write_comparison_table",
]
