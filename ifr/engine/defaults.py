"""What ``tools/train_net.py`` does, as functions tests can call.

``check_run`` checks everything that can be checked before processes start (config,
datasets, weights file); ``main`` is what every process runs."""

import argparse
import logging
import os
from typing import Any, Dict, List, Sequence, Set, Tuple

import torch
import yaml
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser
from detectron2.utils import comm
from detectron2.utils.collect_env import collect_env_info
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from ..checkpoint import CLASS_NAMES_KEY, load_inference_weights
from ..config import add_ifr_config, merge_overrides, moved_key_in_error
from ..data.datasets import register_custom_datasets
from ..utils.atomic_io import atomic_write_json, atomic_write_text
from ..utils.errors import UserInputError
from ..utils.paths import check_output_folder
from .cli import one_line, raise_on_argparse_error
from .trainer import FINAL_METRICS_FILE, Trainer, flatten_metrics, write_final_metrics

logger = logging.getLogger("ifr")

RUN_CONFIG_FILE = "config.yaml"  # the config of the run that trains OUTPUT_DIR's model
EVAL_CONFIG_FILE = "eval_config.yaml"  # the config of the last --eval-only run


class ConfigError(UserInputError):
    """A config file, override or DATASETS entry that cannot be used; says what to do."""


def argument_parser() -> argparse.ArgumentParser:
    """Detectron2's parser: --config-file, --resume, --eval-only, --num-gpus,
    --num-machines, --machine-rank, --dist-url and trailing KEY VALUE overrides; a wrong
    flag raises ``UsageError`` (one ``error:`` line at the command line)."""
    return raise_on_argparse_error(
        default_argument_parser(
            epilog="Example: python tools/train_net.py --config-file configs/ytvis19/r50.yaml "
            "--num-gpus 8 SOLVER.IMS_PER_BATCH 16"
        )
    )


def build_cfg(config_file: str = "", opts: Sequence[str] = ()) -> CfgNode:
    """detectron2 defaults + IFR keys + the yaml + command-line overrides (not frozen).

    Overrides go through :func:`ifr.config.merge_overrides` (the sweep tools check theirs
    with the same function). Every mistake is a ConfigError naming the file or key and
    what to do: a missing or malformed yaml, an unknown key (with the closest names), a
    value of the wrong type, a key without a value, a flag after the overrides."""
    opts = list(opts)
    _check_no_flags_among_overrides(opts)
    cfg = get_cfg()
    add_ifr_config(cfg)
    if config_file:
        _merge_config_file(cfg, config_file)
    try:
        merge_overrides(cfg, opts)
    except ValueError as e:
        hint = ""
        if len(opts) % 2:
            hint = (
                "; give every KEY a VALUE, a list as one quoted word (INPUT.MIN_SIZE_TEST 360 "
                'MODEL.VIS.TEST.TTA.MIN_SIZES "[360,480]")'
            )
        raise ConfigError(f"{one_line(e)}{hint}") from e
    if cfg.DATASETS.REGISTER:
        use_custom_datasets(cfg, set(opts[0::2]))
    return cfg


def use_custom_datasets(cfg: CfgNode, overridden: Set[str]) -> None:
    """Register DATASETS.REGISTER; unless MODEL.VIS.NUM_CLASSES is overridden, take it from
    the first training (else test) dataset when that is one of them."""
    names = register_custom_datasets(cfg.DATASETS.REGISTER)
    first = (list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST) or [None])[0]
    if first in names and "MODEL.VIS.NUM_CLASSES" not in overridden:
        cfg.MODEL.VIS.NUM_CLASSES = len(MetadataCatalog.get(first).thing_classes)


def _merge_config_file(cfg: CfgNode, config_file: str) -> None:
    if not os.path.isfile(config_file):
        raise ConfigError(f"--config-file {config_file!r} does not exist")
    try:
        cfg.merge_from_file(config_file)
    except (KeyError, ValueError, AssertionError, TypeError, yaml.YAMLError) as e:
        moved = moved_key_in_error(e)
        if moved:
            raise ConfigError(f"--config-file {config_file}: {moved}") from e
        hint = " (a key the config does not have: check its spelling)"
        hint = hint if isinstance(e, KeyError) else ""
        raise ConfigError(f"--config-file {config_file}: {one_line(e)}{hint}") from e


def _check_no_flags_among_overrides(opts: List[str]) -> None:
    flags = [opt for opt in opts if isinstance(opt, str) and opt.startswith("--")]
    if flags:
        raise ConfigError(
            f"{flags[0]} comes after the KEY VALUE overrides, where it is read as an "
            f"override: put {' '.join(flags)} before the overrides (e.g. --config-file CFG "
            f"{flags[0]} SOLVER.MAX_ITER 100)"
        )


def setup(args: argparse.Namespace) -> CfgNode:
    """The frozen config, logging (console and OUTPUT_DIR/log.txt), seeds (SEED + rank).
    The config is saved to OUTPUT_DIR only once the run starts (:func:`save_run_config`),
    so a run that fails at start-up leaves a finished folder's config.yaml alone."""
    cfg = build_cfg(args.config_file, args.opts)
    cfg.freeze()
    rank = comm.get_rank()
    if comm.is_main_process() and cfg.OUTPUT_DIR:
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=rank, name="fvcore")
    d2_logger = setup_logger(cfg.OUTPUT_DIR, distributed_rank=rank)
    d2_logger.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    d2_logger.info("Environment info:\n%s", collect_env_info())
    d2_logger.info("Command line arguments: %s", args)
    d2_logger.info("Running with full config:\n%s", cfg.dump())
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    if not args.eval_only:
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=rank, name="ifr")
    return cfg


def save_run_config(cfg: CfgNode, filename: str = RUN_CONFIG_FILE) -> str:
    """Write ``cfg`` to OUTPUT_DIR/``filename`` (atomically, main process only)."""
    path = os.path.join(cfg.OUTPUT_DIR, filename)
    if comm.is_main_process() and cfg.OUTPUT_DIR:
        atomic_write_text(path, cfg.dump())
        logger.info("Full config saved to %s", path)
    return path


def configured_datasets(cfg: CfgNode, eval_only: bool = False) -> List[Tuple[str, str]]:
    """``(config key, dataset name)`` of every dataset a run reads: DATASETS.TRAIN (not
    with ``eval_only``), DATASETS.TEST and TEST.TRACKING_TUNE_DATASET."""
    names = [("DATASETS.TRAIN", n) for n in ([] if eval_only else cfg.DATASETS.TRAIN)]
    names += [("DATASETS.TEST", n) for n in cfg.DATASETS.TEST]
    if cfg.TEST.TRACKING_TUNE_DATASET:
        names.append(("TEST.TRACKING_TUNE_DATASET", cfg.TEST.TRACKING_TUNE_DATASET))
    return names


def check_datasets_available(cfg: CfgNode, eval_only: bool = False) -> None:
    """Fail at once, before any model is built, when a dataset of the config (DATASETS.TEST
    only with ``eval_only``) is unknown, its files are missing, or its number of categories
    is not MODEL.VIS.NUM_CLASSES."""
    registered = set(DatasetCatalog.list())
    for key, name in configured_datasets(cfg, eval_only):
        if name not in registered:
            ytvis = sorted(n for n in registered if n.startswith(("ytvis", "ovis")))
            raise ConfigError(
                f"dataset {name!r} ({key}) is not registered. Registered: {ytvis}; a "
                "dataset of your own: see datasets/README.md, 'Adding a dataset'"
            )
        meta = MetadataCatalog.get(name)
        if not meta.get("generated_on_demand", False):
            _check_dataset_files(name, meta)
        num_classes = len(meta.get("thing_classes", []))
        if num_classes and num_classes != cfg.MODEL.VIS.NUM_CLASSES:
            raise ConfigError(
                f"Dataset {name!r} has {num_classes} categories but MODEL.VIS.NUM_CLASSES is "
                f"{cfg.MODEL.VIS.NUM_CLASSES}; set MODEL.VIS.NUM_CLASSES {num_classes}."
            )


def _check_dataset_files(name: str, meta) -> None:
    for key in ("json_file", "image_root"):
        path = meta.get(key, None)
        if path is not None and not os.path.exists(path):
            raise FileNotFoundError(
                f"Dataset {name!r}: {key} {path!r} does not exist. Put the dataset there "
                "as described in datasets/README.md, or point DETECTRON2_DATASETS to the "
                "folder that holds it."
            )


def check_weights_available(cfg: CfgNode, resume: bool) -> None:
    """Fail at once when MODEL.WEIGHTS names a local file that does not exist (unless
    --resume will load OUTPUT_DIR/last_checkpoint instead, whose checkpoint must exist)."""
    if resume and _check_last_checkpoint(cfg.OUTPUT_DIR):
        return
    weights = cfg.MODEL.WEIGHTS
    if not weights or "://" in weights or os.path.isfile(weights):
        return
    raise FileNotFoundError(
        f"MODEL.WEIGHTS {weights!r} does not exist. Download the COCO-pretrained Mask2Former "
        "weights there (README, 'Pretrained weights'), point MODEL.WEIGHTS to them, or pass "
        'MODEL.WEIGHTS "" to start from random initialisation.'
    )


def _check_last_checkpoint(output_dir: str) -> bool:
    """True when ``output_dir/last_checkpoint`` names a checkpoint file that exists (what
    --resume loads); False without ``last_checkpoint``; ConfigError when the file it names
    is gone."""
    pointer = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(pointer):
        return False
    with open(pointer) as f:
        name = f.read().strip()
    if not os.path.isfile(os.path.join(output_dir, name)):
        raise ConfigError(
            f"--resume: {pointer} names {name!r}, which is not in {output_dir}; restore it, "
            "or point last_checkpoint to a checkpoint that is there"
        )
    return True


def check_class_names(checkpoint_extras: Dict[str, Any], dataset_names: Sequence[str]) -> None:
    """The model's classes (saved in its checkpoint) must be each test dataset's classes,
    in the same order; a checkpoint without names (written before they were saved) is
    assumed to match, with a warning."""
    model_classes = checkpoint_extras.get(CLASS_NAMES_KEY)
    if model_classes is None:
        logger.warning(
            "The checkpoint holds no class names (written by an older version): assuming "
            "its classes are those of %s.",
            ", ".join(dataset_names) or "the config",
        )
        return
    for name in dataset_names:
        dataset_classes = MetadataCatalog.get(name).get("thing_classes", None)
        if dataset_classes is not None and list(dataset_classes) != list(model_classes):
            raise ConfigError(
                f"the model was trained on classes {_short(model_classes)} but dataset "
                f"{name!r} (DATASETS.TEST) has {_short(dataset_classes)}: evaluate it on a "
                "dataset with the same categories"
            )


def _short(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)})"


def evaluate(cfg: CfgNode) -> Dict[str, Any]:
    """--eval-only: load MODEL.WEIGHTS (every model tensor must load, unless
    MODEL.WEIGHTS_ALLOW_PARTIAL) and evaluate on every DATASETS.TEST; the results.json
    (+ zip) of each dataset lands in OUTPUT_DIR/inference/<dataset>/."""
    model = Trainer.build_model(cfg)
    extras = load_inference_weights(model, cfg)
    if cfg.MODEL.WEIGHTS:
        check_class_names(extras, cfg.DATASETS.TEST)
    save_run_config(cfg, EVAL_CONFIG_FILE)
    results = Trainer.test(cfg, model)
    if comm.is_main_process() and results:
        path = os.path.join(cfg.OUTPUT_DIR, "eval_metrics.json")
        atomic_write_json(path, flatten_metrics(results))
    return results


def train(cfg: CfgNode, resume: bool) -> Dict[str, Any]:
    """Train (resuming from OUTPUT_DIR/last_checkpoint with ``resume``), evaluate at the end,
    and write OUTPUT_DIR/final_metrics.json."""
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    save_run_config(trainer.cfg)  # from here on, OUTPUT_DIR's model is this config's
    trainer.train()
    # The EvalHook evaluates after the last iteration on every process (an empty result on
    # all but the main one); evaluate here only when it did not run, on every process alike.
    if hasattr(trainer, "_last_eval_results"):
        results = trainer._last_eval_results
    else:
        results = Trainer.test(cfg, trainer.model) if cfg.DATASETS.TEST else {}
    if comm.is_main_process() and results:
        write_final_metrics(cfg, results)
    return results or {}


def config_beside_weights(config_file: str, opts: Sequence[str]) -> str:
    """``config_file`` if given; else the run config saved beside ``MODEL.WEIGHTS`` among
    the overrides (the ``config.yaml`` a training writes into its OUTPUT_DIR), so a trained
    model evaluates and runs the demo from its checkpoint alone; overrides still apply.

    Raises ConfigError when there is neither."""
    if config_file:
        return config_file
    pairs = dict(zip(opts[0::2], opts[1::2]))
    weights = pairs.get("MODEL.WEIGHTS", "")
    beside = os.path.join(os.path.dirname(os.path.abspath(weights)), RUN_CONFIG_FILE)
    if weights and os.path.isfile(beside):
        logger.info("Using the config saved beside the weights: %s", beside)
        return beside
    where = f" ({beside} does not exist)" if weights else ""
    raise ConfigError(
        "--config-file is needed, or MODEL.WEIGHTS of a training run's folder, whose "
        f"{RUN_CONFIG_FILE} is then used{where}"
    )


def check_run(args: argparse.Namespace) -> CfgNode:
    """What can be checked before any process starts: the config, the datasets and the
    weights file. Raises ConfigError / FileNotFoundError naming what is wrong."""
    cfg = build_cfg(args.config_file, args.opts)
    check_processes_and_device(cfg, args.num_gpus, args.num_machines)
    if cfg.OUTPUT_DIR:
        check_output_folder("OUTPUT_DIR", cfg.OUTPUT_DIR)
    if not args.eval_only:
        check_solver(cfg, args.num_gpus * args.num_machines)
    if not (args.resume or args.eval_only):
        check_no_finished_run(cfg.OUTPUT_DIR)
    check_datasets_available(cfg, eval_only=args.eval_only)
    check_weights_available(cfg, resume=args.resume and not args.eval_only)
    return cfg


def check_processes_and_device(cfg: CfgNode, num_gpus: int, num_machines: int) -> None:
    """``--num-gpus`` and ``--num-machines`` at least 1, and a CUDA ``MODEL.DEVICE`` only
    where CUDA is available; raises ConfigError naming the flag or key."""
    for flag, value in (("--num-gpus", num_gpus), ("--num-machines", num_machines)):
        if value < 1:
            raise ConfigError(
                f"{flag} must be at least 1, got {value} (processes per machine, one per "
                "GPU; 1 on a CPU)"
            )
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but no CUDA device is available here; "
            "set MODEL.DEVICE cpu"
        )


def check_solver(cfg: CfgNode, world_size: int) -> None:
    """A training needs SOLVER.MAX_ITER >= 1 and SOLVER.IMS_PER_BATCH >= 1, divisible by
    the number of processes; raises ConfigError naming the key."""
    for key in ("MAX_ITER", "IMS_PER_BATCH"):
        if cfg.SOLVER[key] < 1:
            raise ConfigError(f"SOLVER.{key} must be at least 1, got {cfg.SOLVER[key]}")
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} is not divisible by the "
            f"{world_size} processes (--num-gpus x --num-machines)"
        )


def check_no_finished_run(output_dir: str) -> None:
    """A new training never replaces a finished run's model and metrics: refuse an
    OUTPUT_DIR that holds ``model_final.pth`` or ``final_metrics.json``."""
    for name in ("model_final.pth", FINAL_METRICS_FILE):
        if os.path.exists(os.path.join(output_dir, name)):
            raise ConfigError(
                f"OUTPUT_DIR {output_dir} holds a finished run ({name}); a new training would "
                "replace it: pass --resume to continue or re-evaluate that run, or set "
                "OUTPUT_DIR to a new folder"
            )


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """What every process of ``train_net.py`` runs."""
    cfg = setup(args)
    check_datasets_available(cfg, eval_only=args.eval_only)
    check_weights_available(cfg, resume=args.resume and not args.eval_only)
    if args.eval_only:
        return evaluate(cfg)
    return train(cfg, resume=args.resume)
