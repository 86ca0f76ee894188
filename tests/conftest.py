import importlib.util
import os

import pytest

import ifr  # noqa: F401  registers datasets and model components

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = os.path.join(REPO_ROOT, "configs", "tiny", "ifr_tiny.yaml")


@pytest.fixture(scope="session")
def make_cfg():
    """``make_cfg(config_file=None, overrides=())``: the config ``train_net.py`` builds
    (``ifr.engine.defaults.build_cfg``: detectron2 defaults, IFR keys, the yaml, then the
    overrides), not frozen. ``overrides`` is ``[KEY, VALUE, ...]`` as on the command line,
    or a dict ``{KEY: value}`` (values may be Python objects: ``(96,)``, ``True``)."""
    from ifr.engine.defaults import build_cfg

    def make(config_file=None, overrides=()):
        if isinstance(overrides, dict):
            overrides = [item for pair in overrides.items() for item in pair]
        return build_cfg(config_file or "", list(overrides))

    return make


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
