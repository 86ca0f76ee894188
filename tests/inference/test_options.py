import pytest

from ifr.inference.options import InferenceOptions


@pytest.fixture
def cfg_with(make_cfg):
    """``cfg_with(KEY=value)``: the default config with ``MODEL.IFR.TEST.<KEY>`` set."""
    return lambda **test_keys: make_cfg(
        overrides={f"MODEL.IFR.TEST.{key}": value for key, value in test_keys.items()}
    )


def test_defaults_follow_the_config(cfg_with):
    options = InferenceOptions.from_config(
        cfg_with(MODE="clip", CLIP_LENGTH=2, CLIP_OVERLAP=1, CLIP_MIN_IOU=0.3)
    )
    assert (options.mode, options.clip_length, options.clip_overlap) == ("clip", 2, 1)
    assert (options.clip_min_iou, options.top_k) == (0.3, 10)
    assert options.tta_min_sizes == [360, 480, 600, 720]


@pytest.mark.parametrize(
    "keys, named",
    [
        ({"MODE": "frame"}, "MODE"),
        ({"CLIP_OVERLAP": 5}, "CLIP_OVERLAP"),
        ({"FEATURE_STORAGE": "disk"}, "FEATURE_STORAGE"),
        ({"TOP_K": 0}, "TOP_K"),
        ({"FRAME_CHUNK": 0}, "FRAME_CHUNK"),
        ({"CLIP_MIN_IOU": 1.5}, "CLIP_MIN_IOU"),
        ({"TTA.ENABLED": True, "TTA.PIVOT": 4}, "TTA.PIVOT"),
    ],
)
def test_bad_values_name_the_key(keys, named, cfg_with):
    with pytest.raises(ValueError, match=named):
        InferenceOptions.from_config(cfg_with(**keys))
