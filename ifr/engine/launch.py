"""Multi-process launch that also works without GPUs.

Same interface as ``detectron2.engine.launch``. detectron2 v0.6 asserts CUDA in every
worker and always uses NCCL; here a worker uses NCCL and one GPU per process when CUDA
is available and the gloo backend on CPU otherwise (as detectron2's later releases do),
so ``--num-gpus 2`` runs two CPU processes on a machine without GPUs.

When one worker fails, its peers then fail too (their next collective loses a peer),
and ``torch.multiprocessing`` reports whichever failure it notices first, often a
peer's "connection closed". Each worker here records the time of its failure, and
``launch`` raises :class:`~ifr.utils.errors.WorkerFailed` with the first one: the root
cause.
"""

import contextlib
import glob
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from typing import Callable, Iterator, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.utils import comm
from torch.multiprocessing.spawn import ProcessException

from ifr.utils.atomic_io import atomic_write_json
from ifr.utils.errors import WorkerFailed
from ifr.utils.json_io import read_json

DEFAULT_TIMEOUT = timedelta(minutes=30)


def _find_free_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Tuple = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on this machine (one
    per GPU; on a machine without CUDA, one CPU process each), or in this process when the
    world size is 1. Called on every machine of a multi-machine job."""
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; pass tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logging.getLogger(__name__).warning(
            "file:// is not a reliable init_method in multi-machine jobs; prefer tcp://"
        )
    stopped: List[str] = []
    with tempfile.TemporaryDirectory(prefix="ifr_launch_") as error_dir:
        try:
            context = mp.start_processes(
                _distributed_worker,
                nprocs=num_gpus_per_machine,
                args=(
                    main_func,
                    world_size,
                    num_gpus_per_machine,
                    machine_rank,
                    dist_url,
                    args,
                    timeout,
                    error_dir,
                ),
                daemon=False,
                start_method="spawn",
                join=False,
            )
            with _stop_signals_forwarded(context, stopped):
                while not context.join(timeout=1.0):
                    pass
        except ProcessException as err:
            if stopped:
                raise KeyboardInterrupt(f"stopped by {stopped[0]}") from None
            first = _first_worker_error(error_dir)
            if first is None:  # killed by a signal, before it could record anything
                raise
            rank, trace, user_message = first
            raise WorkerFailed(
                f"rank {rank} failed first:\n{trace}",
                f"rank {rank}: {user_message}" if user_message else None,
            ) from err


# Seconds the workers get to exit after the launcher forwards a stop signal, before they
# are killed.
STOP_GRACE_S = 10.0


@contextlib.contextmanager
def _stop_signals_forwarded(context, stopped: List[str]) -> Iterator[None]:
    """While the workers of ``context`` run, SIGINT (Ctrl-C) and SIGTERM (what SLURM sends
    before pre-emption) to the launcher are passed on to every worker as SIGTERM, and
    ``stopped`` gets the signal's name. On leaving, a worker still alive after
    :data:`STOP_GRACE_S` seconds is killed, so that no worker outlives the launcher (and its
    temporary folder). Checkpoints are written atomically: the last complete one stays."""

    def forward(signum, frame):
        stopped.append(signal.Signals(signum).name)
        for process in context.processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in context.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def _record_worker_error(error_dir: str, rank: int) -> None:
    from .cli import user_error_message

    if not os.path.isdir(error_dir):  # the launcher has gone: nobody to read it
        return
    # Atomic: spawn may kill a peer mid-write once it has seen the first failure.
    atomic_write_json(
        os.path.join(error_dir, f"rank{rank}.json"),
        {
            "time": time.time(),
            "rank": rank,
            "traceback": traceback.format_exc(),
            "user_message": user_error_message(sys.exc_info()[1]),
        },
    )


def _first_worker_error(error_dir: str) -> Optional[Tuple[int, str, Optional[str]]]:
    """(rank, traceback, one-line message of bad input or None) of the earliest recorded
    failure, or None if none was recorded."""
    errors = []
    for path in glob.glob(os.path.join(error_dir, "rank*.json")):
        errors.append(read_json(path, "worker failure record"))
    if not errors:
        return None
    first = min(errors, key=lambda error: error["time"])
    return first["rank"], first["traceback"], first.get("user_message")


def _distributed_worker(
    local_rank: int,
    main_func: Callable,
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Tuple,
    timeout: timedelta,
    error_dir: str,
) -> None:
    use_cuda = torch.cuda.is_available()
    if use_cuda and num_gpus_per_machine > torch.cuda.device_count():
        raise RuntimeError(
            f"--num-gpus {num_gpus_per_machine} but only {torch.cuda.device_count()} GPUs visible"
        )
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="NCCL" if use_cuda else "GLOO",
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception:
        logging.getLogger(__name__).error("Process group URL: %s", dist_url)
        raise
    _create_local_process_group(world_size, num_gpus_per_machine, machine_rank)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    comm.synchronize()
    try:
        main_func(*args)
        # Every rank leaves together: one that exits while a peer is still inside its
        # last collective makes gloo's background threads abort that peer (SIGABRT).
        comm.synchronize()
    except BaseException:
        # Recorded before the process group goes away, so before any peer can fail.
        _record_worker_error(error_dir, global_rank)
        raise
    finally:
        # Exiting with a live process group also aborts in gloo's destructors.
        dist.destroy_process_group()


def _create_local_process_group(world_size: int, per_machine: int, machine_rank: int) -> None:
    """detectron2's ``comm.get_local_rank``/``get_local_size`` read this group."""
    if comm._LOCAL_PROCESS_GROUP is not None:
        raise RuntimeError("local process group already created")
    for i in range(world_size // per_machine):
        group = dist.new_group(list(range(i * per_machine, (i + 1) * per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
