import os

import pytest
import torch
import torch.distributed as dist
from detectron2.utils import comm

from ifr.engine.launch import WorkerFailed, launch


def _all_reduce_rank(out_dir):
    rank = comm.get_rank()
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
        sizes = f"{comm.get_world_size()} {comm.get_local_size()} {comm.get_local_rank()}"
        f.write(f"{sizes} {value.item()}")


@pytest.mark.slow
def test_two_cpu_processes_with_gloo(tmp_path):
    launch(_all_reduce_rank, 2, dist_url="auto", args=(str(tmp_path),))
    for rank in range(2):
        world, local_size, local_rank, total = (tmp_path / f"rank{rank}.txt").read_text().split()
        assert (int(world), int(local_size), int(local_rank)) == (2, 2, rank)
        assert float(total) == 3.0  # 1 + 2


def test_single_process_runs_in_place(tmp_path):
    calls = []
    launch(calls.append, 1, args=(5,))
    assert calls == [5]


def test_auto_url_is_refused_for_several_machines():
    with pytest.raises(ValueError, match="dist-url"):
        launch(print, 2, num_machines=2, machine_rank=0, dist_url="auto")


def _fail_on_rank_one():
    if comm.get_rank() == 1:
        raise RuntimeError("bad input on rank 1")


@pytest.mark.slow
def test_the_failing_worker_is_reported_not_the_peer_that_lost_it():
    # Rank 0 then fails too, in its barrier; the root cause must still be rank 1's.
    with pytest.raises(WorkerFailed, match="(?s)rank 1 failed first.*bad input on rank 1"):
        launch(_fail_on_rank_one, 2, dist_url="auto")


def _user_error_on_rank_one():
    from ifr.utils.errors import UserInputError

    if comm.get_rank() == 1:
        raise UserInputError("data.json: key 'videos' is missing")
    comm.synchronize()


@pytest.mark.slow
def test_bad_input_in_a_worker_is_one_line_at_the_command_line(capsys):
    from ifr.engine.cli import run_tool

    def main(argv):
        launch(_user_error_on_rank_one, 2, dist_url="auto")

    assert run_tool(main, []) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: rank 1: data.json: key 'videos' is missing"


def test_worker_failures_keep_their_kind():
    from ifr.engine.cli import user_error_message

    assert user_error_message(WorkerFailed("rank 0 failed first:\n...", "rank 0: bad")) == (
        "rank 0: bad"
    )
    assert user_error_message(WorkerFailed("rank 0 failed first:\n...")) is None  # a bug
    assert user_error_message(KeyError("'x' missing")) is None
    assert user_error_message(FileNotFoundError("no such file: a.json")) == "no such file: a.json"
