"""The grid of a sweep: ``--param KEY=v1,v2`` specifications, their cartesian product with
the seeds, and the folder each run writes to.

A value is kept as the text given on the command line (after normalisation by
:mod:`ifr.experiments.validation`): that text is what ``train_net.py`` receives, and
detectron2 decodes it with ``literal_eval`` exactly as ``merge_from_list`` does.
"""

import argparse
import itertools
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

SEED_KEY = "SEED"
OUTPUT_DIR_KEY = "OUTPUT_DIR"

_OPENING = {"[": "]", "(": ")", "{": "}"}
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class SweepParam:
    """One swept config key and the texts of its values, in the order given."""

    key: str
    values: Tuple[str, ...]


@dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep: a value for every swept key, and a seed.

    ``setting`` holds ``(key, value text)`` pairs in the order of the sweep's params.
    """

    setting: Tuple[Tuple[str, str], ...]
    seed: int
    name: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "name", run_name(self.setting, self.seed))

    @property
    def setting_dict(self) -> Dict[str, str]:
        return dict(self.setting)


def split_values(text: str) -> List[str]:
    """Splits ``"0,0.1,[360,480],'a,b'"`` at the commas outside brackets and quotes.

    Raises ValueError on unbalanced brackets or quotes.
    """
    values, current, closers, quote = [], [], [], None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPENING:
            closers.append(_OPENING[char])
        elif char in ")]}":
            if not closers or closers.pop() != char:
                raise ValueError(f"unbalanced {char!r} in {text!r}")
        elif char == "," and not closers:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if quote or closers:
        raise ValueError(f"unclosed {quote or closers[-1]!r} in {text!r}")
    values.append("".join(current).strip())
    return values


def parse_param(text: str) -> SweepParam:
    """Parses one ``--param KEY=v1,v2,...``; raises ValueError naming the bad argument."""
    if "=" not in text:
        raise ValueError(f"--param {text!r}: expected KEY=v1,v2,... (no '=' found)")
    key, _, values_text = text.partition("=")
    key = key.strip()
    if not key:
        raise ValueError(f"--param {text!r}: the config key before '=' is empty")
    try:
        values = split_values(values_text)
    except ValueError as e:
        raise ValueError(f"--param {text!r}: {e}") from None
    if values == [""]:
        raise ValueError(f"--param {text!r}: the list of values after '=' is empty")
    if "" in values:
        raise ValueError(f"--param {text!r}: empty value in the list (stray comma?)")
    if len(set(values)) != len(values):
        raise ValueError(f"--param {text!r}: a value is listed twice")
    return SweepParam(key, tuple(values))


def add_seed_arguments(parser: argparse.ArgumentParser) -> None:
    """``--seeds S`` / ``--seed-list 1,2,3`` (one or the other), as :func:`parse_seeds` reads
    them; the sweep and comparison tools share them."""
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, metavar="S", help="seeds 0..S-1 (default: 1 seed, 0)")
    seeds.add_argument("--seed-list", metavar="1,2,3", help="explicit seeds")


def parse_seeds(num_seeds: Optional[int], seed_list: Optional[str]) -> List[int]:
    """``--seeds S`` -> ``[0, .., S-1]``; ``--seed-list 1,2,3`` -> ``[1, 2, 3]``."""
    if num_seeds is not None and seed_list is not None:
        raise ValueError("give either --seeds or --seed-list, not both")
    if seed_list is not None:
        try:
            seeds = [int(s) for s in seed_list.split(",")]
        except ValueError:
            raise ValueError(f"--seed-list {seed_list!r}: expected integers like 1,2,3") from None
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"--seed-list {seed_list!r}: seeds must be distinct and >= 0")
        return seeds
    num_seeds = 1 if num_seeds is None else num_seeds
    if num_seeds < 1:
        raise ValueError(f"--seeds {num_seeds}: need at least one seed")
    return list(range(num_seeds))


def expand_grid(params: Sequence[SweepParam], seeds: Sequence[int]) -> List[RunSpec]:
    """Cartesian product of every param's values, then the seeds (the innermost loop).

    With no params the sweep is the seeds alone (repeats of one configuration).
    """
    value_lists = [[(p.key, v) for v in p.values] for p in params]
    return [
        RunSpec(tuple(setting), seed)
        for setting in itertools.product(*value_lists)
        for seed in seeds
    ]


def value_folder_text(value: str) -> str:
    """Filesystem-safe form of a value text: ``"[360, 480]"`` -> ``"360_480"``."""
    safe = _UNSAFE_CHARS.sub("_", value).strip("_")
    return safe or "empty"


def setting_name(setting: Sequence[Tuple[str, str]]) -> str:
    """Relative folder of a setting, one level per swept key: ``"A.B=0.3/C=1"``."""
    return "/".join(f"{key}={value_folder_text(value)}" for key, value in setting)


def run_name(setting: Sequence[Tuple[str, str]], seed: int) -> str:
    """Relative folder of a run: ``"MODEL.IFR.LAMBDA_E=0.3/seed=1"``."""
    prefix = setting_name(setting)
    return f"{prefix}/seed={seed}" if prefix else f"seed={seed}"


def check_folder_names_distinct(params: Sequence[SweepParam]) -> None:
    """Two values of one key must not share a folder (e.g. ``[1,2]`` and ``(1,2)``)."""
    for param in params:
        seen: Dict[str, str] = {}
        for value in param.values:
            folder = value_folder_text(value)
            if folder in seen:
                raise ValueError(
                    f"--param {param.key}: values {seen[folder]!r} and {value!r} would share "
                    f"the run folder {param.key}={folder}; list each setting once"
                )
            seen[folder] = value
