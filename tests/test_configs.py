"""The configs hold the paper's recipe (docs/method.md, "Recipe") where they say they do.

The paper's values are written here as literals, not read back from the defaults, so a
default or a yaml that loses one fails."""

import glob
import os
import re

import numpy as np
import pytest
import yaml
from detectron2.data import transforms as T

from ifr.data.dataset_mapper import build_clip_augmentations
from ifr.engine.defaults import build_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_PY = os.path.join(ROOT, "ifr", "config.py")
BASE_IFR = os.path.join(ROOT, "configs", "Base-IFR.yaml")
CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
    if not os.path.basename(p).startswith("Base-")
)
# The yamls of the other systems (Mask2Former-VIS and the seed systems IFC, VisTR, TeViT)
# have their own tests (tests/modeling/test_<system>*.py).
OTHER_SYSTEMS = ("m2f_vis_", "ifc_", "vistr_", "tevit_")
# The paper's configs (Tables 1-2): IFR on YouTube-VIS 2019 and 2021.
YTVIS_IFR = [
    p
    for p in CONFIGS
    if os.path.basename(os.path.dirname(p)) in ("ytvis19", "ytvis21")
    and not os.path.basename(p).startswith(OTHER_SYSTEMS)
]
BASES = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "Base-*.yaml"), recursive=True))

# The paper's recipe: key -> value (docs/method.md, "Recipe").
PAPER = {
    "MODEL.VIS.CLASS_WEIGHT": 2.0,  # lambda_c
    "MODEL.VIS.MASK_WEIGHT": 5.0,  # lambda_m
    "MODEL.VIS.DICE_WEIGHT": 5.0,  # lambda_D
    "MODEL.IFR.LAMBDA_E": 0.3,  # lambda_e
    "MODEL.VIS.NUM_QUERIES": 100,  # N
    "MODEL.VIS.DEC_LAYERS": 9,  # L
    "MODEL.VIS.HIDDEN_DIM": 256,  # d
    "INPUT.SAMPLING_FRAME_NUM": 2,  # 2-frame training clips
    "INPUT.MIN_SIZE_TRAIN": (360, 480),  # shorter side 360 or 480
    "SOLVER.BACKBONE_MULTIPLIER": 0.1,  # backbone lr x0.1
}
# Where a paper config legitimately differs from the recipe's defaults.
ALLOWED_OVERRIDES = {
    "MODEL.VIS.NUM_QUERIES": ("_200.yaml",),  # the "(200)" rows
}


def _rel(path):
    return os.path.relpath(path, ROOT)


def _flatten(node, prefix=""):
    """Nested yaml dict -> {"A.B.C": value}."""
    flat = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _own_keys(path):
    """The keys one yaml file sets itself (not its bases), flattened."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    data.pop("_BASE_", None)
    return _flatten(data)


def _yaml_chain(path):
    """The yaml file and its _BASE_ files, the file itself first."""
    chain = [path]
    with open(path) as f:
        base = (yaml.safe_load(f) or {}).get("_BASE_")
    if base:
        chain += _yaml_chain(os.path.join(os.path.dirname(path), base))
    return chain


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def test_defaults_are_the_papers_recipe():
    cfg = build_cfg()
    for key, value in PAPER.items():
        got = _get(cfg, key)
        assert (tuple(got) if isinstance(value, tuple) else got) == value, key


@pytest.mark.parametrize("path", CONFIGS, ids=_rel)
def test_every_config_builds_with_the_papers_settings(path):
    cfg = build_cfg(path)
    if os.path.basename(path).startswith("m2f_vis_"):
        assert cfg.MODEL.META_ARCHITECTURE == "VideoMaskFormer"
        return
    if os.path.basename(path).startswith(OTHER_SYSTEMS):
        assert cfg.MODEL.META_ARCHITECTURE != "IFR"
        return
    if "tiny" in path:
        assert cfg.MODEL.META_ARCHITECTURE == "IFR"
        return
    assert cfg.MODEL.META_ARCHITECTURE == "IFR"
    for key, value in PAPER.items():
        if key == "MODEL.VIS.NUM_QUERIES" and path.endswith("_200.yaml"):
            value = 200
        got = _get(cfg, key)
        assert (tuple(got) if isinstance(value, tuple) else got) == value, key
    assert cfg.MODEL.VIS.NUM_CLASSES == 40
    year = "2019" if os.sep + "ytvis19" + os.sep in path else "2021"
    assert cfg.DATASETS.TRAIN == (f"ytvis_{year}_train",)
    assert cfg.DATASETS.TEST == (f"ytvis_{year}_val",)


@pytest.mark.parametrize("path", YTVIS_IFR + [BASE_IFR], ids=_rel)
def test_the_recipe_lives_in_the_defaults_only(path):
    """No paper config restates a recipe value (read as yaml, without the defaults); only
    the documented exceptions override one."""
    for yaml_file in _yaml_chain(path):
        for key in _own_keys(yaml_file):
            if key in PAPER:
                allowed = ALLOWED_OVERRIDES.get(key, ())
                assert yaml_file.endswith(allowed) if allowed else False, (
                    f"{_rel(yaml_file)} sets {key}: the recipe lives in ifr/config.py"
                )


@pytest.mark.parametrize("path", YTVIS_IFR + BASES, ids=_rel)
def test_a_yaml_sets_a_key_only_to_change_it(path):
    """Every recipe key a yaml sets differs from the value it inherits (defaults + its
    bases). Backbone descriptions (MODEL.BACKBONE, RESNETS, SWIN) are exempt: a backbone
    config states its dimensions in full."""
    with open(path) as f:
        base = (yaml.safe_load(f) or {}).get("_BASE_")
    inherited = build_cfg(os.path.join(os.path.dirname(path), base) if base else "")
    for key, value in _own_keys(path).items():
        if key == "VERSION" or key.startswith(("MODEL.BACKBONE.", "MODEL.RESNETS.", "MODEL.SWIN.")):
            continue  # VERSION: Detectron2's config format version, read before merging
        old = _get(inherited, key)
        new = type(old)(value) if isinstance(old, (tuple, list)) else value
        if isinstance(value, str) and isinstance(old, tuple):  # "(360, 480)" in yaml
            new = tuple(yaml.safe_load(value.replace("(", "[").replace(")", "]")))
        assert new != old, f"{_rel(path)} sets {key} to the value it already has ({old!r})"


@pytest.mark.parametrize("path", [p for p in YTVIS_IFR if p.endswith("_200.yaml")], ids=_rel)
def test_200_query_configs_set_200(path):
    assert build_cfg(path).MODEL.VIS.NUM_QUERIES == 200


def _resized_shape(augmentations, height, width):
    aug_input = T.AugInput(np.zeros((height, width, 3), dtype=np.uint8))
    T.AugmentationList(augmentations)(aug_input)
    return aug_input.image.shape[:2]


def _stated_min_size_test(path):
    """INPUT.MIN_SIZE_TEST as the yaml chain states it, else the documented 360."""
    for yaml_file in _yaml_chain(path):
        own = _own_keys(yaml_file)
        if "INPUT.MIN_SIZE_TEST" in own:
            return int(own["INPUT.MIN_SIZE_TEST"])
    return 360


@pytest.mark.parametrize("path", YTVIS_IFR, ids=_rel)
def test_a_youtube_vis_frame_is_resized_to_the_stated_size(path):
    """720x1280 frames: the test size is the stated shorter side (no longer-side cap cuts
    it down), and training at 480 gives 480x853."""
    cfg = build_cfg(path)
    short = _stated_min_size_test(path)
    test_shape = _resized_shape(build_clip_augmentations(cfg, is_train=False), 720, 1280)
    assert test_shape == (short, int(1280 * short / 720 + 0.5))
    cfg.INPUT.MIN_SIZE_TRAIN = (480,)
    cfg.INPUT.RANDOM_FLIP = "none"
    assert _resized_shape(build_clip_augmentations(cfg, is_train=True), 720, 1280) == (480, 853)


def _config_assignments(source):
    """(line number, line) of every ``cfg.X = ...`` assignment of a config key."""
    pattern = re.compile(r"^\s*cfg(\.[A-Z0-9_]+)+\s*=(?!=)")
    return [(i, line) for i, line in enumerate(source.splitlines()) if pattern.match(line)]


def _undocumented(source):
    lines = source.splitlines()
    missing = []
    for i, line in _config_assignments(source):
        if line.rstrip().endswith("= CN()"):
            continue  # a namespace, not a key
        same_line = "#" in line.split("=", 1)[1]
        line_above = i > 0 and lines[i - 1].strip().startswith("#")
        if not (same_line or line_above):
            missing.append(line.strip())
    return missing


def test_every_config_key_has_a_comment():
    with open(CONFIG_PY) as f:
        source = f.read()
    assert len(_config_assignments(source)) > 80  # the parser sees the keys
    assert _undocumented(source) == []


def test_the_comment_check_catches_a_key_without_one():
    source = "    # documented\n    cfg.A.B = 1\n    cfg.A.C = 2  # documented\n    cfg.A.D = 3\n"
    assert _undocumented(source) == ["cfg.A.D = 3"]


def test_unknown_override_key_is_rejected():
    with pytest.raises((AssertionError, ValueError), match="MODEL.IFR.LAMBDA_X"):
        build_cfg(os.path.join(ROOT, "configs", "ytvis19", "r50.yaml"), ["MODEL.IFR.LAMBDA_X", "1"])


def test_swin_large_dimensions():
    cfg = build_cfg(os.path.join(ROOT, "configs", "ytvis19", "swin_l.yaml"))
    assert cfg.MODEL.BACKBONE.NAME == "D2SwinTransformer"
    assert (cfg.MODEL.SWIN.EMBED_DIM, list(cfg.MODEL.SWIN.DEPTHS)) == (192, [2, 2, 18, 2])
    assert list(cfg.MODEL.SWIN.NUM_HEADS) == [6, 12, 24, 48]
    assert cfg.INPUT.MIN_SIZE_TEST == 480


@pytest.mark.parametrize(
    "old, new",
    [
        ("MODEL.IFR.NUM_CLASSES", "MODEL.VIS.NUM_CLASSES"),
        ("MODEL.IFR.TEST.TOP_K", "MODEL.VIS.TEST.TOP_K"),
        ("MODEL.IFR.TEST.TTA.MIN_SIZES", "MODEL.VIS.TEST.TTA.MIN_SIZES"),
    ],
)
def test_a_shared_key_under_its_old_node_names_the_new_one(tmp_path, old, new):
    r50 = os.path.join(ROOT, "configs", "ytvis19", "r50.yaml")
    with pytest.raises(ValueError, match=f"^{re.escape(old)} is now {re.escape(new)} "):
        build_cfg(r50, [old, "3"])
    *parents, leaf = old.split(".")
    tree = {leaf: 3}
    for part in reversed(parents):
        tree = {part: tree}
    old_yaml = tmp_path / "old.yaml"
    old_yaml.write_text(yaml.safe_dump({"_BASE_": r50, **tree}))
    with pytest.raises(Exception, match="old.yaml: MODEL.IFR.* is now MODEL.VIS") as error:
        build_cfg(str(old_yaml))
    named_new = str(error.value).split(" is now ")[1].split()[0]
    assert new.startswith(named_new)  # the yaml's first node that moved (TTA for TTA.*)


def test_keys_of_one_system_and_unknown_keys_are_not_reported_as_moved():
    from ifr.config import moved_key_message

    assert moved_key_message("MODEL.IFR.LAMBDA_E") is None
    assert moved_key_message("MODEL.IFR.TEST.RECURRENCE") is None
    assert moved_key_message("MODEL.IFR.LAMBDA_X") is None
    assert moved_key_message("MODEL.VIS.NUM_CLASSES") is None
