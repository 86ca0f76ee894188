"""Experiment tooling: config sweeps over seeds (locally or on SLURM) and their statistics.

- ``grid``: ``--param KEY=v1,v2`` parsing, the cartesian grid, run folder names.
- ``validation``: checks a sweep against the config before any run starts.
- ``manifest``: ``sweep.json``, the record of a sweep and its runs' states.
- ``sweep``: train the runs one after another on this machine.
- ``slurm``: submit them as submitit jobs.
- ``aggregate`` / ``plot``: mean ± std per setting, tables and the Fig.-4-style plot.
"""
from .aggregate import aggregate_sweep, summarize
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
    "prepare_sweep",
    "run_sweep_locally",
    "submit_sweep_to_slurm",
    "summarize",
]
