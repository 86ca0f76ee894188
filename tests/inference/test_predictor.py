import os

import numpy as np
import pytest
import torch

from ifr.inference.predictor import VideoPredictor

CONFIG = os.path.join(os.path.dirname(__file__), "..", "tools", "ifr_r18_tiny_random.yaml")


@pytest.fixture(scope="module")
def predictor(make_cfg):
    torch.manual_seed(0)
    return VideoPredictor(make_cfg(CONFIG))


def test_frames_are_resized_and_converted_to_rgb(predictor):
    frame = np.zeros((48, 80, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    model_input = predictor.to_model_input([frame, frame])
    image = model_input["image"][0]
    assert image.shape == (3, 64, 107) and image.dtype == torch.uint8  # shorter side 64
    assert image[2].float().mean() > 250 and image[0].max() == 0  # blue is the last RGB channel
    assert (model_input["height"], model_input["width"], model_input["length"]) == (48, 80, 2)


def test_prediction_is_at_the_original_size(predictor):
    frames = [
        np.random.default_rng(t).integers(0, 255, (48, 80, 3), dtype=np.uint8) for t in range(2)
    ]
    output = predictor(frames)
    assert output["image_size"] == (48, 80)
    assert len(output["pred_masks"]) == 3 and all(len(m) == 2 for m in output["pred_masks"])
    assert all(m[0]["size"] == [48, 80] for m in output["pred_masks"])


def test_weights_are_loaded(predictor, tmp_path, make_cfg):
    path = tmp_path / "weights.pth"
    torch.save({"model": predictor.model.state_dict()}, path)
    torch.manual_seed(1)
    loaded = VideoPredictor(make_cfg(CONFIG, ["MODEL.WEIGHTS", str(path)]))
    for name, value in predictor.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value), name


def test_mismatched_frames_are_refused(predictor):
    with pytest.raises(ValueError, match="differ in size"):
        predictor.to_model_input([np.zeros((48, 80, 3), np.uint8), np.zeros((40, 80, 3), np.uint8)])
