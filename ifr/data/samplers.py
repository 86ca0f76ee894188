"""The training sampler: Detectron2's ``TrainingSampler`` stream that a resumed run can
continue where the interrupted one stopped."""

import itertools
from typing import Iterator, Optional

from detectron2.data.samplers import TrainingSampler

__all__ = ["ResumableTrainingSampler"]


class ResumableTrainingSampler(TrainingSampler):
    """The infinite shuffled stream of :class:`TrainingSampler` (the same indices for the
    same seed, process ``r`` of ``W`` taking ``stream[r::W]``); :meth:`skip` makes each
    process start further on, as if it had already drawn that many indices."""

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None):
        super().__init__(size, shuffle=shuffle, seed=seed)
        self._skipped = 0

    def skip(self, indices_per_process: int) -> None:
        """Start each process's stream after its first ``indices_per_process`` indices
        (takes effect for iterators made afterwards)."""
        if indices_per_process < 0:
            raise ValueError(f"cannot skip {indices_per_process} indices")
        self._skipped = int(indices_per_process)

    def __iter__(self) -> Iterator[int]:
        start = self._rank + self._skipped * self._world_size
        yield from itertools.islice(self._infinite_indices(), start, None, self._world_size)
