"""Test-only helpers for tests/test_distributed.py, imported by its configs (custom_imports).

* :class:`RankStateDumpHook` writes every rank's model state (weights and BatchNorm
  buffers) to ``<work_dir>/rank<R>_init.pth`` / ``rank<R>_state.pth`` before and after
  training, so the test can compare the ranks with each other and with the rank-0
  checkpoint, and records which ranks save checkpoints.
* :class:`KeyedNoiseIntroVAE` is IntroVAE with noise that depends on the image, not on
  the process: every row of every ``torch.randn_like`` call inside ``train_step`` (the
  reparameterisation noise and the prior samples) is drawn from a generator seeded by
  (iteration, call number, the image file of that row). A 2-process run then draws, for
  each image, exactly the noise a 1-process run with the same total batch draws for it,
  although the ranks' global RNGs are seeded differently (``diff_rank_seed=True``).
"""
import os.path as osp
import re
from contextlib import contextmanager

import torch
from mmengine import MessageHub
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner.checkpoint import get_state_dict
from mmagic.registry import HOOKS, MODELS

from mmintrovae.models import IntroVAE


@HOOKS.register_module()
class RankStateDumpHook(Hook):
    """Dumps every rank's model state (weights and BatchNorm buffers, plain keys) to
    ``rank<R>_init.pth`` before training and ``rank<R>_state.pth`` after it, and appends
    the rank of every process that saves a checkpoint to ``saved_by_ranks.txt``."""

    def _dump(self, runner, name):
        state = {k: v.detach().clone() for k, v in get_state_dict(runner.model).items()}
        torch.save(state, osp.join(runner.work_dir, f'rank{get_rank()}_{name}.pth'))

    def before_train(self, runner):
        self._dump(runner, 'init')

    def after_run(self, runner):
        self._dump(runner, 'state')

    def before_save_checkpoint(self, runner, checkpoint):
        with open(osp.join(runner.work_dir, 'saved_by_ranks.txt'), 'a') as f:
            f.write(f'{get_rank()}\n')


@contextmanager
def _keyed_randn_like(keys, iteration):
    original = torch.randn_like
    calls = [0]

    def randn_like(tensor, *args, **kwargs):
        if tensor.dim() < 1 or tensor.shape[0] != len(keys):
            return original(tensor, *args, **kwargs)
        calls[0] += 1
        rows = []
        for key in keys:
            g = torch.Generator().manual_seed(iteration * 1_000_003 + calls[0] * 10_007 + key)
            rows.append(torch.randn(tensor.shape[1:], generator=g))
        return torch.stack(rows).to(dtype=kwargs.get('dtype') or tensor.dtype,
                                    device=tensor.device)

    torch.randn_like = randn_like
    try:
        yield
    finally:
        torch.randn_like = original


@MODELS.register_module()
class KeyedNoiseIntroVAE(IntroVAE):

    def train_step(self, data, optim_wrapper):
        keys = [int(re.findall(r'\d+', osp.basename(s.gt_path))[-1])
                for s in data['data_samples']]
        iteration = MessageHub.get_current_instance().get_info('iter', 0)
        with _keyed_randn_like(keys, iteration):
            return super().train_step(data, optim_wrapper)
