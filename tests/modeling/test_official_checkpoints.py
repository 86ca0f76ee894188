"""Every published config evaluates its authors' checkpoint as it is: a synthetic file with
the official key names and shapes (written in the system's own test module from the
official module definitions) goes through ``load_inference_weights``, the loader of
``train_net.py --eval-only``, which refuses a file that leaves any model tensor unloaded.
The counts are README's checkpoint table."""

import logging
import os
import pickle

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from test_ifc_configs import _official_ifc_names
from test_m2f_vis_checkpoint import CLASSES, official_r50_keys
from test_tevit_checkpoint import _random_state, official_tevit_shapes
from test_vistr_weights import official_trained_vistr_state

from ifr.checkpoint import load_inference_weights
from ifr.checkpoint.ifc import rename_official_ifc_keys
from ifr.engine.defaults import build_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _published(name: str):
    cfg = build_cfg(
        os.path.join(ROOT, "configs", "ytvis19", name), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""]
    )
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def _mask2former_vis_file(path, cfg, model) -> int:
    generator = np.random.default_rng(0)
    arrays = {
        k: generator.standard_normal(s).astype(np.float32) for k, s in official_r50_keys().items()
    }
    arrays["criterion.empty_weight"] = np.array([1.0] * CLASSES + [0.1], dtype=np.float32)
    with open(path, "wb") as f:  # the model zoo's .pkl of numpy arrays
        pickle.dump({"model": arrays, "__author__": "Mask2Former-VIS"}, f)
    return len(arrays)


def _ifc_file(path, cfg, model) -> int:
    state = model.state_dict()
    names = _official_ifc_names(
        list(state), cfg.MODEL.IFC.ENC_LAYERS, cfg.MODEL.VIS.DEC_LAYERS, False
    )
    weights = {
        o: torch.randn_like(state[next(iter(rename_official_ifc_keys({o: None})))]) for o in names
    }
    weights["criterion.empty_weight"] = torch.ones(cfg.MODEL.VIS.NUM_CLASSES + 1)
    torch.save({"model": weights, "iteration": 5999}, path)
    return len(weights)


def _vistr_file(path, cfg, model) -> int:
    state = official_trained_vistr_state(cfg.MODEL.VISTR.ENC_LAYERS, cfg.MODEL.VISTR.DEC_LAYERS)
    torch.save({"model": state}, path)
    return len(state)


def _tevit_file(path, cfg, model) -> int:
    state = _random_state(official_tevit_shapes(6))
    torch.save({"meta": {"epoch": 12}, "state_dict": state}, path)
    return len(state)


# The loss constant both Mask2Former-VIS and IFC files hold (set by the config here).
LOSS_CONSTANT = "; unused, loss constants set by the config: criterion (1)"


@pytest.mark.parametrize(
    "config, make_file, suffix, file_tensors, model_tensors, unused",
    [
        ("m2f_vis_r50.yaml", _mask2former_vis_file, ".pkl", 558, 557, LOSS_CONSTANT),
        ("ifc_r50.yaml", _ifc_file, ".pth", 429, 428, LOSS_CONSTANT),
        ("vistr_r50.yaml", _vistr_file, ".pth", 503, 503, ""),
        ("tevit_msgshift.yaml", _tevit_file, ".pth", 623, 639, ""),
    ],
    ids=["mask2former_vis", "ifc", "vistr", "tevit"],
)
def test_the_published_config_evaluates_the_official_file_as_it_is(
    config, make_file, suffix, file_tensors, model_tensors, unused, tmp_path, caplog
):
    """The one summary line: every model tensor loaded; of the file, only a loss constant
    unused (VisTR's 42-row class head loses its row 0, TeViT's 16 in_proj become q and
    kv: 623 tensors fill 639)."""
    cfg, model = _published(config)
    path = tmp_path / f"official{suffix}"
    assert make_file(path, cfg, model) == file_tensors
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(path)
    with caplog.at_level(logging.INFO):
        load_inference_weights(model, cfg)
    assert len(model.state_dict()) == model_tensors
    summary = f"{path}: loaded {model_tensors} of {model_tensors} model tensors{unused}"
    assert summary in caplog.messages
