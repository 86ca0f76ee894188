import dataclasses

import pytest

from ifr.inference.options import InferenceOptions


def _set(cfg, dotted, value):
    *parents, leaf = dotted.split(".")
    node = cfg
    for parent in parents:
        node = node[parent]
    node[leaf] = value


@pytest.fixture
def cfg_with(make_cfg):
    """``cfg_with(KEY=value)``: the default config with ``MODEL.VIS.TEST.<KEY>`` set."""

    def build(**test_keys):
        cfg = make_cfg()
        for key, value in test_keys.items():
            _set(cfg, f"MODEL.VIS.TEST.{key}", value)
        return cfg

    return build


def test_every_field_comes_from_its_key(make_cfg):
    cfg = make_cfg()
    for key, value in {
        "MODEL.VIS.TEST.MODE": "clip",
        "MODEL.VIS.TEST.CLIP_LENGTH": 2,
        "MODEL.VIS.TEST.CLIP_OVERLAP": 1,
        "MODEL.VIS.TEST.CLIP_MIN_IOU": 0.3,
        "MODEL.VIS.TEST.TOP_K": 7,
        "MODEL.VIS.TEST.TTA.MIN_SIZES": [200, 300],
        "MODEL.VIS.TEST.TTA.PIVOT": 1,
        "INPUT.MAX_SIZE_TEST": 999,
        "INPUT.FORMAT": "BGR",
    }.items():
        _set(cfg, key, value)
    options = InferenceOptions.from_config(cfg)
    assert (options.mode, options.clip_length, options.clip_overlap) == ("clip", 2, 1)
    assert (options.clip_min_iou, options.top_k) == (0.3, 7)
    assert (options.tta_min_sizes, options.tta_pivot) == ([200, 300], 1)
    assert (options.max_size_test, options.input_format) == (999, "BGR")


def test_the_defaults_are_the_configs_only():
    """No default in the dataclass: an object cannot be made without the config's values."""
    with pytest.raises(TypeError):
        InferenceOptions()


def test_a_directly_built_object_is_checked_too(cfg_with):
    options = InferenceOptions.from_config(cfg_with())
    with pytest.raises(ValueError, match="MODEL.VIS.TEST.FRAME_CHUNK"):
        dataclasses.replace(options, frame_chunk=0)


def test_detectron2_image_tta_is_refused_with_the_video_keys(make_cfg):
    with pytest.raises(ValueError, match="MODEL.VIS.TEST.TTA.ENABLED"):
        cfg = make_cfg()
        cfg.TEST.AUG.ENABLED = True
        InferenceOptions.from_config(cfg)


@pytest.mark.parametrize(
    "keys, named",
    [
        ({"MODE": "frame"}, "MODE"),
        ({"CLIP_OVERLAP": 5}, "CLIP_OVERLAP"),
        ({"FEATURE_STORAGE": "disk"}, "FEATURE_STORAGE"),
        ({"TOP_K": -1}, "TOP_K"),
        ({"SCORE_THRESHOLD": 1.0}, "SCORE_THRESHOLD"),
        ({"FRAME_CHUNK": 0}, "FRAME_CHUNK"),
        ({"CLIP_MIN_IOU": 1.5}, "CLIP_MIN_IOU"),
        ({"TTA.ENABLED": True, "TTA.PIVOT": 4}, "TTA.PIVOT"),
        ({"TTA.MIN_SIZES": []}, "TTA.MIN_SIZES"),
        ({"FEATURE_STORAGE_DTYPE": "int8"}, "FEATURE_STORAGE_DTYPE"),
        ({"MASK_THRESHOLD": 1.0}, "MASK_THRESHOLD"),
    ],
)
def test_bad_values_name_the_key(keys, named, cfg_with):
    with pytest.raises(ValueError, match=named):
        InferenceOptions.from_config(cfg_with(**keys))
