"""Checks a sweep against the project's config before any run starts.

The reference config is the one ``train_net.py`` builds: detectron2's ``get_cfg()``, then
``add_ifr_config``, then the yaml. Every swept value and every extra override is merged
into a copy of it with ``merge_from_list``, so a key that does not exist or a value of the
wrong type fails here, naming the key, instead of in run 7 of 25.
"""
import difflib
import logging
import os
from typing import Dict, List, Sequence, Tuple

from detectron2.config import CfgNode, get_cfg

from ifr.config import add_ifr_config

from .grid import OUTPUT_DIR_KEY, SEED_KEY, SweepParam, check_folder_names_distinct

logger = logging.getLogger(__name__)

# Keys the sweep sets itself for every run.
RESERVED_KEYS = {
    SEED_KEY: "use --seeds or --seed-list",
    OUTPUT_DIR_KEY: "use --output-dir; each run gets its own folder under it",
}


def build_reference_config(config_file: str) -> CfgNode:
    """``get_cfg()`` + ``add_ifr_config`` + the yaml, as ``train_net.py`` builds it.

    If the yaml names a key these defaults lack (a component that registers its keys
    elsewhere), the sweep is checked against the defaults alone, with a warning.
    """
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"--config-file {config_file}: no such file")
    cfg = get_cfg()
    add_ifr_config(cfg)
    with_yaml = cfg.clone()
    try:
        with_yaml.merge_from_file(config_file)
    except KeyError as e:
        logger.warning(
            "--config-file %s: cannot be merged into the defaults (%s); checking the sweep "
            "against detectron2 + ifr defaults only", config_file, e,
        )
        return cfg
    except Exception as e:  # yaml syntax, yacs type mismatch
        raise ValueError(f"--config-file {config_file}: cannot be merged: {e}") from e
    return with_yaml


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


def normalize_value(cfg: CfgNode, key: str, value: str) -> str:
    """The text ``train_net.py`` will receive for ``key``; raises ValueError if it cannot
    be merged into ``cfg``.

    An integer given for a float key becomes a float (``0`` -> ``0.0``): yacs refuses to
    coerce int to float, and ``LAMBDA_E=0,0.1`` is how people write a sweep.
    """
    _check_key_exists(cfg, key)
    original = _lookup(cfg, key)
    decoded = CfgNode._decode_cfg_value(value)
    if isinstance(original, float) and type(decoded) is int:
        value = repr(float(decoded))
    try:
        cfg.clone().merge_from_list([key, value])
    except Exception as e:
        raise ValueError(f"{key}={value}: not a valid value for this config key: {e}") from None
    return value


def validate_sweep(
    cfg: CfgNode, params: Sequence[SweepParam], overrides: Sequence[Tuple[str, str]]
) -> Tuple[List[SweepParam], List[Tuple[str, str]]]:
    """Checks keys, values and conflicts; returns params and overrides with normalised
    value texts (see :func:`normalize_value`). ``cfg`` is not modified."""
    check_no_conflicts(params, overrides)
    with_overrides = cfg.clone()
    normalized_overrides = []
    for key, value in overrides:
        value = normalize_value(with_overrides, key, value)
        with_overrides.merge_from_list([key, value])
        normalized_overrides.append((key, value))
    normalized_params = [
        SweepParam(p.key, tuple(normalize_value(with_overrides, p.key, v) for v in p.values))
        for p in params
    ]
    for param in normalized_params:
        if len(set(param.values)) != len(param.values):
            raise ValueError(f"--param {param.key}: two values are the same after parsing")
    check_folder_names_distinct(normalized_params)
    return normalized_params, normalized_overrides


def _lookup(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _check_key_exists(cfg: CfgNode, key: str) -> None:
    node, path = cfg, []
    for part in key.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            candidates = [".".join(path + [k]) for k in node] if isinstance(node, CfgNode) else []
            close = difflib.get_close_matches(key, candidates, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"config key {key} does not exist in the config{hint}")
        node, path = node[part], path + [part]
