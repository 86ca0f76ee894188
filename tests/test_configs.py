import glob
import os

import pytest

from ifr.engine.defaults import build_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(
    p for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
    if not os.path.basename(p).startswith("Base-")
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_config_merges_with_the_paper_settings(path):
    cfg = build_cfg(path)
    assert cfg.MODEL.META_ARCHITECTURE == "IFR"
    if "tiny" in path:
        return
    assert cfg.INPUT.SAMPLING_FRAME_NUM == 2
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (360, 480)
    assert cfg.SOLVER.BACKBONE_MULTIPLIER == 0.1
    assert (cfg.MODEL.IFR.CLASS_WEIGHT, cfg.MODEL.IFR.MASK_WEIGHT, cfg.MODEL.IFR.DICE_WEIGHT) == (2.0, 5.0, 5.0)
    assert cfg.MODEL.IFR.LAMBDA_E == 0.3
    assert cfg.MODEL.IFR.DEC_LAYERS == 9
    assert cfg.MODEL.IFR.NUM_QUERIES == (200 if path.endswith("_200.yaml") else 100)
    assert cfg.MODEL.IFR.NUM_CLASSES == 40
    year = "2019" if "ytvis19" in path else "2021"
    assert cfg.DATASETS.TRAIN == (f"ytvis_{year}_train",)


def test_swin_large_dimensions():
    cfg = build_cfg(os.path.join(ROOT, "configs", "ytvis19", "swin_l.yaml"))
    assert cfg.MODEL.BACKBONE.NAME == "D2SwinTransformer"
    assert (cfg.MODEL.SWIN.EMBED_DIM, list(cfg.MODEL.SWIN.DEPTHS)) == (192, [2, 2, 18, 2])
    assert list(cfg.MODEL.SWIN.NUM_HEADS) == [6, 12, 24, 48]


def test_unknown_override_key_is_rejected():
    with pytest.raises(ValueError, match="MODEL.IFR.LAMBDA_X does not exist.*LAMBDA_E"):
        build_cfg(os.path.join(ROOT, "configs", "ytvis19", "r50.yaml"), ["MODEL.IFR.LAMBDA_X", "1"])
