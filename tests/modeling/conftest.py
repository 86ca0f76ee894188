"""Fixtures shared by the model tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every model test runs torch on one thread (``one_torch_thread``)."""


class _FixedMatcher(torch.nn.Module):
    """A matcher that returns the given (pred_idx, tgt_idx) per video, whatever the outputs."""

    def __init__(self, indices):
        super().__init__()
        self.indices = [
            (torch.tensor(p, dtype=torch.int64), torch.tensor(t, dtype=torch.int64))
            for p, t in indices
        ]

    def forward(self, outputs, targets):
        return self.indices


@pytest.fixture
def fixed_matcher():
    """``fixed_matcher([(pred_idx, tgt_idx), ...])``: a matcher giving these int64 index
    pairs, one per video, so a criterion test fixes the assignment by hand."""
    return _FixedMatcher
