import torch
from torch import nn

from ifr.utils.parameters import format_parameter_counts, parameter_counts


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(3, 4)  # 3 * 4 + 4 = 16
        self.head = nn.Sequential(nn.Linear(4, 2, bias=False), nn.ReLU())  # 8
        self.tied = nn.Module()
        self.tied.weight = self.encoder.weight  # shared: counted in encoder only
        self.scale = nn.Parameter(torch.ones(5))  # the model's own: 5
        self.register_buffer("mean", torch.zeros(7))  # a buffer, not a parameter


def test_counts_per_child_with_shared_parameters_once():
    counts = parameter_counts(Shared())
    assert counts == {"encoder": 16, "head": 8, "(own)": 5, "total": 29}
    assert counts["total"] == sum(p.numel() for p in Shared().parameters())


def test_format_names_every_component_with_thousands_separators():
    text = format_parameter_counts({"backbone": 1429683, "decoder": 315843, "total": 1745526})
    assert text == "Parameters: 1,745,526 (backbone 1,429,683, decoder 315,843)"
