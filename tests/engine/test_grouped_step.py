"""ifr.engine.trainer.with_grouped_step: one update call per set of equal options must give
the parameters, optimizer state and state dict of the plain optimizer, bit for bit."""

import copy

import pytest
import torch
from torch import nn

from ifr.engine.trainer import (
    _merge_equal_groups,
    build_param_groups,
    with_full_model_gradient_clipping,
    with_grouped_step,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 1))
        self.head = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
        self.query = nn.Embedding(3, 4)


def _groups(net):
    """One group per parameter, 4 distinct (lr, weight decay) pairs among them."""
    return build_param_groups(
        net,
        base_lr=1e-2,
        weight_decay=0.05,
        weight_decay_norm=0.0,
        weight_decay_embed=0.0,
        backbone_multiplier=0.1,
    )


def _train(optimizer_cls, net, steps=12, **kwargs):
    optimizer = optimizer_cls(_groups(net), 1e-2, **kwargs)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        for param in net.parameters():
            param.grad = torch.randn(param.shape, generator=generator)
        if step == 5:  # as the LR scheduler does: options change between steps
            for group in optimizer.param_groups[::2]:
                group["lr"] *= 0.5
        optimizer.step()
    return optimizer


@pytest.mark.parametrize(
    "optimizer_cls, kwargs",
    [(torch.optim.AdamW, {}), (torch.optim.SGD, {"momentum": 0.9})],
)
def test_grouped_step_equals_the_plain_optimizer_bit_for_bit(optimizer_cls, kwargs):
    torch.manual_seed(0)
    plain_net = Net()
    grouped_net = copy.deepcopy(plain_net)

    plain = _train(with_full_model_gradient_clipping(optimizer_cls, 0.5), plain_net, **kwargs)
    grouped_cls = with_full_model_gradient_clipping(with_grouped_step(optimizer_cls), 0.5)
    grouped = _train(grouped_cls, grouped_net, **kwargs)

    for a, b in zip(plain_net.parameters(), grouped_net.parameters()):
        assert torch.equal(a, b)
    plain_state, grouped_state = plain.state_dict(), grouped.state_dict()
    assert plain_state["param_groups"] == grouped_state["param_groups"]  # one per parameter
    assert plain_state["state"].keys() == grouped_state["state"].keys()
    for index, state in plain_state["state"].items():
        for key, value in state.items():
            grouped_value = grouped_state["state"][index][key]
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(grouped_value))


def test_merge_equal_groups_merges_equal_options_and_keeps_the_rest():
    a, b, c, d = (nn.Parameter(torch.zeros(1)) for _ in range(4))
    tensor_lr = torch.tensor(0.1)
    groups = [
        {"params": [a], "lr": 0.1, "weight_decay": 0.0, "foreach": None},
        {"params": [b], "lr": 0.1, "weight_decay": 0.05, "foreach": None},
        {"params": [c], "lr": 0.1, "weight_decay": 0.0, "foreach": None},
        {"params": [d], "lr": tensor_lr, "weight_decay": 0.0, "foreach": None},
    ]
    merged = _merge_equal_groups(groups)
    assert [[id(p) for p in g["params"]] for g in merged] == [[id(a), id(c)], [id(b)], [id(d)]]
    assert merged[0]["weight_decay"] == 0.0 and merged[1]["weight_decay"] == 0.05
    assert merged[0]["foreach"] is True  # PyTorch's default (None) -> foreach kernels
    assert merged[2] is groups[3]  # a tensor option is not compared: kept alone
    assert groups[0]["params"] == [a] and groups[0]["foreach"] is None  # inputs untouched
