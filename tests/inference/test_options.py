import pytest
from detectron2.config import get_cfg

from ifr.config import add_ifr_config
from ifr.inference.options import InferenceOptions


def cfg_with(**test_keys):
    cfg = get_cfg()
    add_ifr_config(cfg)
    for key, value in test_keys.items():
        node = cfg.MODEL.IFR.TEST
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return cfg


def test_defaults_follow_the_config():
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
def test_bad_values_name_the_key(keys, named):
    with pytest.raises(ValueError, match=named):
        InferenceOptions.from_config(cfg_with(**keys))
