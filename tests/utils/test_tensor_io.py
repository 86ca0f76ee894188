"""Weight files that are not what they claim: one error naming the file, no code run."""

import pickle

import numpy as np
import pytest
import torch

from ifr.utils.tensor_io import (
    CheckpointFormatError,
    UnsafeCheckpointError,
    load_arrays_pickle,
    load_tensor_file,
)


def _torch_bytes(tmp_path):
    path = tmp_path / "full.pth"
    torch.save({"model": {"w": torch.ones(3)}}, path)
    return path.read_bytes()


@pytest.mark.parametrize(
    "name, content",
    [
        ("text.pth", lambda tmp: b"hello, not a checkpoint\n"),
        ("empty.pth", lambda tmp: b""),
        ("truncated.pth", lambda tmp: _torch_bytes(tmp)[:200]),
        ("text.safetensors", lambda tmp: b"hi"),
    ],
)
def test_unreadable_tensor_file_is_named(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content(tmp_path))
    with pytest.raises(CheckpointFormatError, match=name) as info:
        load_tensor_file(str(path), allow_pickle=False, opt_in="x")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, content", [("text.pkl", b"not a pickle"), ("empty.pkl", b"")])
def test_unreadable_pickle_is_named(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointFormatError, match=name):
        load_arrays_pickle(str(path))


def test_pickle_of_arrays_round_trips_and_objects_are_refused(tmp_path):
    path = tmp_path / "zoo.pkl"
    weights = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path.write_bytes(pickle.dumps({"model": weights}, protocol=2))
    assert np.array_equal(load_arrays_pickle(str(path))["model"]["w"], weights["w"])
    path.write_bytes(pickle.dumps({"model": {"w": slice(0, 1)}}))  # an object: not an array
    with pytest.raises(UnsafeCheckpointError, match="refusing to unpickle"):
        load_arrays_pickle(str(path))


def test_torch_file_with_objects_needs_the_opt_in(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"model": {"w": torch.ones(1)}, "cfg": {"slice": slice(1, 2)}}, path)
    with pytest.raises(UnsafeCheckpointError, match="objects.pth.*set THE KEY"):
        load_tensor_file(str(path), allow_pickle=False, opt_in="set THE KEY")
    assert load_tensor_file(str(path), allow_pickle=True, opt_in="")["cfg"]["slice"] == slice(1, 2)


def test_missing_file_stays_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_tensor_file(str(tmp_path / "none.pth"), allow_pickle=False, opt_in="x")
