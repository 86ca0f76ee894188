import importlib.util
import logging
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
def one_torch_thread():
    """torch on one thread during the test, the count restored after: on tiny tensors
    threads only add contention on a shared machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


@pytest.fixture
def ifr_caplog(caplog):
    """``caplog`` that also sees the ``ifr`` loggers once a tool has run in-process
    (detectron2's ``setup_logger`` stops them propagating to the root logger)."""
    logger = logging.getLogger("ifr")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.fixture
def restore_loggers():
    """For tests that run a tool in-process: its ``setup_logger`` handlers (bound to this
    test's captured streams) and propagation are undone afterwards."""
    from detectron2.utils.logger import setup_logger

    names = ("ifr", "detectron2", "fvcore", "d2")
    saved = {
        n: (
            list(logging.getLogger(n).handlers),
            logging.getLogger(n).propagate,
            logging.getLogger(n).level,
        )
        for n in names
    }
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate, logger.level = propagate, level
    setup_logger.cache_clear()


@pytest.fixture(autouse=True)
def _seed_torch():
    import torch

    torch.manual_seed(0)
