"""Exact resume (RNGStateHook, FastResumeIterBasedTrainLoop) and resuming after a SIGKILL
during a checkpoint write.

The slow tests run tools/train.py in a subprocess on a tiny generated grey image folder,
with the Fashion-MNIST recipe shrunk (channels (8, 16, 16), latent 8, batch 4, two
persistent data loader workers as in the recipes, EMA, validation by MSE on 4 images) and
a checkpoint after every iteration. The resumed runs skip the consumed batches without
loading them; the same runs with num_workers=0 (flips drawn in the main process) are
checked on a toy model in tests/test_fast_resume.py. The runs
use one intra-op thread: on a busy 2-core machine that is several times faster
(and the results do not depend on it here).
"""
import glob
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from _images import write_image_folder

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS = osp.join(REPO, 'tests')
N = 3  # iterations before the interruption; the reference run trains 2N



def write_config(folder, data_root, rng_hook=True, name='cfg.py'):
    """The recipe, shrunk, with an EMA generator and a cheap validation after iteration N
    (where the run is interrupted) and 2N. custom_hooks: RNGStateHook (optional), a probe
    that logs each batch (tests/_resume_probe.py) and a sample grid every 2 iterations,
    whose lazily drawn fixed noise would shift the training noise after a resume if
    RNGStateHook did not make after-step hooks and validation neutral."""
    hooks = ["dict(type='RNGStateHook')"] if rng_hook else []
    hooks += ["dict(type='ResumeProbeHook')",
              "dict(type='VisualizationHook', interval=2, fixed_input=True, "
              "vis_kwargs_list=[dict(type='GAN', name='samples', n_samples=4, n_row=2)])"]
    text = textwrap.dedent(f"""\
        _base_ = [{osp.join(REPO, 'configs', 'introvae_fashionmnist32.py')!r}]
        custom_imports = dict(
            imports=['mmintrovae', 'mmintrovae.engine.rng_state_hook', '_resume_probe'],
            allow_failed_imports=False)
        model = dict(architecture=dict(channels=(8, 16, 16), latent_dim=8),
                     vae_warmup_iters=2,
                     ema_config=dict(type='ExponentialMovingAverage', momentum=0.5))
        train_dataloader = dict(batch_size=4, num_workers=2, persistent_workers=True,
                                dataset=dict(data_root={str(data_root)!r}))
        val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                              dataset=dict(data_root={str(data_root)!r}, max_images=4))
        test_dataloader = val_dataloader
        val_evaluator = dict(type='Evaluator', metrics=[dict(type='MSE', prefix='rec')])
        test_evaluator = val_evaluator
        train_cfg = dict(max_iters={2 * N}, val_interval={N})
        default_hooks = dict(logger=dict(interval=1),
                             checkpoint=dict(interval=1, max_keep_ckpts=-1, save_best=None))
        visualizer = dict(vis_backends=[dict(type='VisBackend')])
        custom_hooks = [{', '.join(hooks)}]
        """)
    path = osp.join(folder, name)
    with open(path, 'w') as f:
        f.write(text)
    return path


def env_with(*paths, **extra):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join(
        [*paths, TESTS] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    env.update(extra)
    return env


def train_cmd(config, work_dir, *options, resume=False):
    cmd = [sys.executable, osp.join(REPO, 'tools/train.py'), str(config),
           '--work-dir', str(work_dir)]
    if resume:
        cmd.append('--resume')
    if options:
        cmd += ['--cfg-options', *options]
    return cmd


def train(config, work_dir, *options, resume=False, env=None):
    result = subprocess.run(train_cmd(config, work_dir, *options, resume=resume), cwd=REPO,
                            env=env or env_with(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def load(path):
    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    return load_checkpoint_safely(str(path))


def tensor_differences(a, b, path=''):
    """Paths of every tensor (and other leaf) that differs between two nested states."""
    if isinstance(a, torch.Tensor):
        same = (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a, b))
        return [] if same else [path]
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return [f'{path} (keys)']
        return [d for k in a for d in tensor_differences(a[k], b[k], f'{path}.{k}')]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return [f'{path} (length)']
        return [d for i, (x, y) in enumerate(zip(a, b))
                for d in tensor_differences(x, y, f'{path}[{i}]')]
    return [] if a == b else [path]


def n_tensors(state):
    if isinstance(state, torch.Tensor):
        return 1
    if isinstance(state, dict):
        return sum(n_tensors(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(n_tensors(v) for v in state)
    return 0


def differences(ckpt_a, ckpt_b):
    a, b = load(ckpt_a), load(ckpt_b)
    assert n_tensors(a['state_dict']) > 50 and n_tensors(a['optimizer']) > 50
    return {key: tensor_differences(a[key], b[key], key) for key in ('state_dict', 'optimizer')}


def batches(work_dir):
    with open(osp.join(work_dir, 'batches.jsonl')) as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------ unit tests (fast)
def test_rng_state_round_trip_through_the_safe_loader(tmp_path):
    import random

    import numpy as np

    from mmintrovae.engine.rng_state_hook import get_rng_state, set_rng_state

    def draw():
        return (torch.randn(3).tolist(), np.random.rand(3).tolist(), np.random.randn(),
                [random.random() for _ in range(3)])

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    torch.save(dict(meta=dict(rng_state=get_rng_state())), tmp_path / 'c.pth')
    expected = draw()
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    set_rng_state(load(tmp_path / 'c.pth')['meta']['rng_state'])
    assert draw() == expected


def test_restoring_iterator_restores_after_the_replayed_batches():
    import numpy as np

    from mmintrovae.engine.rng_state_hook import RNGStateHook, _RestoringIterator

    class Batches:  # a data pipeline drawing from numpy's global RNG, as Flip does
        def __next__(self):
            return np.random.randint(1 << 30)

    hook = RNGStateHook(verbose=False)
    np.random.seed(0)
    hook.after_train_iter(None, 0)  # states at the end of a training step
    expected = np.random.randint(1 << 30)  # what the next batch draws
    np.random.seed(5)  # a resumed process, seeded afresh
    it = _RestoringIterator(Batches(), hook, skip=2)
    replayed = [next(it), next(it)]  # the batches IterBasedTrainLoop re-reads
    np.random.seed(5)
    assert replayed == [np.random.randint(1 << 30) for _ in range(2)]  # not restored yet
    assert next(it) == expected  # restored right before the first new batch
    assert hook._pending is None


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """2N iterations in one run (ref), and N iterations in another (part, copied to
    part_nohook before it is resumed), both checkpointing every iteration."""
    root = tmp_path_factory.mktemp('resume')
    data = write_image_folder(root / 'images', 10, 32, mode='L')
    cfg = write_config(root, data)
    ref, part = root / 'ref', root / 'part'
    train(cfg, ref)
    train(cfg, part, f'train_cfg.max_iters={N}')
    shutil.copytree(part, root / 'part_nohook')
    return dict(root=root, data=data, cfg=cfg, ref=ref, part=part)


@pytest.mark.slow
def test_resume_is_exact(runs):
    ref, part = runs['ref'], runs['part']
    assert not osp.exists(part / f'iter_{N + 1}.pth')
    state = load(part / f'iter_{N}.pth')['meta']['rng_state']
    assert {'torch', 'numpy', 'python'} <= set(state)
    log = train(runs['cfg'], part, resume=True)
    assert f'resumed epoch: 0, iter: {N}' in log
    assert 'RNGStateHook: restored' in log
    # the consumed batches were skipped unread (MMEngine's loop would re-read them)
    assert f'the sampler skips the {N} batches already trained on' in log
    assert 'Advance dataloader' not in log
    assert differences(ref / f'iter_{2 * N}.pth', part / f'iter_{2 * N}.pth') == {
        'state_dict': [], 'optimizer': []}
    # same files in the same order, flipped alike (the checksum is flip-sensitive)
    assert batches(ref) == batches(part)
    assert [b['iter'] for b in batches(part)] == list(range(1, 2 * N + 1))


@pytest.mark.slow
def test_resume_without_rng_hook_is_not_exact(runs):
    """The check above fails without the hook: the resumed run's noise restarts
    from the seed (the data alone is restored by the positioned sampler)."""
    work = runs['part'].parent / 'part_nohook'
    cfg = write_config(runs['root'], runs['data'], rng_hook=False, name='cfg_nohook.py')
    log = train(cfg, work, resume=True)
    assert f'resumed epoch: 0, iter: {N}' in log
    diff = differences(runs['ref'] / f'iter_{2 * N}.pth', work / f'iter_{2 * N}.pth')
    assert diff['state_dict'] and diff['optimizer']
    assert batches(runs['ref']) == batches(work)


# A sitecustomize for the killed run: torch.save of the checkpoint named in
# STALL_SAVE writes half of its bytes, fsyncs, touches STALL_MARKER and hangs.
STALL_SITECUSTOMIZE = '''
import io, os, time
import torch
_save = torch.save
def _stalling_save(obj, f, *args, **kwargs):
    try:  # the atomic save passes an os.fdopen() file, whose .name is the descriptor
        name = os.readlink('/proc/self/fd/%d' % f.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return _save(obj, f, *args, **kwargs)
    if not os.path.basename(name).startswith('.' + os.environ['STALL_SAVE'] + '.'):
        return _save(obj, f, *args, **kwargs)
    buf = io.BytesIO()
    _save(obj, buf, *args, **kwargs)
    data = buf.getvalue()
    f.write(data[:len(data) // 2])
    f.flush()
    os.fsync(f.fileno())
    open(os.environ['STALL_MARKER'], 'w').close()
    time.sleep(600)
torch.save = _stalling_save
'''


@pytest.mark.slow
def test_sigkill_during_checkpoint_write_then_resume(runs, tmp_path):
    site = tmp_path / 'site'
    site.mkdir()
    (site / 'sitecustomize.py').write_text(STALL_SITECUSTOMIZE)
    marker, work = tmp_path / 'writing', tmp_path / 'work'
    env = env_with(str(site), STALL_SAVE=f'iter_{N}.pth', STALL_MARKER=str(marker))
    proc = subprocess.Popen(train_cmd(runs['cfg'], work), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.time() < deadline, 'the stalled checkpoint write never started'
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # mid-write: half the bytes are on disk
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    temps = glob.glob(str(work / f'.iter_{N}.pth.*.tmp'))
    assert len(temps) == 1 and os.path.getsize(temps[0]) > 0  # the interrupted write
    assert not osp.exists(work / f'iter_{N}.pth')  # never renamed into place
    with open(work / 'last_checkpoint') as f:
        assert f.read().strip() == str(work / f'iter_{N - 1}.pth')
    with pytest.raises(Exception):  # really truncated
        load(temps[0])

    log = train(runs['cfg'], work, resume=True)  # no stall this time
    assert f'Auto resumed from the latest checkpoint {work / f"iter_{N - 1}.pth"}' in log
    assert f'resumed epoch: 0, iter: {N - 1}' in log
    assert load(work / f'iter_{2 * N}.pth')['meta']['iter'] == 2 * N
    assert not glob.glob(str(work / '.*.tmp'))  # the stale temp file was cleaned up
    # and, thanks to RNGStateHook, the run ends exactly where the uninterrupted one did
    assert differences(runs['ref'] / f'iter_{2 * N}.pth', work / f'iter_{2 * N}.pth') == {
        'state_dict': [], 'optimizer': []}
