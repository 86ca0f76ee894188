"""RNG states round trip through a weights_only checkpoint: after restoring, every
generator draws what it drew after the snapshot."""

import random

import numpy as np
import torch

from ifr.utils.rng import rng_state, set_rng_state


def _draws():
    return (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist())


def test_rng_state_round_trip_through_a_safe_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    path = tmp_path / "rng.pth"
    torch.save({"rng": rng_state()}, path)
    expected = _draws()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(path, weights_only=True)["rng"])
    assert _draws() == expected
