"""A record of what a behaviour-preserving change must keep equal (``tools/fingerprint.py``):
per config, at fixed seeds, the initial state_dict, one training batch's losses and
gradients, and whole-video, per-clip and test-time-augmented inference of one val video."""

import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from ..data.build import build_ytvis_test_loader, build_ytvis_train_loader
from ..engine.defaults import build_cfg
from ..utils.atomic_io import atomic_torch_save

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_CONFIGS = tuple(
    os.path.join(_ROOT, "configs", "tiny", f"{name}.yaml")
    for name in ("ifr_tiny", "m2f_vis_tiny", "ifc_tiny", "vistr_tiny", "tevit_tiny")
)
# Inference settings of the three recorded modes (the tiny val videos have 10 frames).
_MODES = {
    "video": ["MODEL.VIS.TEST.MODE", "video"],
    "clip": [
        "MODEL.VIS.TEST.MODE", "clip", "MODEL.VIS.TEST.CLIP_LENGTH", "4",
        "MODEL.VIS.TEST.CLIP_OVERLAP", "2",
    ],
    "tta": [
        "MODEL.VIS.TEST.TTA.ENABLED", "True", "MODEL.VIS.TEST.TTA.MIN_SIZES", "[80, 96]",
        "MODEL.VIS.TEST.TTA.FLIP", "True",
    ],
}  # fmt: skip


def record_fingerprint(
    config_files: Sequence[str], output: str, log: Optional[Callable[[str], None]] = None
) -> Dict[str, object]:
    """Builds, trains one step and runs inference for each config; saves and returns the
    record: ``"<config>/<part>" -> {name: tensor or value}`` (a failing inference mode
    records its error message)."""
    torch.set_num_threads(1)
    record: Dict[str, object] = {}
    for config_file in config_files:
        name = os.path.splitext(os.path.basename(config_file))[0]
        record.update(_record_config(config_file, name))
        if log is not None:
            log(f"{name}: recorded")
    atomic_torch_save(record, output)
    return record


def _record_config(config_file: str, name: str) -> Dict[str, object]:
    opts = ["DATALOADER.NUM_WORKERS", "0"]
    cfg = build_cfg(config_file, opts)
    torch.manual_seed(0)
    model = build_model(cfg)
    record: Dict[str, object] = {f"{name}/state": _flat(model.state_dict())}
    seed_all_rng(1)
    batch = next(iter(build_ytvis_train_loader(cfg)))
    model.train()
    seed_all_rng(2)
    losses = model(batch)
    sum(losses.values()).backward()
    record[f"{name}/losses"] = _flat(losses)
    record[f"{name}/grads"] = {
        k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None
    }
    seed_all_rng(4)
    video = next(iter(build_ytvis_test_loader(cfg, cfg.DATASETS.TEST[0])))
    for mode, mode_opts in _MODES.items():
        evaluated = build_model(build_cfg(config_file, opts + mode_opts))
        evaluated.load_state_dict(model.state_dict())
        evaluated.eval()
        try:
            with torch.no_grad():
                torch.manual_seed(3)
                record[f"{name}/{mode}"] = _flat(evaluated(video))
        except (ValueError, RuntimeError) as error:  # e.g. VisTR on a video longer than T
            record[f"{name}/{mode}"] = f"error: {type(error).__name__}: {error}"
    return record


def _flat(value, prefix: str = "") -> Dict[str, object]:
    """Nested outputs -> ``{"/path/to/leaf": tensor or plain value}`` (arrays as tensors, so
    a record loads with ``weights_only``)."""
    if isinstance(value, torch.Tensor):
        return {prefix: value.detach().clone()}
    if isinstance(value, np.ndarray):
        return {prefix: torch.from_numpy(value.copy())}
    if isinstance(value, np.generic):
        return {prefix: value.item()}
    if isinstance(value, dict):
        return {
            k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}/{key}").items()
        }
    if isinstance(value, (list, tuple)):
        return {
            k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}/{i}").items()
        }
    return {prefix: value}


def compare_fingerprints(before: str, after: str) -> List[str]:
    """One line per difference between two records (missing parts, other names, unequal
    tensors or values); empty when they are equal."""
    a = torch.load(before, weights_only=True)
    b = torch.load(after, weights_only=True)
    differences = [f"{key}: only in {before}" for key in a if key not in b]
    differences += [f"{key}: only in {after}" for key in b if key not in a]
    for key in (k for k in a if k in b):
        x, y = a[key], b[key]
        if isinstance(x, str) or isinstance(y, str):
            if x != y:
                differences.append(
                    f"{key}: {x if isinstance(x, str) else 'ok'} / "
                    f"{y if isinstance(y, str) else 'ok'}"
                )
            continue
        if set(x) != set(y):
            differences.append(f"{key}: other entries ({sorted(set(x) ^ set(y))[:3]} ...)")
            continue
        for entry in x:
            u, v = x[entry], y[entry]
            same = torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v
            if not same:
                differences.append(f"{key}{entry}: differs")
    return differences
