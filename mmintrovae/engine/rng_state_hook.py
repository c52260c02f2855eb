"""Exact resume: random number generator states in checkpoints.

MMEngine 0.10's ``--resume`` restores the model, the optimizers, the parameter
schedulers and the message hub, and ``IterBasedTrainLoop`` re-reads (and
discards) the batches already trained on, so an ``InfiniteSampler`` (whose own
``torch.Generator`` restarts from the seed) and any dataloader workers (seeded
from the config's seed by MMEngine's ``worker_init_fn``) replay the same
sequence. It does not restore the global random number generators: after a
resume the reparameterisation noise and the prior samples (torch) and, with
``num_workers=0``, the random flips (numpy, drawn in the main process) continue
from the fresh seed instead of where the interrupted run was.

:class:`RNGStateHook` saves the torch (CPU and every CUDA device), numpy and
Python ``random`` states in ``checkpoint['meta']['rng_state']`` and puts them
back when resuming, so N iterations + resume + N iterations give bit-identical
weights, optimizer states and batches to 2N iterations in one run (same
device, same seed; CPU verified by tests/test_resume.py).

Two details make this exact rather than nearly so:

* The states are restored right before the first *new* batch is fetched, not
  when the checkpoint is loaded: MMEngine's loop re-reads the skipped batches
  in between (running the data pipeline and its random flips; the recipes'
  FastResumeIterBasedTrainLoop skips them without reading, see
  :mod:`.fast_resume_loop`), and ``Runner.resume`` may reseed after loading.
* Everything that runs between the end of a training step and the fetch of
  the next batch -- ``after_train_iter`` hooks (checkpointing, sample grids of
  ``VisualizationHook``), validation -- is made neutral for the training
  stream: the hook records the states at the end of each step (it runs first,
  priority HIGHEST) and restores them before the next fetch. Otherwise
  validation at a checkpoint iteration, or a visualisation hook that draws its
  fixed noise the first time it runs (at a different iteration after a
  resume), would shift the training noise. Side effect: validation and
  visualisation draw from the same stream position as the next training step
  (harmless; training no longer depends on how often they run).

Limits: in distributed training only rank 0 saves a checkpoint, so only rank
0's states are stored and restored; other ranks resume from their seed (a
warning says so). The same holds for the divergence guard's count of
consecutive non-finite iterations in IntroVAE (not checkpointed). With
``cudnn_benchmark=True`` or non-deterministic CUDA kernels, GPU runs are not
bit-identical even without a resume.

Usage (config): ``custom_hooks = [..., dict(type='RNGStateHook')]``.
"""
import logging
import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmagic.registry import HOOKS

__all__ = ['RNGStateHook', 'get_rng_state', 'set_rng_state']

_FORMAT = 1


def get_rng_state() -> dict:
    """torch (CPU, CUDA), numpy and Python ``random`` states, as plain data.

    Only tensors, lists, ints, floats and strings: the safe checkpoint loader
    needs no extra globals for them.
    """
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = dict(
        format=_FORMAT,
        torch=torch.get_rng_state(),
        torch_cuda=[],
        numpy=dict(kind=str(kind), keys=[int(k) for k in keys], pos=int(pos),
                   has_gauss=int(has_gauss), cached_gaussian=float(cached_gaussian)),
        python=dict(version=int(version), internal=[int(i) for i in internal],
                    gauss_next=gauss_next),
    )
    if torch.cuda.is_available():
        state['torch_cuda'] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Restore states returned by :func:`get_rng_state`."""
    torch.set_rng_state(state['torch'].cpu())
    cuda = state.get('torch_cuda') or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        else:
            print_log(f'RNGStateHook: the checkpoint holds CUDA RNG states of {len(cuda)} '
                      f'devices, this machine has {torch.cuda.device_count()}; CUDA RNG '
                      'states left as seeded (the resumed run is not bit-exact).',
                      logger='current', level=logging.WARNING)
    n = state['numpy']
    np.random.set_state((n['kind'], np.asarray(n['keys'], dtype=np.uint32), n['pos'],
                         n['has_gauss'], n['cached_gaussian']))
    p = state['python']
    random.setstate((p['version'], tuple(p['internal']), p['gauss_next']))


class _RestoringIterator:
    """Wraps ``IterBasedTrainLoop.dataloader_iterator``: passes the first
    ``skip`` batches (those the loop re-reads after a resume) through, then
    before every later fetch restores the states the hook has pending."""

    def __init__(self, inner, hook: 'RNGStateHook', skip: int):
        self._inner, self._hook, self._skip = inner, hook, skip

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
        else:
            self._hook._restore_pending()
        return next(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves the global RNG states in checkpoints and restores them on resume.

    See the module docstring. Add it to ``custom_hooks``; it has no arguments
    besides ``verbose``.
    """

    priority = 'HIGHEST'  # after_train_iter: record before any other hook draws

    def __init__(self, verbose: bool = True):
        self.verbose = verbose
        self._pending: Optional[dict] = None  # states to restore before the next fetch
        self._pending_from_checkpoint = False

    # ------------------------------------------------------------ saving
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # During training the states of the end of the last step (pending until the next
        # fetch), not the current ones: a checkpoint saved by after_train_iter hooks or
        # during validation (save_best) must resume as the run itself continues.
        state = self._pending if self._pending is not None else get_rng_state()
        checkpoint.setdefault('meta', {})['rng_state'] = dict(
            state, world_size=get_world_size(), rank=get_rank())

    # ------------------------------------------------------------ loading
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return  # load_from (fine-tuning, testing): keep this run's seed
        state = (checkpoint.get('meta') or {}).get('rng_state')
        if state is None:
            print_log('RNGStateHook: the checkpoint holds no RNG states (saved without '
                      'this hook); training resumes from the seed, not bit-exactly.',
                      logger='current', level=logging.WARNING)
            return
        world_size = get_world_size()
        if world_size > 1:
            msg = ('only rank 0 saves checkpoints, so rank 0 resumes its RNG states and the '
                   'other ranks resume from their seeds (not bit-exact).')
            if state.get('world_size', 1) != world_size:
                msg = (f"it was saved by a run of {state.get('world_size', 1)} processes, "
                       f'this one has {world_size}; ' + msg)
            print_log(f'RNGStateHook: {msg}', logger='current', level=logging.WARNING)
            if get_rank() != 0:
                return
        self._pending = state
        self._pending_from_checkpoint = True

    # ------------------------------------------------------------ training
    def before_train(self, runner) -> None:
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop (and subclasses)
            if not isinstance(loop.dataloader_iterator, _RestoringIterator):
                # IterBasedTrainLoop.run re-reads `iter` batches after before_train_epoch;
                # FastResumeIterBasedTrainLoop skips them without reading (unless it
                # falls back to re-reading).
                rereads = getattr(loop, 'rereads_consumed_batches', True)
                loop.dataloader_iterator = _RestoringIterator(
                    loop.dataloader_iterator, self, skip=loop.iter if rereads else 0)

    def before_train_epoch(self, runner) -> None:
        # Epoch-based loops build a new dataloader iterator per epoch and skip nothing:
        # restore here (the states of the end of the last epoch's last step).
        if not hasattr(runner.train_loop, 'dataloader_iterator'):
            self._restore_pending()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._pending = get_rng_state()
        self._pending_from_checkpoint = False

    def _restore_pending(self) -> None:
        if self._pending is None:
            return
        set_rng_state(self._pending)
        if self._pending_from_checkpoint and self.verbose:
            print_log('RNGStateHook: restored the torch, numpy and random states of the '
                      'checkpoint before the first new batch.', logger='current')
        self._pending = None
        self._pending_from_checkpoint = False
