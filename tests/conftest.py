import pytest

import ifr  # noqa: F401  registers datasets and model components


@pytest.fixture(autouse=True)
def _seed_torch():
    import torch

    torch.manual_seed(0)
