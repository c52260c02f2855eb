"""A wall-clock budget for training: comparisons at equal compute (tools/compare.py)."""
import json
import os.path as osp
import time
from typing import Optional

import torch
from mmagic.registry import HOOKS
from mmengine.dist import broadcast, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

#: Where the hook writes the training time and iterations, in the work dir.
TRAIN_TIME_FILE = 'train_time.json'


@HOOKS.register_module()
class TrainTimeBudgetHook(Hook):
    """Measures training wall time and ends training once it reaches a budget.

    Training time runs from ``before_train`` to the end of the last iteration:
    data loading, the steps and the other hooks' work during training count;
    building the model and the runner do not. It is carried in checkpoints, so a
    resumed run goes on spending the same budget.

    When ``budget_s`` is reached after an iteration, the loop's last iteration
    becomes the current one: MMEngine's CheckpointHook (``save_last``, lower
    priority, runs after this hook) saves it as the final checkpoint, the
    validation at the end of training runs if configured, and
    ``after_train`` hooks run as after a full run. In a distributed run rank 0
    decides, so all processes stop at the same iteration.

    After training, ``<work_dir>/train_time.json`` holds ``iters`` (iterations
    done), ``seconds`` (training wall time), ``budget_s`` and
    ``stopped_by_budget``.

    Args:
        budget_s (float, optional): Seconds of training after which to stop;
            None only measures.
    """

    priority = 'NORMAL'  # before CheckpointHook (VERY_LOW): it must see the last iteration

    def __init__(self, budget_s: Optional[float] = None):
        if budget_s is not None and not budget_s > 0:
            raise ValueError(f'TrainTimeBudgetHook: budget_s must be > 0 seconds, got {budget_s!r}')
        self.budget_s = None if budget_s is None else float(budget_s)
        self._spent_before = 0.0  # seconds of earlier runs (resume)
        self._start = None
        self.stopped_by_budget = False

    def elapsed(self) -> float:
        """Training seconds so far, earlier runs of a resumed training included."""
        if self._start is None:
            return self._spent_before
        return self._spent_before + time.monotonic() - self._start

    def before_train(self, runner) -> None:
        self._start = time.monotonic()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.budget_s is None:
            return
        flag = torch.tensor([1 if self.elapsed() >= self.budget_s else 0])
        broadcast(flag, src=0)  # a no-op without a process group
        if flag.item() and runner.iter + 1 < runner.max_iters:
            self.stopped_by_budget = True
            print_log(f'TrainTimeBudgetHook: {self.elapsed():.0f} s of training reached the '
                      f'budget of {self.budget_s:.0f} s; stopping after iteration '
                      f'{runner.iter + 1} of {runner.max_iters}', logger='current')
            # MMEngine's IterBasedTrainLoop keeps its end in _max_iters (runner.max_iters
            # reads it); ending here makes every hook treat this iteration as the last.
            runner.train_loop._max_iters = runner.iter + 1

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})['train_seconds'] = self.elapsed()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._spent_before = float(checkpoint.get('meta', {}).get('train_seconds', 0.0))

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        record = dict(iters=runner.iter, seconds=round(self.elapsed(), 3),
                      budget_s=self.budget_s, stopped_by_budget=self.stopped_by_budget)
        with open(osp.join(runner.work_dir, TRAIN_TIME_FILE), 'w') as f:
            json.dump(record, f, indent=2)


__all__ = ['TrainTimeBudgetHook', 'TRAIN_TIME_FILE']
