"""Resume skips the consumed samples without loading them, and stays exact.

Fast tests: the positioned sampler and the per-position seeding on their own, then
in-process MMEngine runs of a toy model through FastResumeIterBasedTrainLoop: 2K
iterations in one run against K + resume + K, comparing every batch (indices and a
random draw of the data pipeline) and the noise drawn by the model, and counting which
samples the resumed run loads; and the fallback to re-reading for a dataloader passed in
built. The end-to-end check on the real recipe (tools/train.py,
with data loader workers) is in tests/test_resume.py.
"""
import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

K = 4  # iterations before the interruption; the reference run trains 2K
BATCH = 3
SAMPLES = 8  # DefaultSampler epochs of 3 batches (3, 3, 2): the runs cross epochs


# ------------------------------------------------------------------ the pieces
def test_positioned_sampler_seeks_without_yielding_the_skipped():
    from mmengine.dataset import InfiniteSampler

    from mmintrovae.engine.sample_stream import PositionedSampler

    full = PositionedSampler(InfiniteSampler(range(SAMPLES), seed=1))
    stream = [next(it) for it in [iter(full)] for _ in range(30)]
    assert [p for p, _ in stream] == list(range(30))
    late = PositionedSampler(InfiniteSampler(range(SAMPLES), seed=1))
    late.seek(20, 20)
    assert [next(it) for it in [iter(late)] for _ in range(10)] == stream[20:]
    with pytest.raises(ValueError):
        late.seek(-1, 0)


def test_position_seeding_is_per_position_and_leaves_the_callers_rngs():
    from mmintrovae.engine.sample_stream import PositionSeededDataset

    class Draws(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return i, np.random.rand(), random.random(), torch.rand(1).item()

    data = PositionSeededDataset(Draws(), seed=7, rank=0)
    np.random.seed(0), random.seed(0), torch.manual_seed(0)
    a = [data[(p, p % 4)] for p in range(6)]
    after = np.random.rand(), random.random(), torch.rand(1).item()
    np.random.seed(0), random.seed(0), torch.manual_seed(0)
    assert after == (np.random.rand(), random.random(), torch.rand(1).item())  # untouched
    assert data[(5, 1)] == a[5] and data[(2, 2)] == a[2]  # any order, same draws
    assert a[1][1:] != a[5][1:]  # same index, other position: other draws
    assert PositionSeededDataset(Draws(), seed=7, rank=1)[(5, 1)] != a[5]  # ranks differ
    assert data[3][0] == 3 and len(data) == 4  # plain indices pass through


# ------------------------------------------------------------------ runs of a toy model
LOADS = []  # indices loaded in this process (the Runner deep-copies the dataset)


class Samples(Dataset):
    """Index and a random draw of the 'pipeline' (numpy's global RNG, as Flip); logs
    every load in LOADS (visible with num_workers=0)."""

    def __len__(self):
        return SAMPLES

    def __getitem__(self, i):
        LOADS.append(i)
        return dict(inputs=torch.tensor([float(i), np.random.rand()]))


def build_runner(work_dir, name, sampler, num_workers, max_iters, seen, resume=False):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    from mmintrovae.engine.fast_resume_loop import FastResumeIterBasedTrainLoop
    from mmintrovae.engine.rng_state_hook import RNGStateHook

    class Toy(BaseModel):

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            noise = torch.rand(1).item()  # the training noise (RNGStateHook restores it)
            seen.append((inputs.tolist(), noise))
            return dict(loss=self.lin(inputs).pow(2).mean() * noise)

    if sampler == 'built':  # a DataLoader passed in built: the loop cannot position it
        from mmengine.dataset import InfiniteSampler, default_collate
        loader = torch.utils.data.DataLoader(
            Samples(), batch_size=BATCH, sampler=InfiniteSampler(Samples(), seed=5),
            num_workers=num_workers, collate_fn=default_collate)
    else:
        loader = dict(dataset=Samples(), batch_size=BATCH, num_workers=num_workers,
                      sampler=dict(type=sampler, shuffle=True),
                      collate_fn=dict(type='default_collate'))
    return Runner(
        model=Toy(), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(type=FastResumeIterBasedTrainLoop, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=K, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type=RNGStateHook, verbose=False)],
        randomness=dict(seed=11), resume=resume)


@pytest.mark.parametrize('sampler,num_workers', [('InfiniteSampler', 0),
                                                 ('DefaultSampler', 0),
                                                 ('InfiniteSampler', 2),
                                                 ('built', 0)])
def test_resume_loads_only_new_samples_and_is_exact(tmp_path, sampler, num_workers):
    tag = f'{sampler}{num_workers}'
    ref, part, resumed = [], [], []
    LOADS.clear()
    build_runner(tmp_path / 'ref', f'ref{tag}', sampler, num_workers, 2 * K, ref).train()
    ref_loads = list(LOADS)
    build_runner(tmp_path / 'part', f'part{tag}', sampler, num_workers, K, part).train()
    assert part == ref[:K]
    LOADS.clear()
    runner = build_runner(tmp_path / 'part', f'res{tag}', sampler, num_workers, 2 * K,
                          resumed, resume=True)
    runner.train()
    # the same batches (indices and pipeline draws) and the same training noise
    assert resumed == ref[K:]
    if sampler == 'built':  # the fallback: MMEngine's re-reading, exact but slow
        assert runner.train_loop.rereads_consumed_batches
        assert len(LOADS) == 2 * K * BATCH
        return
    assert not runner.train_loop.rereads_consumed_batches
    if num_workers == 0:  # loads are visible in this process
        assert len(ref_loads) == 2 * K * BATCH - (2 if sampler == 'DefaultSampler' else 0)
        # nothing of the first K batches was loaded, only the new ones
        assert LOADS == [int(x[0]) for batch, _ in ref[K:] for x in batch]
