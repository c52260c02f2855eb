"""An iteration-based training loop that resumes without re-reading the data it skips.

MMEngine 0.10's ``IterBasedTrainLoop`` resumes at iteration N by loading (decoding,
resizing, flipping) and discarding N batches ("Advance dataloader N steps"): 110 s at
iteration 8,000 of a 64x64 run, hours late in the 1024x1024 recipe.
:class:`FastResumeIterBasedTrainLoop` is that loop with three changes:

* the training dataloader's sampler is wrapped in a
  :class:`~.sample_stream.PositionedSampler` and its dataset in a
  :class:`~.sample_stream.PositionSeededDataset`: each sample's random augmentation is
  seeded by its position in the stream (not by the samples loaded before it);
* the dataloader is not started when the loop is built but at the first batch, when the
  resumed iteration N is known (MMEngine's loop starts it at once: its workers would
  prefetch batches of the wrong position);
* on resume only the sampler's index stream is advanced by N batches: nothing is loaded.
  ``InfiniteSampler``: ``N * batch_size`` indices. Epoch samplers (``DefaultSampler``,
  torch's ``DistributedSampler``/``SequentialSampler``): the epoch ``N // batches per
  epoch`` is set and the rest skipped within it, as MMEngine's restarting iterator would
  have reached it.

Exactness: the resumed run reads the same indices in the same batches with the same
flips as an uninterrupted run (positions and seeds are the same), for any
``num_workers``; the training noise is restored by
:class:`~.rng_state_hook.RNGStateHook`. Each rank of a distributed run numbers its own
stream and seeds with its rank.

Falls back to MMEngine's re-reading (logged) for what it cannot position: a dataloader
passed in built, a custom batch sampler, or a sampler whose order is not a function of
its seed and epoch (e.g. torch's ``RandomSampler``).

Usage: ``train_cfg = dict(type='FastResumeIterBasedTrainLoop', max_iters=...)``
(``configs/_base_/default_runtime.py`` sets it for every recipe).
"""
import copy
import logging
import time
from typing import Dict, List, Optional, Tuple, Union

from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.base_loop import BaseLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from mmengine.runner.utils import calc_dynamic_intervals
import torch
from mmagic.registry import LOOPS
from torch.utils.data import (BatchSampler, DataLoader, DistributedSampler,
                              SequentialSampler)

from .sample_stream import PositionedSampler, PositionSeededDataset

__all__ = ['FastResumeIterBasedTrainLoop']

_EPOCH_SAMPLERS = (DefaultSampler, DistributedSampler, SequentialSampler)


class _LazyIterator:
    """Starts the loop's dataloader iterator at the first ``next``."""

    def __init__(self, loop: 'FastResumeIterBasedTrainLoop'):
        self._loop, self._inner = loop, None

    def __iter__(self):
        return self

    def __next__(self):
        if self._inner is None:
            self._inner = self._loop._start_iterator()
        return next(self._inner)


@LOOPS.register_module()
class FastResumeIterBasedTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` whose resume skips the consumed samples without loading
    them (see the module docstring). Same arguments.

    Attributes:
        rereads_consumed_batches (bool): False when resume fast-forwards the sampler;
            True in the fallback (MMEngine's re-reading). RNGStateHook reads it.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 max_iters: int,
                 val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None) -> None:
        # IterBasedTrainLoop.__init__ (MMEngine 0.10.7) minus starting the dataloader.
        wrapped = isinstance(dataloader, dict)
        if wrapped:
            dataloader = self._wrap_dataset(dataloader)
        BaseLoop.__init__(self, runner, dataloader)
        self._max_iters = int(max_iters)
        assert self._max_iters == max_iters, \
            f'`max_iters` should be a integer number, but get {max_iters}'
        self._max_epochs = 1
        self._epoch = 0
        self._iter = 0
        self.val_begin = val_begin
        self.val_interval = val_interval
        self.stop_training = False
        if hasattr(self.dataloader.dataset, 'metainfo'):
            self.runner.visualizer.dataset_meta = self.dataloader.dataset.metainfo
        self.dynamic_milestones, self.dynamic_intervals = calc_dynamic_intervals(
            self.val_interval, dynamic_intervals)

        self._positioned = None
        why_not = self._install_positioned_sampler() if wrapped else \
            'the training dataloader was passed in built'
        self.rereads_consumed_batches = why_not is not None
        self._why_reread = why_not
        self.dataloader_iterator = _LazyIterator(self)

    # ------------------------------------------------------------ setting up
    @staticmethod
    def _wrap_dataset(dataloader_cfg: dict) -> dict:
        from mmengine.registry import DATASETS
        cfg = copy.copy(dataloader_cfg)
        dataset = cfg['dataset']
        if isinstance(dataset, dict):  # as Runner.build_dataloader builds it
            dataset = DATASETS.build(dataset)
            if hasattr(dataset, 'full_init'):
                dataset.full_init()
        cfg['dataset'] = PositionSeededDataset(dataset, rank=get_rank())
        return cfg

    def _install_positioned_sampler(self) -> Optional[str]:
        """Wrap the batch sampler's sampler; the reason when that is not possible."""
        batch_sampler = self.dataloader.batch_sampler
        if type(batch_sampler) is not BatchSampler:
            return f'its batch sampler is a {type(batch_sampler).__name__}'
        sampler = batch_sampler.sampler
        if not isinstance(sampler, (InfiniteSampler, ) + _EPOCH_SAMPLERS):
            return (f'its sampler, a {type(sampler).__name__}, does not draw its order '
                    'from a seed and an epoch')
        if not isinstance(sampler, InfiniteSampler) and len(batch_sampler) == 0:
            return 'it has no batch'
        self._positioned = PositionedSampler(sampler)
        batch_sampler.sampler = self._positioned  # the DataLoader iterates batch_sampler
        return None

    def _start_iterator(self) -> _InfiniteDataloaderIterator:
        """The dataloader iterator, started at batch ``self._iter`` of the stream."""
        dataset = self.dataloader.dataset
        if isinstance(dataset, PositionSeededDataset):
            dataset.seed = self.runner.seed  # after a resume restored the checkpoint's seed
        if self._positioned is not None:
            # Each new DataLoader iterator (here, and at every epoch of an epoch sampler)
            # draws a base seed for its workers from the loader's generator, by default
            # the global torch RNG: that draw would shift the training noise by where the
            # stream starts. The samples are seeded by position, so a private generator
            # changes nothing they see.
            self.dataloader.generator = torch.Generator().manual_seed(self.runner.seed)
        epoch = 0
        if self._positioned is not None and self._iter > 0:
            start = time.perf_counter()
            epoch, position, skip = self._seek(self._iter)
            self._positioned.seek(position, skip)
            print_log(f'Resuming at iteration {self._iter}: the sampler skips the '
                      f'{self._iter} batches already trained on ({position} samples of '
                      f'this process) without loading them'
                      + (f' (epoch {epoch} of the sampler)' if epoch else '')
                      + '.', logger='current')
            iterator = _InfiniteDataloaderIterator(self.dataloader)
            iterator._epoch = epoch  # later epochs continue from here
            print_log(f'Sampler positioned in {time.perf_counter() - start:.2f} s.',
                      logger='current')
            return iterator
        return _InfiniteDataloaderIterator(self.dataloader)

    def _seek(self, iters: int) -> Tuple[int, int, int]:
        """(epoch, stream position, indices to skip within that epoch) after ``iters``
        batches."""
        batch_sampler = self.dataloader.batch_sampler
        sampler, size = self._positioned.sampler, batch_sampler.batch_size
        if isinstance(sampler, InfiniteSampler):
            return 0, iters * size, iters * size
        per_epoch = len(batch_sampler)
        epoch, rest = divmod(iters, per_epoch)
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(epoch)  # after DistSamplerSeedHook set epoch 0
        # a whole epoch draws len(sampler) indices (drop_last drops some of them)
        return epoch, epoch * len(sampler) + rest * size, rest * size

    # ------------------------------------------------------------ training
    def run(self):
        """IterBasedTrainLoop.run without re-reading the consumed batches."""
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0 and self.rereads_consumed_batches:
            print_log(f'Advance dataloader {self._iter} steps to skip data that has already '
                      f'been trained (loading them: {self._why_reread}).',
                      logger='current', level=logging.WARNING)
            for _ in range(self._iter):
                next(self.dataloader_iterator)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model
