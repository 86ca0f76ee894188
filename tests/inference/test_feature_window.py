import pytest
import torch

from ifr.inference.feature_window import FeatureWindow
from ifr.inference.video import encode_frames_of


@torch.no_grad()
def test_window_features_are_the_bits_of_whole_video_encoding(toy_model, make_video):
    """Same chunks as encode_video, so clip [3, 8) read from the window equals frames 3-7
    of the whole-video storage bit for bit; only the chunks it needs are encoded."""
    model = toy_model(frame_chunk=3, feature_storage="cpu")
    frames = make_video(10)["image"]
    multi_scale, mask_features, sizes = encode_frames_of(model, frames)
    model.encode_calls.clear()
    window = FeatureWindow.of_model(model, frames)
    clip_scales, clip_mask_features = window.features(3, 8)
    assert model.encode_calls == [3, 3]  # chunks [3, 6) and [6, 9)
    assert window.sizes == sizes and window.held_frames == 6
    assert torch.equal(clip_mask_features, mask_features[:, 3:8])
    for level, stored in zip(clip_scales, multi_scale):
        assert torch.equal(level, stored[:, 3:8])


@torch.no_grad()
def test_released_frames_are_dropped_and_not_readable(toy_model, make_video):
    model = toy_model(frame_chunk=2)
    window = FeatureWindow.of_model(model, make_video(6)["image"])
    window.features(0, 5)
    assert window.held_frames == 6
    window.release_before(3)  # chunk [0, 2) only: frame 3's chunk [2, 4) is still read
    assert window.held_frames == 4
    window.features(3, 6)
    assert model.encode_calls == [2, 2, 2]  # nothing encoded twice
    with pytest.raises(ValueError, match="released"):
        window.features(2, 4)
    with pytest.raises(ValueError, match="the video has 6"):
        window.features(4, 7)
