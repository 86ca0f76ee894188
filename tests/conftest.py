import importlib.util
import os

import pytest

import ifr  # noqa: F401  registers datasets and model components

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def load_tool():
    """``load_tool(name)`` imports ``tools/<name>.py`` (``tools/`` is not a package)."""

    def load(name):
        path = os.path.join(REPO_ROOT, "tools", f"{name}.py")
        spec = importlib.util.spec_from_file_location(f"tool_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(autouse=True)
def _seed_torch():
    import torch

    torch.manual_seed(0)
