"""The inference contract (ifr/inference/contract.py): every system's model meets it, and a
model that does not is refused with the member it lacks."""

import os

import pytest
import torch
from detectron2.modeling import build_model

from ifr.engine.defaults import build_cfg
from ifr.inference import run_inference
from ifr.inference.contract import VideoModel, check_video_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYSTEMS = ["ifr_tiny", "m2f_vis_tiny", "ifc_tiny", "vistr_tiny", "tevit_tiny"]


@pytest.mark.parametrize("name", SYSTEMS)
def test_every_system_meets_the_inference_contract(name):
    cfg = build_cfg(os.path.join(ROOT, "configs", "tiny", f"{name}.yaml"))
    model = build_model(cfg)
    assert isinstance(model, VideoModel)
    check_video_model(model)


def test_a_model_without_a_member_is_refused_naming_it(toy_model):
    model = toy_model()
    check_video_model(model)
    del model.transformer_decoder
    frames = [torch.zeros(3, 32, 32, dtype=torch.uint8)]
    with pytest.raises(
        TypeError, match=r"ToyVideoModel does not meet .* \['transformer_decoder'\]"
    ):
        run_inference(model, {"image": frames, "height": 32, "width": 32})
