"""Submitting a sweep's unfinished runs to SLURM through submitit, one job per run.

A job has ``nodes`` tasks (``tasks_per_node=1``); on every node submitit calls a
:class:`TrainNetJob`, which reads ``submitit.JobEnvironment()`` and starts ``train_net.py``
for that node: ``--num-gpus G --num-machines K --machine-rank <node rank> --dist-url
tcp://<first node of the job>:<port>``. detectron2's ``launch`` then spawns one process per
GPU. The port is derived from the job id, so every node of a job computes the same one
and two jobs sharing a node rarely collide. With one node ``--dist-url auto`` lets
detectron2 pick a free port.

On preemption or timeout submitit calls :meth:`TrainNetJob.checkpoint`, which requeues the
same job; ``--resume`` continues from ``last_checkpoint``.
"""

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import submitit

from .manifest import (
    CONSOLE_LOG_NAME,
    SUBMITTED,
    RunRecord,
    SweepManifest,
    refresh_states,
    save_manifest,
)
from .sweep import build_train_command, console_log_path, run_dir, run_label, unfinished_runs

# Base of the rendezvous port of multi-node jobs; the job id picks one of PORT_SPAN ports.
PORT_BASE = 20000
PORT_SPAN = 20000


@dataclass
class SlurmOptions:
    """Resources of every job of a sweep (``--partition`` etc. of ``tools/sweep.py``)."""

    partition: Optional[str] = None
    nodes: int = 1
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    timeout_min: int = 24 * 60
    mem_gb: Optional[int] = None

    def __post_init__(self):
        for name in ("nodes", "gpus_per_node", "cpus_per_task", "timeout_min"):
            if getattr(self, name) < 1:
                raise ValueError(f"slurm option {name} must be >= 1, got {getattr(self, name)}")

    def executor_parameters(self, job_name: str) -> Dict[str, Any]:
        """Keyword arguments of ``AutoExecutor.update_parameters``."""
        params: Dict[str, Any] = dict(
            name=job_name,
            nodes=self.nodes,
            gpus_per_node=self.gpus_per_node,
            tasks_per_node=1,  # one train_net per node; it spawns a process per GPU
            cpus_per_task=self.cpus_per_task,
            timeout_min=self.timeout_min,
        )
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        return params


def rendezvous_port(job_id: str) -> int:
    """A port in ``[PORT_BASE, PORT_BASE + PORT_SPAN)`` fixed by the job id's digits."""
    digits = re.sub(r"\D", "", str(job_id))
    return PORT_BASE + (int(digits) if digits else 0) % PORT_SPAN


class TrainNetJob:
    """The picklable function submitit runs on each node of a run's job.

    It keeps the run's manifest entry and builds its command with
    :func:`ifr.experiments.sweep.build_train_command`, the local command with the launch
    flags of this node.
    """

    def __init__(
        self,
        manifest: SweepManifest,
        record: RunRecord,
        sweep_dir: str,
        num_gpus: int,
        num_machines: int,
    ):
        self.manifest = manifest
        self.record = record
        self.sweep_dir = sweep_dir
        self.num_gpus = num_gpus
        self.num_machines = num_machines
        self.output_dir = run_dir(sweep_dir, record)

    def launch_args(self, machine_rank: int, first_host: str, job_id: str) -> List[str]:
        if self.num_machines == 1:
            dist_url = "auto"
        else:
            dist_url = f"tcp://{first_host}:{rendezvous_port(job_id)}"
        return [
            "--num-gpus",
            str(self.num_gpus),
            "--num-machines",
            str(self.num_machines),
            "--machine-rank",
            str(machine_rank),
            "--dist-url",
            dist_url,
        ]

    def command(self, machine_rank: int, first_host: str, job_id: str) -> List[str]:
        launch_args = self.launch_args(machine_rank, first_host, job_id)
        return build_train_command(self.manifest, self.record, self.sweep_dir, launch_args)

    def console_log(self, machine_rank: int) -> str:
        name = CONSOLE_LOG_NAME if machine_rank == 0 else f"console.node{machine_rank}.txt"
        return os.path.join(self.output_dir, name)

    def __call__(self) -> int:
        env = submitit.JobEnvironment()
        command = self.command(env.node, env.hostnames[0], env.job_id)
        log_path = self.console_log(env.node)
        os.makedirs(self.output_dir, exist_ok=True)
        with open(log_path, "a") as log:
            log.write(
                f"\n=== job {env.job_id} node {env.node}\n=== {subprocess.list2cmdline(command)}\n"
            )
            log.flush()
            exit_code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        if exit_code != 0:
            raise RuntimeError(f"train_net exited with code {exit_code}; see {log_path}")
        return exit_code

    def checkpoint(self, *args, **kwargs):
        """Requeue on preemption/timeout; ``--resume`` picks up ``last_checkpoint``."""
        return submitit.helpers.DelayedSubmission(self)


def make_train_job(
    manifest: SweepManifest, record: RunRecord, sweep_dir: str, options: SlurmOptions
) -> TrainNetJob:
    return TrainNetJob(
        manifest, record, sweep_dir, num_gpus=options.gpus_per_node, num_machines=options.nodes
    )


def _slurm_executor(folder: str):
    return submitit.AutoExecutor(folder=folder, cluster="slurm")


def submit_sweep_to_slurm(
    manifest: SweepManifest,
    sweep_dir: str,
    options: SlurmOptions,
    resubmit: bool = False,
    make_executor: Callable[[str], Any] = _slurm_executor,
    echo: Callable[[str], None] = print,
) -> List[Any]:
    """Submits one job per unfinished run and returns the submitit jobs.

    A run recorded as submitted is skipped unless ``resubmit`` (two jobs must never train
    in one folder). ``make_executor(folder)`` builds the executor of a run; submitit's
    files go to ``<run dir>/submitit``. The manifest records each job id as it goes.
    """
    refresh_states(manifest, sweep_dir)
    todo = unfinished_runs(manifest, sweep_dir)
    echo(f"Sweep {sweep_dir}: {len(manifest.runs)} runs, {len(todo)} unfinished")
    jobs = []
    for index, record in enumerate(todo, start=1):
        prefix = f"[{index}/{len(todo)}] {run_label(record)}"
        if record.state == SUBMITTED and not resubmit:
            echo(
                f"{prefix}: already submitted as job {record.job_id}, skipped "
                "(pass --resubmit if it is no longer queued or running)"
            )
            continue
        executor = make_executor(os.path.join(run_dir(sweep_dir, record), "submitit"))
        executor.update_parameters(**options.executor_parameters(job_name(record)))
        job = executor.submit(make_train_job(manifest, record, sweep_dir, options))
        record.mark(SUBMITTED, job_id=str(job.job_id), attempts=record.attempts + 1, exit_code=None)
        save_manifest(manifest, sweep_dir)
        log = console_log_path(sweep_dir, record)
        echo(f"{prefix}: submitted as job {job.job_id} (log: {log})")
        jobs.append(job)
    return jobs


def job_name(record: RunRecord) -> str:
    return "ifr_" + re.sub(r"[^A-Za-z0-9._=-]+", "_", run_label(record))[:100]


def check_slurm_available() -> None:
    """Raise ValueError unless ``sbatch`` (what submitit submits with) is on PATH; called
    before a sweep writes anything."""
    if shutil.which("sbatch") is None:
        raise ValueError(
            "--launcher slurm: 'sbatch' is not on PATH (submitit submits jobs with it); run "
            "the sweep where SLURM is installed, or add --dry-run to print the jobs"
        )
