import json
import os
import pickle
import sys

import pytest
import submitit

from ifr.experiments.manifest import SUBMITTED, load_manifest
from ifr.experiments.slurm import (
    SlurmOptions,
    TrainNetJob,
    make_train_job,
    rendezvous_port,
    submit_sweep_to_slurm,
)
from ifr.experiments.sweep import prepare_sweep

LAMBDA = "MODEL.IFR.LAMBDA_E"


class FakeExecutor:
    """Stands in for submitit.AutoExecutor: records what a sweep asks of it."""

    created = []

    def __init__(self, folder):
        self.folder, self.parameters, self.submitted = folder, {}, []
        FakeExecutor.created.append(self)

    def update_parameters(self, **kwargs):
        self.parameters.update(kwargs)

    def submit(self, function):
        self.submitted.append(function)
        return type("Job", (), {"job_id": str(1000 + len(FakeExecutor.created))})()


@pytest.fixture
def sweep(tmp_path, config_file, fake_train_script):
    sweep_dir = str(tmp_path / "sweep")
    manifest = prepare_sweep(
        sweep_dir,
        config_file,
        [f"{LAMBDA}=0,0.5"],
        2,
        overrides=["SOLVER.MAX_ITER", "5"],
        train_script=fake_train_script,
    )
    finished = os.path.join(sweep_dir, f"{LAMBDA}=0.0", "seed=0")
    os.makedirs(finished)
    with open(os.path.join(finished, "final_metrics.json"), "w") as f:
        json.dump({"AP": 1.0}, f)
    FakeExecutor.created = []
    return manifest, sweep_dir


def test_one_job_per_unfinished_run_with_the_requested_resources(sweep):
    manifest, sweep_dir = sweep
    options = SlurmOptions(
        partition="gpu", nodes=2, gpus_per_node=8, cpus_per_task=10, timeout_min=600, mem_gb=200
    )
    jobs = submit_sweep_to_slurm(
        manifest, sweep_dir, options, make_executor=FakeExecutor, echo=lambda line: None
    )
    assert len(jobs) == 3 and len(FakeExecutor.created) == 3  # one run was finished
    executor = FakeExecutor.created[0]
    run = f"{LAMBDA}=0.0/seed=1"
    assert executor.folder == os.path.join(sweep_dir, run, "submitit")
    assert executor.parameters == {
        "name": f"ifr_{LAMBDA}=0.0_seed=1",
        "slurm_partition": "gpu",
        "nodes": 2,
        "gpus_per_node": 8,
        "tasks_per_node": 1,
        "cpus_per_task": 10,
        "timeout_min": 600,
        "mem_gb": 200,
    }
    job = executor.submitted[0]
    assert isinstance(job, TrainNetJob)
    assert job.command(1, "node-a", "12345") == [
        sys.executable,
        manifest.train_script,
        "--config-file",
        manifest.config_file,
        "--num-gpus",
        "8",
        "--num-machines",
        "2",
        "--machine-rank",
        "1",
        "--dist-url",
        "tcp://node-a:32345",
        "--resume",
        "SOLVER.MAX_ITER",
        "5",
        LAMBDA,
        "0.0",
        "SEED",
        "1",
        "OUTPUT_DIR",
        os.path.join(sweep_dir, run),
    ]
    assert job.console_log(0) == os.path.join(sweep_dir, run, "console.txt")
    assert job.console_log(1) == os.path.join(sweep_dir, run, "console.node1.txt")

    records = load_manifest(sweep_dir).runs
    assert records[run].state == SUBMITTED and records[run].job_id == "1001"
    assert records[f"{LAMBDA}=0.0/seed=0"].state == "done"


def test_submitted_runs_are_not_submitted_twice(sweep):
    manifest, sweep_dir = sweep
    submit_sweep_to_slurm(
        manifest, sweep_dir, SlurmOptions(), make_executor=FakeExecutor, echo=lambda line: None
    )
    lines = []
    again = load_manifest(sweep_dir)
    assert (
        submit_sweep_to_slurm(
            again, sweep_dir, SlurmOptions(), make_executor=FakeExecutor, echo=lines.append
        )
        == []
    )
    assert sum("already submitted as job" in line for line in lines) == 3
    assert (
        len(
            submit_sweep_to_slurm(
                again,
                sweep_dir,
                SlurmOptions(),
                resubmit=True,
                make_executor=FakeExecutor,
                echo=lambda line: None,
            )
        )
        == 3
    )


def test_single_node_lets_detectron2_pick_the_port(sweep):
    manifest, sweep_dir = sweep
    record = manifest.runs[f"{LAMBDA}=0.5/seed=0"]
    job = make_train_job(manifest, record, sweep_dir, SlurmOptions(gpus_per_node=4))
    assert job.launch_args(0, "node-a", "77") == [
        "--num-gpus",
        "4",
        "--num-machines",
        "1",
        "--machine-rank",
        "0",
        "--dist-url",
        "auto",
    ]
    assert pickle.loads(pickle.dumps(job)).command(0, "x", "1") == job.command(0, "x", "1")


def test_rendezvous_port_is_shared_by_the_nodes_of_a_job():
    assert rendezvous_port("12345") == 20000 + 12345
    assert rendezvous_port("123_4") == rendezvous_port("1234")  # array jobs
    assert 20000 <= rendezvous_port("987654321") < 40000


def test_job_runs_train_net_through_submitit(sweep):
    """submitit's debug executor runs the job in this process, with a JobEnvironment."""
    manifest, sweep_dir = sweep
    run = f"{LAMBDA}=0.5/seed=1"

    def debug_executor(folder):
        return submitit.AutoExecutor(folder=folder, cluster="debug")

    jobs = submit_sweep_to_slurm(
        manifest,
        sweep_dir,
        SlurmOptions(partition="gpu"),
        make_executor=debug_executor,
        echo=lambda line: None,
    )
    assert jobs[-1].result() == 0
    assert os.path.isfile(os.path.join(sweep_dir, run, "final_metrics.json"))
    with open(os.path.join(sweep_dir, run, "console.txt")) as f:
        assert "--dist-url auto" in f.read()


def test_checkpoint_requeues_the_same_job(sweep):
    manifest, sweep_dir = sweep
    job = make_train_job(manifest, manifest.runs[f"{LAMBDA}=0.5/seed=0"], sweep_dir, SlurmOptions())
    delayed = job.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission) and delayed.function is job


def test_slurm_options_are_checked():
    with pytest.raises(ValueError, match="nodes"):
        SlurmOptions(nodes=0)


def test_slurm_launcher_without_sbatch_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, load_tool, capsys
):
    monkeypatch.setenv("PATH", str(tmp_path / "empty_bin"))
    out = tmp_path / "sweep"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = os.path.join(root, "configs", "tiny", "ifr_tiny.yaml")
    argv = ["--config-file", config, "--seeds", "1", "--output-dir", str(out)]
    assert load_tool("sweep").main([*argv, "--launcher", "slurm"]) == 1
    assert "'sbatch' is not on PATH" in capsys.readouterr().err
    assert not out.exists()
