"""Positions in a training sample stream, so a resumed run can start mid-stream.

A training process reads one stream of samples: the sampler's indices, in order, each
loaded and augmented (random flips) by the dataset's pipeline. To continue such a stream
after a resume without re-reading what came before, two things must not depend on the
samples that were skipped:

* which index comes next: :class:`PositionedSampler` wraps the sampler, numbers its
  indices (position 0, 1, ... of this process's stream) and can start at a position by
  advancing the wrapped sampler's index stream only (cheap: no loading);
* the random draws of the pipeline: with ``num_workers=0`` they come from the main
  process's global RNGs (interleaved with the training noise), with workers from each
  worker's RNGs, which advance with every sample that worker loaded. Either way a sample's
  flip depended on every sample loaded before it. :class:`PositionSeededDataset` wraps the
  dataset and loads the sample at position ``p`` with numpy, ``random`` and torch (CPU)
  seeded from ``(seed, rank, p)``, then puts the caller's RNG states back. A sample's
  augmentation is then a function of its position alone: the same with any number of
  workers, with or without a resume, and the training noise stream of the main process
  no longer depends on the data pipeline.

The sampler yields ``(position, index)`` pairs, which only the wrapped dataset
understands; :class:`~.fast_resume_loop.FastResumeIterBasedTrainLoop` installs both.
"""
import itertools
import random
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ['PositionedSampler', 'PositionSeededDataset', 'seeded_rngs']


class PositionedSampler(Sampler):
    """Yields ``(position, index)`` for the indices of ``sampler``.

    ``position`` counts the indices this wrapper has taken from ``sampler`` over all its
    iterations (epochs included). :meth:`seek` makes the next iteration start later: the
    next ``skip`` indices of the wrapped sampler are drawn and dropped (they are never
    yielded, so nothing is loaded) and numbering continues at ``position``.

    Args:
        sampler: Any sampler of dataset indices (e.g. MMEngine's InfiniteSampler or
            DefaultSampler); ``set_epoch`` and ``len`` are passed through.
    """

    def __init__(self, sampler):
        self.sampler = sampler
        self.position = 0
        self._skip = 0

    def seek(self, position: int, skip: int) -> None:
        """Number the next yielded index ``position``, after dropping ``skip`` indices."""
        if position < 0 or skip < 0:
            raise ValueError(f'seek: position and skip must be >= 0, got {position}, {skip}')
        self.position, self._skip = int(position), int(skip)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        indices = iter(self.sampler)
        skip, self._skip = self._skip, 0
        if skip:  # advance the index stream in C, without yielding
            next(itertools.islice(indices, skip, skip), None)
        for index in indices:
            position = self.position
            self.position += 1
            yield position, index

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)


def _sample_seeds(seed: int, rank: int, position: int) -> np.ndarray:
    # SeedSequence mixes the three numbers into well-spread, independent 32-bit words.
    return np.random.SeedSequence([seed % (1 << 63), rank, position]).generate_state(4)


@contextmanager
def seeded_rngs(seed: int, rank: int, position: int):
    """Run the body with numpy's, Python's and torch's CPU global RNGs seeded from
    ``(seed, rank, position)``; restore the previous states afterwards (also on errors).
    CUDA generators are not touched (data pipelines run on the CPU)."""
    np_state, py_state, torch_state = np.random.get_state(), random.getstate(), \
        torch.get_rng_state()
    words = _sample_seeds(seed, rank, position)
    np.random.seed(words[:2])
    random.seed(int(words[2]))
    torch.default_generator.manual_seed(int(words[3]) | (int(words[0]) << 32))
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.set_rng_state(torch_state)


class PositionSeededDataset(torch.utils.data.Dataset):
    """``dataset[(position, index)]`` is ``dataset[index]`` loaded under
    :func:`seeded_rngs` ``(seed, rank, position)``; a plain index loads as usual.

    Attributes the wrapped dataset has (``metainfo``, ``pipeline``...) are read through.
    ``seed`` may be set later (the training loop sets it when the stream starts, after a
    resume may have restored the checkpoint's seed).
    """

    def __init__(self, dataset, seed: Optional[int] = None, rank: int = 0):
        self.dataset, self.seed, self.rank = dataset, seed, rank

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            return self.dataset[key]
        position, index = key
        if self.seed is None:
            raise RuntimeError('PositionSeededDataset: seed is not set')
        with seeded_rngs(self.seed, self.rank, position):
            return self.dataset[index]

    def __getattr__(self, name):
        # Dunder lookups (pickling, torch's __getitems__ batch fetch) must not reach the
        # wrapped dataset: its __getitems__ would receive (position, index) pairs.
        if name.startswith('__') or name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f'PositionSeededDataset({self.dataset!r})'
