"""The inference modes on the real (tiny, randomly initialised) IFR model and a video of
the tiny synthetic dataset read by the test mapper."""

import dataclasses
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.modeling import build_model

from ifr.data import YTVISDatasetMapper, generate_tiny_ytvis, load_ytvis_json

CONFIG = os.path.join(os.path.dirname(__file__), "..", "tools", "ifr_r18_tiny_random.yaml")
NUM_FRAMES = 5

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_cfg):
    torch.set_num_threads(1)
    image_root, json_file = generate_tiny_ytvis(
        str(tmp_path_factory.mktemp("tiny")), "val", num_videos=1, num_frames=NUM_FRAMES, seed=2
    )
    video = load_ytvis_json(json_file, image_root, "ytvis_tiny_e2e")[0]
    cfg = make_cfg(CONFIG)
    batched_input = YTVISDatasetMapper(cfg, is_train=False)(video)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    return model, batched_input


def infer(model, batched_input, **options):
    model.inference_options = dataclasses.replace(model.inference_options, **options)
    with torch.no_grad():
        return model([batched_input])[0]


def decoded(output):
    return [np.stack([mask_util.decode(r) for r in rles]) for rles in output["pred_masks"]]


def assert_same(a, b):
    assert np.allclose(a["pred_scores"], b["pred_scores"], atol=1e-5)
    assert a["pred_labels"] == b["pred_labels"]
    for masks_a, masks_b in zip(decoded(a), decoded(b)):
        assert (masks_a != masks_b).mean() < 1e-3  # float rounding at the threshold only


def test_chunked_whole_video_equals_one_chunk(setup):
    model, batched_input = setup
    assert len(batched_input["image"]) == NUM_FRAMES
    one_chunk = infer(model, batched_input, mode="video", frame_chunk=NUM_FRAMES)
    chunked = infer(model, batched_input, mode="video", frame_chunk=2, feature_storage="cpu")
    assert one_chunk["image_size"] == (batched_input["height"], batched_input["width"])
    assert_same(chunked, one_chunk)


def test_half_precision_feature_storage_keeps_the_predictions(setup):
    model, batched_input = setup
    full = infer(model, batched_input, mode="video", frame_chunk=2, feature_storage="cpu")
    half = infer(
        model,
        batched_input,
        mode="video",
        frame_chunk=2,
        feature_storage="cpu",
        feature_storage_dtype="float16",
    )
    assert np.allclose(full["pred_scores"], half["pred_scores"], atol=2e-2)
    assert full["pred_labels"] == half["pred_labels"]
    for masks_full, masks_half in zip(decoded(full), decoded(half)):
        assert (masks_full != masks_half).mean() < 2e-2


def test_one_clip_covering_the_video_equals_whole_video(setup):
    model, batched_input = setup
    whole = infer(model, batched_input, mode="video", frame_chunk=2)
    per_clip = infer(
        model,
        batched_input,
        mode="clip",
        clip_length=NUM_FRAMES + 1,
        clip_overlap=1,
        clip_min_score=0.0,
        frame_chunk=2,
    )
    assert_same(per_clip, whole)


@pytest.mark.parametrize("mode, tta", [("clip", False), ("video", True), ("clip", True)])
def test_modes_give_masks_of_every_frame_at_the_original_size(setup, mode, tta):
    model, batched_input = setup
    output = infer(
        model,
        batched_input,
        mode=mode,
        clip_length=2,
        clip_overlap=1,
        clip_min_score=0.0,  # a random model predicts no object: keep every query
        tta_enabled=tta,
        tta_min_sizes=[64, 48],
        tta_flip=True,
        top_k=4,
    )
    size = (batched_input["height"], batched_input["width"])
    assert len(output["pred_scores"]) == 4
    for masks in decoded(output):
        assert masks.shape == (NUM_FRAMES, *size)
