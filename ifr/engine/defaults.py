"""What ``tools/train_net.py`` does, as functions tests can call."""
import argparse
import logging
import os
from typing import Any, Dict, List

from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import IFRCheckpointer
from ..config import add_ifr_config, merge_overrides
from ..utils.atomic_io import atomic_write_json
from .trainer import Trainer, flatten_metrics, write_final_metrics

logger = logging.getLogger("ifr")


def argument_parser() -> argparse.ArgumentParser:
    """Detectron2's parser: --config-file, --resume, --eval-only, --num-gpus,
    --num-machines, --machine-rank, --dist-url and trailing KEY VALUE overrides."""
    return default_argument_parser(
        epilog="Example: python tools/train_net.py --config-file configs/ytvis19/r50.yaml "
        "--num-gpus 8 SOLVER.IMS_PER_BATCH 16"
    )


def build_cfg(config_file: str = "", opts: List[str] = ()) -> CfgNode:
    """detectron2 defaults + IFR keys + the yaml + command-line overrides (not frozen).

    Overrides go through :func:`ifr.config.merge_overrides` (the sweep tools check theirs
    with the same function): an unknown key or a wrong type is a ValueError naming it."""
    cfg = get_cfg()
    add_ifr_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    merge_overrides(cfg, list(opts))
    return cfg


def setup(args: argparse.Namespace) -> CfgNode:
    cfg = build_cfg(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)  # output dir, logs, config dump, seeds (SEED + rank)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="ifr")
    return cfg


def check_datasets_available(cfg: CfgNode) -> None:
    """Fail at once, before any model is built, when a dataset of the config is unknown,
    its files are missing, or its number of categories is not MODEL.IFR.NUM_CLASSES."""
    registered = set(DatasetCatalog.list())
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        if name not in registered:
            ytvis = sorted(n for n in registered if n.startswith(("ytvis", "ovis")))
            raise KeyError(f"Dataset {name!r} (DATASETS) is not registered. Known: {ytvis}")
        meta = MetadataCatalog.get(name)
        if not meta.get("generated_on_demand", False):
            _check_dataset_files(name, meta)
        num_classes = len(meta.get("thing_classes", []))
        if num_classes and num_classes != cfg.MODEL.IFR.NUM_CLASSES:
            raise ValueError(
                f"Dataset {name!r} has {num_classes} categories but MODEL.IFR.NUM_CLASSES is "
                f"{cfg.MODEL.IFR.NUM_CLASSES}; set MODEL.IFR.NUM_CLASSES {num_classes}."
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
    --resume will load OUTPUT_DIR/last_checkpoint instead)."""
    weights = cfg.MODEL.WEIGHTS
    if not weights or "://" in weights or os.path.isfile(weights):
        return
    if resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")):
        return
    raise FileNotFoundError(
        f"MODEL.WEIGHTS {weights!r} does not exist. Download the COCO-pretrained Mask2Former "
        "weights there (README, 'Pretrained weights'), point MODEL.WEIGHTS to them, or pass "
        "MODEL.WEIGHTS \"\" to start from random initialisation."
    )


def evaluate(cfg: CfgNode) -> Dict[str, Any]:
    """--eval-only: load MODEL.WEIGHTS and evaluate on every DATASETS.TEST; the results.json
    (+ zip) of each dataset lands in OUTPUT_DIR/inference/<dataset>/."""
    model = Trainer.build_model(cfg)
    IFRCheckpointer(
        model, cfg.OUTPUT_DIR, allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE
    ).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
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


def main(args: argparse.Namespace) -> Dict[str, Any]:
    cfg = setup(args)
    check_datasets_available(cfg)
    check_weights_available(cfg, resume=args.resume and not args.eval_only)
    if args.eval_only:
        return evaluate(cfg)
    return train(cfg, resume=args.resume)
