import logging
import os

import pytest
import torch
from torch import nn

from ifr.engine.trainer import (
    Trainer,
    build_param_groups,
    flatten_metrics,
    trim_metrics_log,
    with_full_model_gradient_clipping,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4))
        self.head = nn.Linear(4, 2)
        self.query = nn.Embedding(3, 4)


def _group_of(groups, param):
    (group,) = [g for g in groups if g["params"][0] is param]
    return group


def test_param_groups_scale_backbone_lr_and_skip_decay_on_norm_and_embeddings():
    net = Net()
    groups = build_param_groups(
        net,
        base_lr=1e-4,
        weight_decay=0.05,
        weight_decay_norm=0.0,
        weight_decay_embed=0.0,
        backbone_multiplier=0.1,
    )
    assert len(groups) == len(list(net.parameters()))
    conv = _group_of(groups, net.backbone[0].weight)
    assert conv["lr"] == pytest.approx(1e-5) and conv["weight_decay"] == 0.05
    norm = _group_of(groups, net.backbone[1].weight)
    assert norm["lr"] == pytest.approx(1e-5) and norm["weight_decay"] == 0.0
    head = _group_of(groups, net.head.weight)
    assert head["lr"] == 1e-4 and head["weight_decay"] == 0.05
    assert _group_of(groups, net.query.weight)["weight_decay"] == 0.0


def test_full_model_clipping_bounds_the_joint_gradient_norm():
    a = nn.Parameter(torch.zeros(1))
    b = nn.Parameter(torch.zeros(1))
    optimizer = with_full_model_gradient_clipping(torch.optim.SGD, clip_norm=1.0)(
        [{"params": [a]}, {"params": [b]}], lr=1.0
    )
    a.grad = torch.tensor([3.0])
    b.grad = torch.tensor([4.0])  # joint norm 5 -> scaled by 1/5
    optimizer.step()
    assert a.item() == pytest.approx(-0.6, abs=1e-5)
    assert b.item() == pytest.approx(-0.8, abs=1e-5)


def test_flatten_metrics_single_and_several_datasets():
    one = {"segm": {"AP": 40.0, "AP50": 60.0}, "tracking": {"IDF1": 70.0}}
    assert flatten_metrics(one) == {"AP": 40.0, "AP50": 60.0, "IDF1": 70.0}
    several = {"ds_a": one, "ds_b": {"segm": {"AP": 1.0}}}
    assert flatten_metrics(several) == {"AP": 40.0, "AP50": 60.0, "IDF1": 70.0}


def test_build_model_logs_the_parameter_count_of_each_component(make_cfg, ifr_caplog):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cfg = make_cfg(os.path.join(root, "configs", "tiny", "ifr_tiny.yaml"))
    with ifr_caplog.at_level(logging.INFO):
        model = Trainer.build_model(cfg)
    backbone = sum(p.numel() for p in model.backbone.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert f"Parameters: {total:,} (backbone {backbone:,}, pixel_decoder " in ifr_caplog.text


def test_trim_metrics_log_keeps_complete_lines_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.json"
    lines = [f'{{"iteration": {i}, "loss": 1.0}}\n' for i in (19, 39, 59)]
    path.write_text("".join(lines) + '{"eta_seconds": 3, "itera')  # killed mid-write
    writer = open(path, "a")  # the metrics writer opened it before the resume
    assert trim_metrics_log(str(path), 39) == 2
    writer.write('{"iteration": 59, "loss": 0.5}\n')
    writer.close()
    assert path.read_text() == lines[0] + lines[1] + '{"iteration": 59, "loss": 0.5}\n'
    assert trim_metrics_log(str(path), 100) == 0
    assert trim_metrics_log(str(tmp_path / "absent.json"), 1) == 0
