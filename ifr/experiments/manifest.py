"""``sweep.json``: what a sweep is (grid, seeds, config file, overrides) and where each of
its runs stands. Written atomically after every state change, so an interrupted sweep
leaves a consistent file.

Whether a run is finished is decided by its ``final_metrics.json``, not by the manifest:
the recorded state is refreshed from disk whenever a sweep or an aggregation reads it.
"""

import datetime
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..engine.trainer import FINAL_METRICS_FILE
from ..utils.atomic_io import atomic_write_json
from ..utils.json_io import read_json
from .grid import RunSpec, SweepParam

MANIFEST_NAME = "sweep.json"
# The sweep's capture of a run's stdout/stderr. Not "log.txt": detectron2's logger already
# writes OUTPUT_DIR/log.txt, and two writers on one file interleave every line twice.
CONSOLE_LOG_NAME = "console.txt"
MANIFEST_VERSION = 1

# Run states. DONE is only ever set from the presence of final_metrics.json.
PENDING, RUNNING, DONE, FAILED, INTERRUPTED, SUBMITTED = (
    "pending",
    "running",
    "done",
    "failed",
    "interrupted",
    "submitted",
)


@dataclass
class RunRecord:
    """The manifest's entry for one run; ``name`` is its folder relative to the sweep."""

    name: str
    setting: Dict[str, str]
    seed: int
    state: str = PENDING
    exit_code: Optional[int] = None
    attempts: int = 0
    job_id: Optional[str] = None
    updated: Optional[str] = None

    def mark(self, state: str, **fields) -> None:
        self.state = state
        for key, value in fields.items():
            setattr(self, key, value)
        self.updated = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class SweepManifest:
    config_file: str
    train_script: str
    params: List[SweepParam]
    seeds: List[int]
    overrides: List[Tuple[str, str]]
    runs: Dict[str, RunRecord] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        config_file: str,
        train_script: str,
        params: Sequence[SweepParam],
        seeds: Sequence[int],
        overrides: Sequence[Tuple[str, str]],
        specs: Sequence[RunSpec],
    ) -> "SweepManifest":
        runs = {s.name: RunRecord(s.name, s.setting_dict, s.seed) for s in specs}
        return cls(config_file, train_script, list(params), list(seeds), list(overrides), runs)

    def to_json(self) -> dict:
        return {
            "version": MANIFEST_VERSION,
            "config_file": self.config_file,
            "train_script": self.train_script,
            "params": [{"key": p.key, "values": list(p.values)} for p in self.params],
            "seeds": self.seeds,
            "overrides": [list(pair) for pair in self.overrides],
            "runs": [asdict(r) for r in self.runs.values()],
        }

    @classmethod
    def from_json(cls, data: dict) -> "SweepManifest":
        runs = {r["name"]: RunRecord(**r) for r in data["runs"]}
        return cls(
            config_file=data["config_file"],
            train_script=data["train_script"],
            params=[SweepParam(p["key"], tuple(p["values"])) for p in data["params"]],
            seeds=list(data["seeds"]),
            overrides=[tuple(pair) for pair in data["overrides"]],
            runs=runs,
        )

    @property
    def param_keys(self) -> List[str]:
        return [p.key for p in self.params]


def manifest_path(sweep_dir: str) -> str:
    return os.path.join(sweep_dir, MANIFEST_NAME)


def save_manifest(manifest: SweepManifest, sweep_dir: str) -> None:
    atomic_write_json(manifest_path(sweep_dir), manifest.to_json())


def load_manifest(sweep_dir: str) -> SweepManifest:
    path = manifest_path(sweep_dir)
    if not os.path.isfile(path):
        inner = sweeps_inside(sweep_dir)
        hint = (
            (
                f"; it holds the sweeps {inner} of a comparison: give one of them "
                f"({os.path.join(sweep_dir, inner[0])}), or re-run tools/compare.py for the "
                "table"
            )
            if inner
            else f" (is {sweep_dir} a sweep folder?)"
        )
        raise FileNotFoundError(f"{path}: no sweep manifest{hint}")
    data = read_json(path, "sweep manifest")
    try:
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {MANIFEST_VERSION}")
        return SweepManifest.from_json(data)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a valid sweep manifest: {e}") from None


def sweeps_inside(folder: str) -> List[str]:
    """The sub-folders of ``folder`` that are sweeps (a comparison's layout)."""
    if not os.path.isdir(folder):
        return []
    return sorted(
        name
        for name in os.listdir(folder)
        if os.path.isfile(manifest_path(os.path.join(folder, name)))
    )


def is_finished(sweep_dir: str, run_name: str) -> bool:
    return os.path.isfile(os.path.join(sweep_dir, run_name, FINAL_METRICS_FILE))


def refresh_states(manifest: SweepManifest, sweep_dir: str) -> None:
    """Marks DONE every run whose ``final_metrics.json`` exists, and un-marks a DONE run
    whose file has gone (deleted to re-run it)."""
    for record in manifest.runs.values():
        finished = is_finished(sweep_dir, record.name)
        if finished and record.state != DONE:
            record.mark(DONE, exit_code=0)
        elif not finished and record.state == DONE:
            record.mark(PENDING, exit_code=None)


def merge_manifests(new: SweepManifest, old: SweepManifest, sweep_dir: str) -> SweepManifest:
    """The manifest of re-running a sweep in ``sweep_dir``, which already holds ``old``.

    The same config file, overrides and swept keys are required (else the folder would mix
    two experiments). New values or seeds extend the sweep; the records of runs already
    there are kept, including runs the new command no longer lists.
    """
    for what, a, b in (
        ("config file", old.config_file, new.config_file),
        ("extra overrides", [list(p) for p in old.overrides], [list(p) for p in new.overrides]),
        ("swept keys", old.param_keys, new.param_keys),
    ):
        if a != b:
            raise ValueError(
                f"{manifest_path(sweep_dir)} records a sweep with other {what} ({a} vs now {b}):"
                " to add runs to it, repeat the command that trained it; for another "
                "experiment, use another --output-dir"
            )
    params = [
        SweepParam(o.key, o.values + tuple(v for v in n.values if v not in o.values))
        for o, n in zip(old.params, new.params)
    ]
    runs = dict(old.runs)
    for name, record in new.runs.items():
        runs.setdefault(name, record)
    seeds = sorted(set(old.seeds) | set(new.seeds))
    return SweepManifest(new.config_file, new.train_script, params, seeds, new.overrides, runs)
