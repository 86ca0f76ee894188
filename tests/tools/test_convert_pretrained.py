import argparse
import os

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from torch import nn

from ifr.checkpoint.files import (
    UnsafeCheckpointError,
    convert_checkpoint,
    load_state_dict_safely,
    swin_official_to_d2,
    torchvision_resnet_to_d2,
)
from ifr.engine.cli import run_tool


class _Model(nn.Module):
    """Stand-in for the meta-architecture: the backbone under ``backbone``."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


@pytest.fixture
def resnet_cfg(make_cfg):
    """``resnet_cfg(depth)``: a detectron2 ResNet laid out as torchvision's: stride in the
    3x3 conv, frozen ImageNet BN statistics, all four stages out."""

    def build(depth):
        return make_cfg(
            overrides={
                "MODEL.RESNETS.DEPTH": depth,
                "MODEL.RESNETS.RES2_OUT_CHANNELS": 64 if depth in (18, 34) else 256,
                "MODEL.RESNETS.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
                "MODEL.RESNETS.STRIDE_IN_1X1": False,
                "MODEL.RESNETS.NORM": "FrozenBN",
            }
        )

    return build


def _randomize_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(std=0.1)
                m.running_mean.normal_(std=0.1)
                m.running_var.uniform_(0.5, 1.5)


def _torchvision_pyramid(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    outputs = {}
    for i, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
        x = layer(x)
        outputs[f"res{i + 2}"] = x
    return outputs


def test_r18_builds_from_cfg(resnet_cfg):
    backbone = build_resnet_backbone(resnet_cfg(18), ShapeSpec(channels=3))
    shapes = backbone.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res2": (64, 4),
        "res3": (128, 8),
        "res4": (256, 16),
        "res5": (512, 32),
    }
    outputs = backbone(torch.randn(1, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "res2": (1, 64, 16, 24),
        "res3": (1, 128, 8, 12),
        "res4": (1, 256, 4, 6),
        "res5": (1, 512, 2, 3),
    }


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_resnet_round_trip(tmp_path, depth, resnet_cfg):
    torch.set_num_threads(1)
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    _randomize_bn(reference)
    src = tmp_path / "tv.pth"
    torch.save(reference.state_dict(), src)
    out = tmp_path / "d2.pth"
    convert_checkpoint(str(src), str(out), "torchvision-resnet", log=None)

    backbone = build_resnet_backbone(resnet_cfg(depth), ShapeSpec(channels=3))
    model = _Model(backbone).eval()
    written = torch.load(out, weights_only=True)
    assert written["__author__"] == "ifr" and written["matching_heuristics"] is False
    incompatible = model.load_state_dict(written["model"], strict=True)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys

    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = _torchvision_pyramid(reference, x)
        actual = model.backbone(x)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-4, rtol=1e-4)


def test_resnet_loads_through_detection_checkpointer(tmp_path, resnet_cfg):
    reference = torchvision.models.resnet18(weights=None).eval()
    src = tmp_path / "tv.pth"
    torch.save(reference.state_dict(), src)
    out = tmp_path / "d2.pth"
    convert_checkpoint(str(src), str(out), "torchvision-resnet", log=None)
    model = _Model(build_resnet_backbone(resnet_cfg(18), ShapeSpec(channels=3))).eval()
    DetectionCheckpointer(model).load(str(out))
    torch.testing.assert_close(model.backbone.stem.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(
        model.backbone.res5[1].conv2.norm.running_var, reference.layer4[1].bn2.running_var
    )


def test_resnet_key_mapping_hand_written():
    state = {
        "conv1.weight": torch.zeros(1),
        "bn1.running_mean": torch.zeros(1),
        "bn1.num_batches_tracked": torch.zeros(1),
        "layer1.0.conv2.weight": torch.zeros(1),
        "layer2.0.bn3.bias": torch.zeros(1),
        "layer3.1.downsample.0.weight": torch.zeros(1),
        "layer4.0.downsample.1.running_var": torch.zeros(1),
        "fc.weight": torch.zeros(1),
    }
    assert set(torchvision_resnet_to_d2(state)) == {
        "stem.conv1.weight",
        "stem.conv1.norm.running_mean",
        "res2.0.conv2.weight",
        "res3.0.conv3.norm.bias",
        "res4.1.shortcut.weight",
        "res5.0.shortcut.norm.running_var",
    }
    with pytest.raises(ValueError, match="layer9.bogus"):
        torchvision_resnet_to_d2({"layer9.bogus": torch.zeros(1)}, source="x.pth")


TINY_SWIN = {
    "MODEL.BACKBONE.NAME": "D2SwinTransformer",
    "MODEL.SWIN.EMBED_DIM": 16,
    "MODEL.SWIN.DEPTHS": [2, 2, 1, 1],
    "MODEL.SWIN.NUM_HEADS": [1, 2, 2, 4],
    "MODEL.SWIN.WINDOW_SIZE": 3,
    "MODEL.SWIN.DROP_PATH_RATE": 0.0,
}


def _fake_official_swin(model):
    """An official classification checkpoint made from our model: same stage names, a
    final norm and a head instead of the per-output norms, the shifted-window masks."""
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("norm")}
    state["norm.weight"] = torch.ones(128)
    state["norm.bias"] = torch.zeros(128)
    state["head.weight"] = torch.randn(10, 128)
    state["head.bias"] = torch.zeros(10)
    state["layers.0.blocks.1.attn_mask"] = torch.zeros(4, 9, 9)
    return {"model": state}


def test_swin_round_trip(tmp_path, make_cfg):
    torch.set_num_threads(1)
    cfg = make_cfg(overrides=TINY_SWIN)
    reference = build_backbone(cfg).eval()
    src = tmp_path / "swin_official.pth"
    torch.save(_fake_official_swin(reference), src)
    out = tmp_path / "swin_d2.pth"
    convert_checkpoint(str(src), str(out), "swin", log=None)

    fresh = _Model(build_backbone(cfg)).eval()  # different random weights
    written = torch.load(out, weights_only=True)
    assert all(k.startswith("backbone.") for k in written["model"])
    incompatible = fresh.load_state_dict(written["model"], strict=False)
    assert not incompatible.unexpected_keys
    # Only the per-output norms are new (they start as identity, as in the reference).
    assert sorted(incompatible.missing_keys) == sorted(
        f"backbone.norm{i}.{p}" for i in range(4) for p in ("weight", "bias")
    )
    x = torch.randn(1, 3, 40, 52)
    with torch.no_grad():
        expected = reference(x)
        actual = fresh.backbone(x)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name])


def test_swin_absolute_pos_embed_reshaped_and_unknown_key():
    tokens = torch.arange(4 * 3.0).view(1, 4, 3)  # (1, L=2x2 tokens in row-major order, C=3)
    converted = swin_official_to_d2({"absolute_pos_embed": tokens})["absolute_pos_embed"]
    assert converted.shape == (1, 3, 2, 2)
    torch.testing.assert_close(converted[0, :, 0, 1], tokens[0, 1])
    torch.testing.assert_close(converted[0, :, 1, 0], tokens[0, 2])
    with pytest.raises(ValueError, match="cls_token"):
        swin_official_to_d2({"cls_token": torch.zeros(1)}, source="vit.pth")


def test_refuses_pickled_objects_unless_allowed(tmp_path):
    path = tmp_path / "with_objects.pth"
    torch.save({"model": {"layers.0.x": torch.ones(2)}, "config": argparse.Namespace(lr=1)}, path)
    with pytest.raises(UnsafeCheckpointError, match="allow-pickle"):
        load_state_dict_safely(str(path))
    state = load_state_dict_safely(str(path), allow_pickle=True)
    assert list(state) == ["layers.0.x"]


def test_safetensors_input(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"conv1.weight": torch.ones(2, 2)}, str(path))
    assert set(load_state_dict_safely(str(path))) == {"conv1.weight"}


def test_missing_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_state_dict_safely(str(tmp_path / "nowhere.pth"))


def test_command_line_tool(tmp_path, capsys, load_tool):
    tool = load_tool("convert_pretrained")
    src = tmp_path / "tv.pth"
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, src)
    out = tmp_path / "sub" / "R-18.pth"
    assert tool.main(["--kind", "torchvision-resnet", str(src), str(out)]) == 0
    # One line: read, written, and each group left out with its reason.
    counters = sum(k.endswith("num_batches_tracked") for k in state)
    written = len(state) - 2 - counters
    assert capsys.readouterr().out.strip() == (
        f"{src}: {len(state)} tensors read, {written} written; {2 + counters} left out: "
        f"{counters} BatchNorm step counters (frozen BatchNorm has none); "
        f"2 the ImageNet classifier (not part of the backbone) -> {out}"
    )
    assert "backbone.res5.1.conv2.norm.running_var" in torch.load(out, weights_only=True)["model"]
    # Wrong kind: a clear error naming the key, non-zero exit, no output written.
    bad_out = tmp_path / "bad.pth"
    assert run_tool(tool.main, ["--kind", "swin", str(src), str(bad_out)]) == 1
    assert "unexpected key 'conv1.weight'" in capsys.readouterr().err
    assert not bad_out.exists()


def test_converter_refuses_to_overwrite_its_input(tmp_path, load_tool, capsys):
    source = tmp_path / "weights.pth"
    torch.save({"layer.weight": torch.zeros(1)}, source)
    before = source.read_bytes()
    hard = tmp_path / "alias.pth"
    os.link(source, hard)
    tool = load_tool("convert_pretrained")
    argv = ["--kind", "swin", str(source), str(hard)]
    assert run_tool(tool.main, argv) == 1
    assert "it is input" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_converter_refuses_an_empty_result_and_a_pkl_output(tmp_path, load_tool, capsys):
    source = tmp_path / "weights.pth"
    torch.save({}, source)  # an empty state dict
    tool = load_tool("convert_pretrained")
    argv = ["--kind", "torchvision-resnet", str(source), str(tmp_path / "out.pth")]
    assert run_tool(tool.main, argv) == 1
    assert "no tensor to convert with --kind torchvision-resnet" in capsys.readouterr().err
    assert run_tool(tool.main, ["--kind", "swin", str(source), str(tmp_path / "out.pkl")]) == 1
    assert "name it .pth" in capsys.readouterr().err
    assert not list(tmp_path.glob("out.*"))
