"""Training loop: Detectron2's DefaultTrainer with IFR's data, evaluator, optimizer and
checkpointer, DDP that also runs on CPU (gloo), and mixed precision (MODEL.PRECISION, or
Detectron2's SOLVER.AMP.ENABLED) with loss scaling only for fp16 on CUDA."""

import itertools
import json
import logging
import os
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Set

import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import AMPTrainer, DefaultTrainer, HookBase, SimpleTrainer, TrainerBase
from detectron2.engine import hooks as d2_hooks
from detectron2.evaluation import inference_on_dataset
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import CLASS_COLORS_KEY, CLASS_NAMES_KEY, IFRCheckpointer
from ..data import (
    build_ytvis_test_loader,
    build_ytvis_train_loader,
    build_ytvis_train_loader_and_sampler,
)
from ..evaluation import YTVISEvaluator
from ..evaluation.offline import load_files
from ..evaluation.operating_point import choose_threshold, idf1_curve
from ..utils.atomic_io import atomic_write_json
from ..utils.parameters import format_parameter_counts, parameter_counts
from ..utils.precision import check_precision
from ..utils.rng import rng_state, set_rng_state

logger = logging.getLogger(__name__)

FINAL_METRICS_FILE = "final_metrics.json"
_NORM_MODULES = (
    torch.nn.BatchNorm2d,
    torch.nn.SyncBatchNorm,
    torch.nn.GroupNorm,
    torch.nn.LayerNorm,
    torch.nn.LocalResponseNorm,
)


def create_ddp_model(model: torch.nn.Module) -> torch.nn.Module:
    """DDP over all processes; one GPU per process with CUDA, CPU (gloo) otherwise."""
    if comm.get_world_size() == 1:
        return model
    device_ids = [comm.get_local_rank()] if torch.cuda.is_available() else None
    # find_unused_parameters: with lambda_e = 0 or without deep supervision some heads
    # receive no gradient.
    return DistributedDataParallel(
        model, device_ids=device_ids, broadcast_buffers=False, find_unused_parameters=True
    )


class Trainer(DefaultTrainer):
    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader, self._train_sampler = build_ytvis_train_loader_and_sampler(cfg)
        # The loader draws its workers' seeds from a generator of its own (so that a resumed
        # run's new iterator leaves the random stream alone); this one draw from torch's is
        # the one its first iterator used to make, which keeps every run's random stream,
        # and so its results, what they were.
        torch.empty((), dtype=torch.int64).random_()
        self._rng_states: List[Dict[str, Any]] = []  # per process, at the last checkpoint
        model = create_ddp_model(model)
        self._trainer = build_step_trainer(cfg, model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = IFRCheckpointer(
            model,
            cfg.OUTPUT_DIR,
            allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE,
            extra_data=training_classes(cfg),
            trainer=weakref.proxy(self),
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume: bool = True) -> None:
        """Detectron2's; a resumed run also drops from ``metrics.json`` what the interrupted
        run logged after its last checkpoint (those iterations are trained again)."""
        super().resume_or_load(resume=resume)
        if resume and self.start_iter > 0 and comm.is_main_process():
            trim_metrics_log(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"), self.iter)

    def build_hooks(self):
        """Detectron2's hooks, with :class:`GatherRNGStates` just before the checkpointer
        (before the evaluation hook on processes that do not save)."""
        hooks = super().build_hooks()
        kinds = (d2_hooks.PeriodicCheckpointer, d2_hooks.EvalHook)
        index = min(i for i, h in enumerate(hooks) if isinstance(h, kinds))
        hooks.insert(index, GatherRNGStates(self.cfg.SOLVER.CHECKPOINT_PERIOD, self.max_iter))
        return hooks

    def state_dict(self) -> Dict[str, Any]:
        """What a resumed run needs to continue as the same run: Detectron2's iteration
        and hook states (the LR scheduler), the optimizer and grad scaler (``_trainer``,
        which Detectron2 v0.6 leaves out), every process's random generators, and how far
        each process has read the training stream."""
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()
        state["rng"] = self._rng_states or [rng_state()]
        state["data"] = {
            "indices_per_process": (self.iter + 1)
            * self.cfg.SOLVER.IMS_PER_BATCH
            // comm.get_world_size(),
            "world_size": comm.get_world_size(),
        }
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "_trainer" in state:
            self._trainer.load_state_dict(state["_trainer"])
        else:
            logger.warning(
                "The checkpoint has no optimizer state (written by an older version): the "
                "optimizer and the grad scaler start afresh; the run is not continued as "
                "the same run"
            )
        data = state.get("data")
        if data is not None:
            if data["world_size"] != comm.get_world_size():
                logger.warning(
                    f"The checkpoint was written by {data['world_size']} processes, this run "
                    f"has {comm.get_world_size()}: the data stream does not continue exactly"
                )
            self._train_sampler.skip(data["indices_per_process"])
            # The loader's iterator was made (and its workers started) before the skip.
            self._trainer._data_loader_iter = iter(self._trainer.data_loader)
        rank = comm.get_rank()
        if len(state.get("rng", [])) > rank:
            set_rng_state(state["rng"][rank])

    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        """Detectron2's model (logged whole), and its parameter count per component."""
        model = super().build_model(cfg)
        logger.info(format_parameter_counts(parameter_counts(model)))
        return model

    @classmethod
    def build_train_loader(cls, cfg):
        return build_ytvis_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        return build_ytvis_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(
        cls,
        cfg,
        dataset_name: str,
        output_folder: Optional[str] = None,
        own_threshold: Optional[float] = None,
    ):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return YTVISEvaluator(
            cfg, dataset_name, output_dir=output_folder, own_threshold=own_threshold
        )

    @classmethod
    def own_tracking_threshold(cls, cfg, model: torch.nn.Module) -> float:
        """The model's tracking score threshold of best IDF1 on TEST.TRACKING_TUNE_DATASET
        (inference there, results in OUTPUT_DIR/inference/<dataset>/), on every process."""
        name = cfg.TEST.TRACKING_TUNE_DATASET
        output_dir = os.path.join(cfg.OUTPUT_DIR, "inference", name)
        evaluator = YTVISEvaluator(
            name,
            tracking_score_threshold=cfg.TEST.TRACKING_SCORE_THRESHOLD,
            output_dir=output_dir,
            tracking=False,
        )
        inference_on_dataset(model, cls.build_test_loader(cfg, name), evaluator)
        threshold = None
        if comm.is_main_process():
            json_file = MetadataCatalog.get(name).json_file
            gt, predictions = load_files(json_file, os.path.join(output_dir, "results.json"))
            curve = idf1_curve(gt, predictions)
            threshold = choose_threshold(curve)
            logger.info(
                f"Own tracking score threshold: {threshold} (IDF1 {curve[threshold]:.2f} on "
                f"{name}, against {curve.get(cfg.TEST.TRACKING_SCORE_THRESHOLD, float('nan')):.2f} "
                f"at {cfg.TEST.TRACKING_SCORE_THRESHOLD})"
            )
        return comm.all_gather(threshold)[0]

    @classmethod
    def test(cls, cfg, model: torch.nn.Module, evaluators=None):
        """Detectron2's test; with TEST.TRACKING_TUNE_DATASET, the tracking metrics are also
        computed at the model's own threshold, chosen there first."""
        if evaluators is None and cfg.TEST.TRACKING_TUNE_DATASET and cfg.DATASETS.TEST:
            threshold = cls.own_tracking_threshold(cfg, model)
            evaluators = [
                cls.build_evaluator(cfg, name, own_threshold=threshold)
                for name in cfg.DATASETS.TEST
            ]
        return super().test(cfg, model, evaluators)

    @classmethod
    def build_optimizer(cls, cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
        params = build_param_groups(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            weight_decay_embed=cfg.SOLVER.WEIGHT_DECAY_EMBED,
            backbone_multiplier=cfg.SOLVER.BACKBONE_MULTIPLIER,
        )
        name = cfg.SOLVER.OPTIMIZER.upper()
        if name == "ADAMW":
            optimizer_cls = torch.optim.AdamW
            kwargs = {}
        elif name == "SGD":
            optimizer_cls = torch.optim.SGD
            kwargs = {"momentum": cfg.SOLVER.MOMENTUM}
        else:
            raise ValueError(f"SOLVER.OPTIMIZER must be ADAMW or SGD, got {cfg.SOLVER.OPTIMIZER!r}")
        optimizer_cls = with_grouped_step(optimizer_cls)
        clip = cfg.SOLVER.CLIP_GRADIENTS
        if clip.ENABLED and clip.CLIP_TYPE == "full_model":
            optimizer_cls = with_full_model_gradient_clipping(optimizer_cls, clip.CLIP_VALUE)
            return optimizer_cls(params, cfg.SOLVER.BASE_LR, **kwargs)
        optimizer = optimizer_cls(params, cfg.SOLVER.BASE_LR, **kwargs)
        return maybe_add_gradient_clipping(cfg, optimizer)


def trim_metrics_log(path: str, last_iteration: int) -> int:
    """Keep in the JSON-lines log ``path`` the complete lines of iterations up to
    ``last_iteration``; returns how many lines were dropped. Rewritten in place: the
    metrics writer already holds the file open for appending."""
    if not os.path.isfile(path):
        return 0
    with open(path, "r+") as f:
        lines = f.read().splitlines(keepends=True)
        kept = [line for line in lines if _logged_iteration(line) <= last_iteration]
        if len(kept) < len(lines):
            f.seek(0)
            f.writelines(kept)
            f.truncate()
    if len(kept) < len(lines):
        logger.info(f"{path}: dropped {len(lines) - len(kept)} lines logged after the checkpoint")
    return len(lines) - len(kept)


def _logged_iteration(line: str) -> float:
    """The iteration of a complete log line; infinity for a partial or foreign one."""
    try:
        record = json.loads(line) if line.endswith("\n") else None
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("iteration"), int):
        return float("inf")
    return record["iteration"]


class GatherRNGStates(HookBase):
    """On every process, at each iteration the checkpointer saves after, gathers the
    random generators' states of all processes into ``trainer._rng_states`` (the main
    process saves them: a checkpoint restores every process's generators)."""

    def __init__(self, period: int, max_iter: int):
        self._period = period
        self._max_iter = max_iter

    def after_step(self):
        iteration = self.trainer.iter + 1
        if (self._period > 0 and iteration % self._period == 0) or iteration >= self._max_iter:
            self.trainer._rng_states = comm.all_gather(rng_state())


def training_classes(cfg) -> Dict[str, Any]:
    """The class names (and colours, when the dataset has them) of DATASETS.TRAIN, saved in
    every checkpoint so that the model's labels travel with it (the demo, --eval-only)."""
    if not cfg.DATASETS.TRAIN:
        return {}
    meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
    extra: Dict[str, Any] = {}
    if meta.get("thing_classes", None):
        extra[CLASS_NAMES_KEY] = [str(name) for name in meta.thing_classes]
    if meta.get("thing_colors", None):
        extra[CLASS_COLORS_KEY] = [[int(c) for c in color] for color in meta.thing_colors]
    return extra


def training_precision(cfg) -> str:
    """The precision training computes in: MODEL.PRECISION where it is not "fp32";
    otherwise "fp16" where SOLVER.AMP.ENABLED and CUDA is available (Detectron2's AMP),
    else "fp32". Raises ValueError for fp16 without CUDA (its loss scaling needs CUDA)."""
    precision = check_precision(cfg.MODEL.PRECISION)
    cuda = torch.cuda.is_available() and str(cfg.MODEL.DEVICE).startswith("cuda")
    if precision == "fp16" and not cuda:
        raise ValueError(
            "MODEL.PRECISION fp16 trains only on CUDA (loss scaling); use bf16 or fp32 here"
        )
    if precision != "fp32":
        return precision
    if cfg.SOLVER.AMP.ENABLED and not cuda:
        logger.warning("SOLVER.AMP.ENABLED is set but CUDA is not available: training in fp32.")
        return "fp32"
    return "fp16" if cfg.SOLVER.AMP.ENABLED else "fp32"


def use_amp(cfg) -> bool:
    """True where training needs Detectron2's AMPTrainer: fp16, whose GradScaler keeps
    small gradients from underflowing. bf16 has float32's range and needs no scaling."""
    return training_precision(cfg) == "fp16"


def build_step_trainer(cfg, model, data_loader, optimizer) -> SimpleTrainer:
    """The per-iteration trainer. The model autocasts itself in MODEL.PRECISION
    (``VideoMaskClassifier.autocast``), so bf16 needs no trainer of its own: SimpleTrainer.
    fp16 (MODEL.PRECISION fp16, or SOLVER.AMP.ENABLED with MODEL.PRECISION fp32) runs
    through AMPTrainer, whose fp16 autocast is the model's own or, for "fp32", the one it
    computes in, and whose GradScaler scales the loss."""
    if use_amp(cfg):
        scaler = torch.amp.GradScaler("cuda")
        return AMPTrainer(model, data_loader, optimizer, grad_scaler=scaler)
    return SimpleTrainer(model, data_loader, optimizer)


def build_param_groups(
    model: torch.nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float,
    weight_decay_embed: float,
    backbone_multiplier: float,
) -> List[Dict[str, Any]]:
    """One group per parameter: learning rate x ``backbone_multiplier`` in the backbone
    (the paper: x0.1, docs/method.md), no/other weight decay for normalisation layers and
    embeddings."""
    groups: List[Dict[str, Any]] = []
    seen: Set[torch.nn.Parameter] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            group = {"params": [param], "lr": base_lr, "weight_decay": weight_decay}
            if "backbone" in module_name:
                group["lr"] = base_lr * backbone_multiplier
            if isinstance(module, _NORM_MODULES):
                group["weight_decay"] = weight_decay_norm
            if isinstance(module, torch.nn.Embedding) or _is_position_table(param_name):
                group["weight_decay"] = weight_decay_embed
            groups.append(group)
    return groups


def _is_position_table(param_name: str) -> bool:
    return "relative_position_bias_table" in param_name or "absolute_pos_embed" in param_name


def with_full_model_gradient_clipping(optimizer_cls, clip_norm: float):
    """An optimizer class whose ``step`` first clips the gradient norm of all parameters
    together (Mask2Former's "full_model" clipping)."""

    class FullModelGradientClippingOptimizer(optimizer_cls):
        def step(self, closure=None):
            all_params = itertools.chain(*[g["params"] for g in self.param_groups])
            torch.nn.utils.clip_grad_norm_(all_params, clip_norm)
            return super().step(closure=closure)

    return FullModelGradientClippingOptimizer


def with_grouped_step(optimizer_cls):
    """An optimizer class whose ``step`` updates all parameters with the same options
    (lr, weight decay, ...) in one call, with foreach kernels, however many groups hold them.

    ``build_param_groups`` makes one group per parameter, and a step of one group costs
    Python overhead per group (245 groups in ifr_tiny: 30 of its 360 CPU-ms per iteration
    went to the optimizer). The update of each parameter depends only on its own gradient,
    state and options, so it is the same (bit for bit on CPU, tests/engine); the groups, the
    state dict and checkpoints are unchanged.
    """

    class GroupedStepOptimizer(optimizer_cls):
        def step(self, closure=None):
            groups = self.param_groups
            self.param_groups = _merge_equal_groups(groups)
            try:
                return super().step(closure=closure)
            finally:
                self.param_groups = groups

    GroupedStepOptimizer.__name__ = f"GroupedStep{optimizer_cls.__name__}"
    return GroupedStepOptimizer


def _merge_equal_groups(groups: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Groups with equal options merged (parameters in their order of appearance), with
    ``foreach`` on where it was left to PyTorch's default; groups with an option that is not
    a plain value (a tensor learning rate, say) are kept as they are."""
    merged: Dict[Any, Dict[str, Any]] = {}
    kept: List[Dict[str, Any]] = []
    for group in groups:
        options = {k: v for k, v in group.items() if k != "params"}
        if not all(_is_plain_option(v) for v in options.values()):
            kept.append(group)
            continue
        key = tuple(sorted(options.items()))
        if key not in merged:
            merged[key] = {**options, "params": []}
            if "foreach" in options and options["foreach"] is None:
                merged[key]["foreach"] = True
        merged[key]["params"].extend(group["params"])
    return list(merged.values()) + kept


def _is_plain_option(value: Any) -> bool:
    """A number, string, bool or None (or a tuple of them), compared by value."""
    if isinstance(value, tuple):
        return all(_is_plain_option(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def flatten_metrics(results: Dict[str, Any]) -> Dict[str, float]:
    """Evaluator results ``{"segm": {...}, "tracking": {...}}`` (possibly nested under a
    dataset name) -> one flat dict of metric -> value."""
    flat: "OrderedDict[str, float]" = OrderedDict()
    if results and all(isinstance(v, dict) and _is_task_dict(v) for v in results.values()):
        results = next(iter(results.values()))  # several test datasets: the first
    for task in results.values():
        if isinstance(task, dict):
            flat.update({k: float(v) for k, v in task.items() if isinstance(v, (int, float))})
    return flat


def _is_task_dict(value: Dict[str, Any]) -> bool:
    return any(isinstance(v, dict) for v in value.values())


def write_final_metrics(cfg, results: Dict[str, Any]) -> str:
    """``OUTPUT_DIR/final_metrics.json``: the flat metrics of the final evaluation, written
    atomically; its existence marks a finished run (docs/design.md)."""
    metrics = flatten_metrics(results)
    path = os.path.join(cfg.OUTPUT_DIR, FINAL_METRICS_FILE)
    atomic_write_json(path, metrics)
    logger.info("Final metrics written to %s", path)
    return path
