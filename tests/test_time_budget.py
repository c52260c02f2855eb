"""TrainTimeBudgetHook: training stops at a wall-clock budget with a final checkpoint."""
import json
import os.path as osp
import time

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import DataLoader

from mmintrovae.engine import load_checkpoint_safely
from mmintrovae.engine.time_budget import TRAIN_TIME_FILE, TrainTimeBudgetHook

STEP_S = 0.02


class SlowToy(BaseModel):
    """One parameter; every forward takes STEP_S seconds."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        time.sleep(STEP_S)
        if mode == 'loss':
            return dict(loss=((self.w - inputs.mean()) ** 2).sum())
        return self.w


def _runner(work_dir, hook, max_iters=100000, **kwargs):
    loader = DataLoader([dict(inputs=torch.ones(1))] * 4, batch_size=2)
    return Runner(
        model=SlowToy(), work_dir=str(work_dir), train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=max_iters,
                                           by_epoch=False)),
        custom_hooks=[hook], default_scope='mmengine', **kwargs)


def test_training_stops_at_the_budget_and_saves_the_last_checkpoint(tmp_path):
    budget = 0.5

    class Recording(TrainTimeBudgetHook):
        seen = []

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.seen.append(self.elapsed())
            super().after_train_iter(runner, batch_idx, data_batch, outputs)

    hook = Recording(budget_s=budget)
    runner = _runner(tmp_path, hook, max_iters=200)  # 4 s of sleeps: a run the hook must cut
    runner.train()
    done = runner.iter
    assert 1 <= done <= budget / STEP_S  # stopped by time, long before max_iters
    assert len(hook.seen) == done
    # it stopped after the first iteration that reached the budget
    assert hook.seen[-1] >= budget and all(t < budget for t in hook.seen[:-1])
    record = json.loads((tmp_path / TRAIN_TIME_FILE).read_text())
    assert record['iters'] == done and record['stopped_by_budget'] is True
    assert record['seconds'] >= hook.seen[-1]
    last = (tmp_path / 'last_checkpoint').read_text().strip()
    assert osp.basename(last) == f'iter_{done}.pth'
    ckpt = load_checkpoint_safely(last, map_location='cpu')
    assert ckpt['meta']['iter'] == done and ckpt['meta']['train_seconds'] >= budget


def test_without_budget_it_only_measures(tmp_path):
    runner = _runner(tmp_path, TrainTimeBudgetHook(), max_iters=5)
    runner.train()
    record = json.loads((tmp_path / TRAIN_TIME_FILE).read_text())
    assert record == dict(iters=5, seconds=record['seconds'], budget_s=None,
                          stopped_by_budget=False)
    assert record['seconds'] >= 5 * STEP_S
    assert (tmp_path / 'iter_5.pth').is_file()


def test_iterations_end_first_when_they_come_first(tmp_path):
    runner = _runner(tmp_path, TrainTimeBudgetHook(budget_s=600), max_iters=3)
    runner.train()
    record = json.loads((tmp_path / TRAIN_TIME_FILE).read_text())
    assert record['iters'] == 3 and record['stopped_by_budget'] is False


def test_a_resumed_run_goes_on_spending_the_same_budget():
    hook = TrainTimeBudgetHook(budget_s=10)
    checkpoint = {'meta': {}}
    hook.after_load_checkpoint(None, {'meta': {'train_seconds': 9.5}})
    hook.before_train(None)
    assert 9.5 <= hook.elapsed() < 9.6
    hook.before_save_checkpoint(None, checkpoint)
    assert checkpoint['meta']['train_seconds'] >= 9.5


@pytest.mark.parametrize('budget', [0, -1.0])
def test_a_budget_must_be_positive(budget):
    with pytest.raises(ValueError, match='budget_s'):
        TrainTimeBudgetHook(budget_s=budget)
