import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from ifr.inference import run_inference
from ifr.inference.video import decode_segment, encode_frames_of


def decoded(output):
    return [np.stack([mask_util.decode(r) for r in rles]) for rles in output["pred_masks"]]


def test_output_format(toy_model, make_video):
    model = toy_model(top_k=4)
    video = make_video(3)
    output = run_inference(model, video)
    assert output["image_size"] == (60, 84)
    assert (
        len(output["pred_scores"]) == len(output["pred_labels"]) == len(output["pred_masks"]) == 4
    )
    assert output["pred_scores"] == sorted(output["pred_scores"], reverse=True)
    for masks in decoded(output):
        assert masks.shape == (3, 60, 84)


def test_scores_are_the_top_k_of_the_decoder_on_all_frames(toy_model, make_video):
    model = toy_model(top_k=5)
    video = make_video(4)
    output = run_inference(model, video)
    with torch.no_grad():
        images = model.preprocess_frames(video["image"])
        logits = model.transformer_decoder(*model.encode_frames(images))["pred_logits"][0]
    scores, flat = logits.sigmoid().flatten().topk(5)
    assert np.allclose(output["pred_scores"], scores.numpy(), atol=1e-6)
    assert output["pred_labels"] == (flat % logits.shape[1]).tolist()


@pytest.mark.parametrize("num_frames", [2, 5])
def test_chunked_video_equals_one_chunk(toy_model, make_video, num_frames):
    video = make_video(num_frames)
    chunked_model = toy_model(frame_chunk=2, feature_storage="cpu")
    one_chunk_model = toy_model(frame_chunk=num_frames)
    chunked = run_inference(chunked_model, video)
    whole = run_inference(one_chunk_model, video)
    assert chunked_model.encode_calls == [2] * (num_frames // 2) + [1] * (num_frames % 2)
    assert np.allclose(chunked["pred_scores"], whole["pred_scores"], atol=1e-6)
    assert chunked["pred_labels"] == whole["pred_labels"]
    for a, b in zip(decoded(chunked), decoded(whole)):
        assert np.array_equal(a, b)


def test_features_wait_on_the_storage_device(toy_model, make_video):
    model = toy_model(feature_storage="cpu")
    multi_scale, mask_features, sizes = encode_frames_of(model, make_video(2)["image"])
    segment = decode_segment(model, multi_scale, mask_features, sizes, 0, 2)
    assert segment.mask_features.device.type == "cpu"
    assert segment.mask_features.shape[0] == 2 and segment.padded_size == (64, 64)
    assert segment.image_size == (40, 56)


def test_bad_input_is_named(toy_model, make_video):
    video = make_video(1)
    video["image"] = []
    with pytest.raises(ValueError, match="video 7"):
        run_inference(toy_model(), video)
    with pytest.raises(ValueError, match="FEATURE_STORAGE"):
        run_inference(toy_model(feature_storage="gpu0"), make_video(1))
