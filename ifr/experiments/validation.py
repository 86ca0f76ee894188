"""Checks a sweep against the project's config before any run starts.

The reference config is the one ``train_net.py`` builds (``ifr.engine.defaults.build_cfg``).
Every swept value and every extra override goes through ``ifr.config.normalize_override``,
the check ``train_net.py`` applies to its own overrides, so a key that does not exist or a
value of the wrong type fails here, naming the key, instead of in run 7 of 25, and a value
the sweep accepts is one ``train_net.py`` accepts.
"""

import os
from typing import Dict, List, Sequence, Tuple

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog

from ..config import normalize_override
from ..engine.defaults import build_cfg, configured_datasets
from .grid import OUTPUT_DIR_KEY, SEED_KEY, SweepParam, check_folder_names_distinct

# Keys the sweep sets itself for every run.
RESERVED_KEYS = {
    SEED_KEY: "use --seeds or --seed-list",
    OUTPUT_DIR_KEY: "use --output-dir; each run gets its own folder under it",
}


def build_reference_config(config_file: str) -> CfgNode:
    """The config ``train_net.py`` builds from ``config_file`` (:func:`build_cfg`), with
    errors naming the file: a missing file, bad yaml, or a key the defaults lack (which
    ``train_net.py`` would refuse too)."""
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"--config-file {config_file}: no such file")
    try:
        return build_cfg(config_file)
    except ValueError:  # build_cfg's own errors name the file and the key
        raise
    except Exception as e:  # anything else from yaml or yacs
        raise ValueError(f"--config-file {config_file}: cannot be merged: {e}") from e


def parse_overrides(overrides: Sequence[str]) -> List[Tuple[str, str]]:
    """``["A.B", "1", "C", "x"]`` -> ``[("A.B", "1"), ("C", "x")]``; checks pairs and repeats."""
    if len(overrides) % 2:
        raise ValueError(
            f"extra overrides must be KEY VALUE pairs, got an odd number: {list(overrides)}"
        )
    pairs = list(zip(overrides[0::2], overrides[1::2]))
    seen: Dict[str, str] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(
                f"override {key} is given twice ({seen[key]!r} and {value!r}); give it once"
            )
        seen[key] = value
    return pairs


def check_no_conflicts(params: Sequence[SweepParam], overrides: Sequence[Tuple[str, str]]) -> None:
    """Every key is set once: by one ``--param``, by one override, or by the sweep itself."""
    param_keys = [p.key for p in params]
    for key in set(param_keys):
        if param_keys.count(key) > 1:
            raise ValueError(f"--param {key} is given twice; list all its values in one --param")
    for key, _ in overrides:
        if key in param_keys:
            raise ValueError(f"{key} is both swept (--param) and overridden; keep one of them")
    for key in param_keys + [k for k, _ in overrides]:
        if key in RESERVED_KEYS:
            raise ValueError(f"{key} is set by the sweep for every run: {RESERVED_KEYS[key]}")


def validate_sweep(
    cfg: CfgNode, params: Sequence[SweepParam], overrides: Sequence[Tuple[str, str]]
) -> Tuple[List[SweepParam], List[Tuple[str, str]]]:
    """Checks keys, values and conflicts; returns params and overrides with normalised
    value texts (see :func:`ifr.config.normalize_override`). ``cfg`` is not modified."""
    check_no_conflicts(params, overrides)
    with_overrides = cfg.clone()
    normalized_overrides = []
    for key, value in overrides:
        value = normalize_override(with_overrides, key, value)
        with_overrides.merge_from_list([key, value])
        normalized_overrides.append((key, value))
    normalized_params = [
        SweepParam(p.key, tuple(normalize_override(with_overrides, p.key, v) for v in p.values))
        for p in params
    ]
    check_datasets_registered(with_overrides)
    for param in normalized_params:
        for value in param.values:
            setting = with_overrides.clone()
            setting.merge_from_list([param.key, value])
            check_datasets_registered(setting, f" (--param {param.key}={value})")
    for given, normalized in zip(params, normalized_params):
        check_values_distinct(given, normalized.values)
    check_folder_names_distinct(normalized_params)
    return normalized_params, normalized_overrides


def check_values_distinct(param: SweepParam, normalized: Sequence[str]) -> None:
    """Two texts of one value (``0.1`` and ``0.10``, ``1`` and ``1.0`` for a float key)
    would train the same setting twice; raises ValueError naming both as given.
    ``normalized``: the value texts after :func:`ifr.config.normalize_override`."""
    seen: Dict[Tuple[str, str], str] = {}
    for text, normalized_text in zip(param.values, normalized):
        decoded = CfgNode._decode_cfg_value(normalized_text)
        # The type is part of the identity: True == 1 in Python, not in a config.
        identity = (type(decoded).__name__, repr(decoded))
        if identity in seen:
            raise ValueError(
                f"--param {param.key}: {seen[identity]!r} and {text!r} are the same value; "
                "list it once"
            )
        seen[identity] = text


def check_datasets_registered(cfg: CfgNode, where: str = "") -> None:
    """Every dataset of DATASETS.TRAIN / TEST and TEST.TRACKING_TUNE_DATASET is registered
    (or declared in DATASETS.REGISTER); raises ValueError naming the first that is not, so
    a sweep stops before its first run rather than in each."""
    declared = {spec.split("=", 1)[0] for spec in cfg.DATASETS.REGISTER}
    known = set(DatasetCatalog.list()) | declared
    for key, name in configured_datasets(cfg):
        if name not in known:
            raise ValueError(
                f"dataset {name!r} ({key}{where}) is not registered; a dataset of your own: "
                "DATASETS.REGISTER, or see datasets/README.md, 'Adding a dataset'"
            )
