import os
import re

import pytest

from ifr.config import normalize_override
from ifr.engine.defaults import build_cfg
from ifr.experiments.grid import SweepParam
from ifr.experiments.validation import build_reference_config, parse_overrides, validate_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml")


@pytest.fixture
def cfg(config_file):
    return build_reference_config(config_file)


def test_reference_config_has_ifr_keys_and_the_yaml(cfg):
    assert cfg.MODEL.IFR.LAMBDA_E == 0.2  # from the yaml, not the default 0.3
    assert cfg.SOLVER.MAX_ITER == 10


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        build_reference_config(str(tmp_path / "nope.yaml"))


def test_yaml_with_unknown_key_is_an_error_as_in_train_net(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text("MODEL:\n  NOT_A_KEY_YET: 1\n")
    with pytest.raises(ValueError, match="other.yaml.*NOT_A_KEY_YET"):
        build_reference_config(str(path))
    with pytest.raises(ValueError, match="other.yaml.*NOT_A_KEY_YET"):  # train_net's config
        build_cfg(str(path))


def test_broken_yaml_is_an_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("MODEL: [unclosed\n")
    with pytest.raises(ValueError, match="broken.yaml"):
        build_reference_config(str(path))


def test_normalize_override(cfg):
    assert normalize_override(cfg, "MODEL.IFR.LAMBDA_E", "0") == "0.0"  # int -> float key
    assert normalize_override(cfg, "MODEL.IFR.LAMBDA_E", "0.5") == "0.5"
    assert normalize_override(cfg, "INPUT.MIN_SIZE_TRAIN", "[360,480]") == "[360,480]"
    assert normalize_override(cfg, "MODEL.VIS.DEEP_SUPERVISION", "False") == "False"
    assert normalize_override(cfg, "SOLVER.MAX_ITER", "20") == "20"


def test_unknown_key_is_named_with_suggestions(cfg):
    with pytest.raises(ValueError, match="MODEL.IFR.LAMBDA_F does not exist.*LAMBDA_E"):
        normalize_override(cfg, "MODEL.IFR.LAMBDA_F", "0.1")
    with pytest.raises(ValueError, match="MODEL.IFR.LAMBDA_E.X does not exist"):
        normalize_override(cfg, "MODEL.IFR.LAMBDA_E.X", "0.1")


def test_sweep_and_train_net_accept_and_refuse_the_same_overrides(cfg):
    """``MODEL.IFR.LAMBDA_E 1`` (an integer for a float key): the sweep and train_net
    both merge overrides with normalize_override, so both accept it."""
    params, _ = validate_sweep(cfg, [SweepParam("MODEL.IFR.LAMBDA_E", ("1",))], [])
    assert params[0].values == ("1.0",)
    train_cfg = build_cfg(TINY, ["MODEL.IFR.LAMBDA_E", "1", "SOLVER.MAX_ITER", "7"])
    assert train_cfg.MODEL.IFR.LAMBDA_E == 1.0 and isinstance(train_cfg.MODEL.IFR.LAMBDA_E, float)
    assert train_cfg.SOLVER.MAX_ITER == 7
    for key, value, message in [
        ("MODEL.IFR.LAMBDA_F", "1", "LAMBDA_F does not exist"),
        ("SOLVER.MAX_ITER", "0.5", "SOLVER.MAX_ITER=0.5"),
    ]:
        with pytest.raises(ValueError, match=message):
            validate_sweep(cfg, [SweepParam(key, (value,))], [])
        with pytest.raises(ValueError, match=message):
            build_cfg(TINY, [key, value])
    with pytest.raises(ValueError, match="odd number"):
        build_cfg(TINY, ["SOLVER.MAX_ITER"])


@pytest.mark.parametrize(
    "key, value",
    [
        ("MODEL.IFR.LAMBDA_E", "abc"),
        ("SOLVER.MAX_ITER", "0.5"),
        ("MODEL.VIS.DEEP_SUPERVISION", "[1]"),
    ],
)
def test_wrong_type_is_named(cfg, key, value):
    with pytest.raises(ValueError, match=re.escape(f"{key}={value}")):
        normalize_override(cfg, key, value)


def test_validate_sweep_normalises_params_and_overrides(cfg):
    params, overrides = validate_sweep(
        cfg, [SweepParam("MODEL.IFR.LAMBDA_E", ("0", "0.3"))], [("SOLVER.BASE_LR", "1")]
    )
    assert params == [SweepParam("MODEL.IFR.LAMBDA_E", ("0.0", "0.3"))]
    assert overrides == [("SOLVER.BASE_LR", "1.0")]
    assert cfg.SOLVER.BASE_LR != 1.0  # the reference config is left alone


@pytest.mark.parametrize(
    "params, overrides, message",
    [
        ([SweepParam("A.B", ("1",)), SweepParam("A.B", ("2",))], [], "given twice"),
        ([SweepParam("SOLVER.MAX_ITER", ("1",))], [("SOLVER.MAX_ITER", "2")], "both swept"),
        ([SweepParam("SEED", ("1", "2"))], [], "--seeds"),
        ([], [("OUTPUT_DIR", "x")], "--output-dir"),
        ([SweepParam("MODEL.IFR.LAMBDA_E", ("1", "1.0"))], [], "'1' and '1.0' are the same"),
        ([SweepParam("MODEL.IFR.LAMBDA_E", ("0.1", "0.10"))], [], "'0.1' and '0.10' are the"),
        ([SweepParam("INPUT.MIN_SIZE_TRAIN", ("[360,480]", "[360, 480]"))], [], "same value"),
    ],
)
def test_conflicts_are_refused(cfg, params, overrides, message):
    with pytest.raises(ValueError, match=message):
        validate_sweep(cfg, params, overrides)


def test_parse_overrides():
    assert parse_overrides(["A", "1", "B", "x"]) == [("A", "1"), ("B", "x")]
    with pytest.raises(ValueError, match="odd number"):
        parse_overrides(["A", "1", "B"])
    with pytest.raises(ValueError, match="A is given twice"):
        parse_overrides(["A", "1", "A", "2"])


def test_an_unregistered_dataset_is_refused_before_the_first_run():
    cfg = build_reference_config(TINY)
    with pytest.raises(ValueError, match=r"dataset 'nope' \(DATASETS.TRAIN\) is not registered"):
        validate_sweep(cfg, [], [("DATASETS.TRAIN", '("nope",)')])
    param = SweepParam("DATASETS.TEST", ('("ytvis_tiny_val",)', '("zz",)'))
    with pytest.raises(ValueError, match=r"'zz' \(DATASETS.TEST \(--param DATASETS.TEST="):
        validate_sweep(cfg, [param], [])
    declared = [("DATASETS.REGISTER", '["mine=a.json:frames"]'), ("DATASETS.TEST", '("mine",)')]
    validate_sweep(cfg, [], declared)  # declared for registration at the run's start
