"""The resumable training sampler: Detectron2's stream, and after skip(n) that same
stream from its n-th index on, per process."""

import itertools

import pytest
from detectron2.data.samplers import TrainingSampler

from ifr.data.samplers import ResumableTrainingSampler


def _first(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_same_stream_as_detectron2s():
    assert _first(ResumableTrainingSampler(7, seed=3), 30) == _first(TrainingSampler(7, seed=3), 30)


@pytest.mark.parametrize("skipped", [0, 1, 6, 7, 15])
def test_skip_continues_the_stream(skipped):
    full = _first(ResumableTrainingSampler(7, seed=3), 40)
    sampler = ResumableTrainingSampler(7, seed=3)
    sampler.skip(skipped)
    assert _first(sampler, 40 - skipped) == full[skipped:]


def test_skip_per_process_of_two():
    stream = _first(TrainingSampler(5, seed=1), 40)
    sampler = ResumableTrainingSampler(5, seed=1)
    sampler._rank, sampler._world_size = 1, 2  # process 1 of 2 takes stream[1::2]
    sampler.skip(4)
    assert _first(sampler, 10) == stream[1::2][4:14]
    with pytest.raises(ValueError, match="cannot skip -1"):
        sampler.skip(-1)
