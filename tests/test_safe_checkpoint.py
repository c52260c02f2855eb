"""Safe checkpoint loading / atomic saving (mmintrovae/engine/safe_checkpoint.py).

Needs only torch + mmengine: the module is loaded by path under its package name, so
mmintrovae/__init__.py (which imports mmagic) does not run, and a later
`import mmintrovae.engine` reuses this same module object.
"""
import codecs
import datetime
import importlib.util
import os
import os.path as osp
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.logging.history_buffer import HistoryBuffer
from torch import nn

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MOD_NAME = 'mmintrovae.engine.safe_checkpoint'


def _load_module():
    if MOD_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            MOD_NAME, osp.join(REPO, 'mmintrovae', 'engine', 'safe_checkpoint.py'))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[MOD_NAME] = mod
        spec.loader.exec_module(mod)
    mod = sys.modules[MOD_NAME]
    mod.patch_mmengine()
    return mod


sc = _load_module()
UnsafeCheckpointError = sc.UnsafeCheckpointError


# ------------------------------------------------------------------ helpers
class _Reduce:
    """Pickles as func(*args): how a hostile checkpoint smuggles calls in."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args,
                                                                  self.state)


def assert_same(a, b):
    if isinstance(a, torch.UntypedStorage):  # torch.load gives it back as TypedStorage(uint8)
        assert a.tolist() == b.untyped().tolist()
        return
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, HistoryBuffer):
        assert a.max_length == b.max_length
        for x, y in zip(a.data, b.data):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def mmengine_style_checkpoint():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).pow(2).mean().backward()
    optim.step()
    sched = torch.optim.lr_scheduler.MultiStepLR(optim, milestones=[2, 4])
    hub = MessageHub.get_instance('test_safe_checkpoint_hub')
    for i in range(3):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
        hub.update_scalar('train/lr', 1e-3, count=2)
    hub.update_info('iter', 3)
    hub.update_info('keep_ckpt_ids', [1, 2, 3])
    return {
        'meta': dict(epoch=1, iter=3, seed=42, cfg='model = dict()',
                     dataset_meta=dict(classes=('a', 'b'), mean=np.arange(3.0),
                                       scale=np.float32(0.5), n=np.int64(7)),
                     raw=b'\x00\xffbytes'),
        'state_dict': model.state_dict(),
        'optimizer': optim.state_dict(),
        'param_schedulers': [sched.state_dict()],  # milestones is a collections.Counter
        'message_hub': hub.state_dict(),
        # other things torch.save writes for tensors
        'extra': dict(param=nn.Parameter(torch.ones(2)), bf16=torch.ones(2, dtype=torch.bfloat16),
                      view=torch.arange(6.0)[2:5], storage=torch.ones(2).untyped_storage(),
                      device=torch.device('cpu'), dtype=torch.float16, size=torch.Size([2, 3])),
    }


# ------------------------------------------------------------------ (a) real checkpoints load
@pytest.mark.parametrize('zipfile_format', [True, False], ids=['zip', 'legacy'])
def test_mmengine_checkpoint_round_trips(tmp_path, zipfile_format):
    ckpt = mmengine_style_checkpoint()
    if not zipfile_format:  # torch itself cannot load a legacy-format untyped storage
        del ckpt['extra']['storage']
    path = str(tmp_path / 'ckpt.pth')
    torch.save(ckpt, path, _use_new_zipfile_serialization=zipfile_format)
    loaded = sc.load_checkpoint_safely(path)
    assert_same(ckpt, loaded)
    buf = loaded['message_hub']['log_scalars']['train/loss']
    assert buf.mean() == pytest.approx(np.mean([1, 1 / 2, 1 / 3]))
    assert buf.statistics('max') == 1.0  # statistics methods came back through getattr


def test_plain_torch_load_still_refuses_it(tmp_path):
    """The breakage this module exists for (if torch ever changes, revisit the module)."""
    path = str(tmp_path / 'ckpt.pth')
    torch.save(mmengine_style_checkpoint(), path)
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        torch.load(path)


# ------------------------------------------------------------------ (b) hostile pickles refused
def _save(tmp_path, obj, name='evil.pth', **kw):
    path = str(tmp_path / name)
    torch.save({'state_dict': {'w': torch.ones(2)}, 'payload': obj}, path, **kw)
    return path


@pytest.mark.parametrize('zipfile_format', [True, False], ids=['zip', 'legacy'])
def test_os_system_refused(tmp_path, zipfile_format):
    marker = tmp_path / 'PWNED'
    path = _save(tmp_path, _Reduce(os.system, (f'touch {marker}', )),
                 _use_new_zipfile_serialization=zipfile_format)
    with pytest.raises(UnsafeCheckpointError) as err:
        sc.load_checkpoint_safely(path)
    msg = str(err.value)
    assert f'{os.system.__module__}.system' in msg and path in msg
    assert sc.TRUST_ENV in msg and 'trusted=True' in msg
    assert err.value.filename == path
    assert not marker.exists()


@pytest.mark.parametrize('payload,named', [
    # getattr is only allowed for HistoryBuffer's statistics methods
    (_Reduce(getattr, (HistoryBuffer, '__init__')), "HistoryBuffer, '__init__'"),
    (_Reduce(getattr, (HistoryBuffer, '__getattribute__')), '__getattribute__'),
    (_Reduce(getattr, (HistoryBuffer, 'register_statistics')), 'register_statistics'),
    (_Reduce(getattr, (HistoryBuffer.min, '__globals__')), '__globals__'),
    (_Reduce(getattr, (torch.Size, '__class__')), "torch.Size, '__class__'"),
    (_Reduce(getattr, (HistoryBuffer, 'min', None)), "'min'"),  # 3-arg form
    # bytes only through latin-1; other codecs import modules by name
    (_Reduce(codecs.encode, ('abc', 'rot13')), "'rot13'"),
    (_Reduce(eval, ('1+1', )), 'builtins.eval'),
    (_Reduce(subprocess.call, (['true'], )), 'subprocess.call'),
])
def test_getattr_chains_and_other_globals_refused(tmp_path, payload, named):
    path = _save(tmp_path, payload)
    with pytest.raises(UnsafeCheckpointError, match='Refusing to load') as err:
        sc.load_checkpoint_safely(path)
    assert named in str(err.value)


def test_history_buffer_registry_pollution_refused(tmp_path):
    """HistoryBuffer.__setstate__ merges pickled methods into a class-level dict."""
    before = dict(HistoryBuffer._statistics_methods)
    payload = _Reduce(HistoryBuffer, (), {'statistics_methods': {'evil': torch.Size}})
    path = _save(tmp_path, payload)
    with pytest.raises(UnsafeCheckpointError, match="'evil'"):
        sc.load_checkpoint_safely(path)
    assert HistoryBuffer._statistics_methods == before


def test_torchscript_archive_refused(tmp_path):
    path = str(tmp_path / 'scripted.pt')
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), path)
    with pytest.raises(UnsafeCheckpointError, match='TorchScript'):
        sc.load_checkpoint_safely(path)


# ------------------------------------------------------------------ (c) trusted opt-in
def test_trusted_loads_unlisted_globals(tmp_path, monkeypatch):
    path = _save(tmp_path, datetime.date(2024, 1, 2))
    with pytest.raises(UnsafeCheckpointError, match='datetime.date'):
        sc.load_checkpoint_safely(path)
    assert sc.load_checkpoint_safely(path, trusted=True)['payload'] == datetime.date(2024, 1, 2)
    monkeypatch.setenv(sc.TRUST_ENV, '1')
    assert sc.load_checkpoint_safely(path)['payload'] == datetime.date(2024, 1, 2)


# ------------------------------------------------------------------ (d) atomic saving
def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / 'latest.pth')
    sc.atomic_save_checkpoint({'state_dict': {'w': torch.zeros(3)}}, path)
    before = open(path, 'rb').read()
    real_save = torch.save

    def half_save(obj, f, *args, **kwargs):
        real_save(obj, f)  # torch.save may accept a file object; write then cut it short
        f.seek(0)
        f.truncate(len(before) // 2)
        raise RuntimeError('killed mid-write')

    monkeypatch.setattr(torch, 'save', half_save)
    with pytest.raises(RuntimeError, match='mid-write'):
        sc.atomic_save_checkpoint({'state_dict': {'w': torch.ones(1000)}}, path)
    monkeypatch.undo()
    assert open(path, 'rb').read() == before
    assert os.listdir(tmp_path) == ['latest.pth']  # no temp file left behind
    assert torch.equal(sc.load_checkpoint_safely(path)['state_dict']['w'], torch.zeros(3))


def _die_while_saving(path, patch=True):
    """Save a large checkpoint over `path` in a child process whose file-size limit kills it
    (SIGXFSZ) partway through writing the file: a real mid-write death, no mocking."""
    script = textwrap.dedent(f"""
        import resource, signal, sys, importlib.util, torch
        if {patch!r}:
            spec = importlib.util.spec_from_file_location({MOD_NAME!r}, {sc.__file__!r})
            mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod
            spec.loader.exec_module(mod); mod.patch_mmengine()
        from mmengine.runner import save_checkpoint
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it by default
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        save_checkpoint({{'w': torch.ones(100_000)}}, {path!r})
    """)
    return subprocess.run([sys.executable, '-c', script], cwd=REPO).returncode


@pytest.mark.slow
def test_death_during_save_keeps_previous_checkpoint(tmp_path):
    path = str(tmp_path / 'latest.pth')
    sc.atomic_save_checkpoint({'w': torch.zeros(3)}, path)
    before = open(path, 'rb').read()
    assert _die_while_saving(path) == -signal.SIGXFSZ
    assert open(path, 'rb').read() == before
    assert torch.equal(sc.load_checkpoint_safely(path)['w'], torch.zeros(3))
    # the killed writer's hidden temp file is left; the next save of that file removes it
    assert len(os.listdir(tmp_path)) == 2
    sc.atomic_save_checkpoint({'w': torch.ones(2)}, path)
    assert os.listdir(tmp_path) == ['latest.pth']


def test_mmengine_save_checkpoint_names_patched():
    import mmengine.runner
    import mmengine.runner.checkpoint
    import mmengine.runner.runner
    for mod in (mmengine.runner, mmengine.runner.checkpoint, mmengine.runner.runner):
        assert mod.save_checkpoint is sc.atomic_save_checkpoint


# ------------------------------------------------------------------ (e) MMEngine goes through it
def test_checkpoint_loader_uses_safe_loader(tmp_path):
    from mmengine.runner import CheckpointLoader, load_checkpoint
    from mmengine.runner.checkpoint import _load_checkpoint

    good = str(tmp_path / 'good.pth')
    ckpt = mmengine_style_checkpoint()
    torch.save(ckpt, good)
    assert CheckpointLoader._get_checkpoint_loader(good) is sc.load_from_safe_local
    assert_same(ckpt, CheckpointLoader.load_checkpoint(good))

    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    load_checkpoint(model, good, map_location='cpu', strict=True)
    assert torch.equal(model[0].weight, ckpt['state_dict']['0.weight'])

    evil = _save(tmp_path, _Reduce(os.system, ('true', )))
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(evil, map_location='cpu')
    with pytest.raises(FileNotFoundError, match='can not be found'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'missing.pth'))


# ------------------------------------------------------------------ Runner: save, resume, crash
def _runner(work_dir, name, **kwargs):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            out = self.lin(torch.stack(inputs) if isinstance(inputs, list) else inputs)
            return dict(loss=out.pow(2).mean()) if mode == 'loss' else out

    class Data(torch.utils.data.Dataset):
        metainfo = dict(classes=('a', 'b'), mean=np.arange(3.0), scale=np.float32(0.5))

        def __len__(self):
            return 8

        def __getitem__(self, i):
            return dict(inputs=torch.full((3, ), float(i)))

    return Runner(
        model=Toy(), work_dir=work_dir, experiment_name=name,
        train_dataloader=dict(dataset=Data(), batch_size=2,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='Adam', lr=0.01)),
        param_scheduler=dict(type='MultiStepLR', milestones=[3], by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=4),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False,
                                           max_keep_ckpts=1)),
        **kwargs)


@pytest.mark.slow
def test_runner_saves_resumes_and_survives_failed_save(tmp_path):
    work_dir = str(tmp_path / 'work')
    runner = _runner(work_dir, 'safe_ckpt_train')
    runner.train()
    ckpt = osp.join(work_dir, 'iter_4.pth')
    assert not osp.exists(osp.join(work_dir, 'iter_2.pth'))  # max_keep_ckpts=1
    assert open(osp.join(work_dir, 'last_checkpoint')).read() == ckpt
    assert not [f for f in os.listdir(work_dir) if f.endswith('.tmp')]

    # auto-resume goes through find_latest_checkpoint -> CheckpointLoader -> safe loader
    resumed = _runner(work_dir, 'safe_ckpt_resume', resume=True)
    resumed._train_loop = resumed.build_train_loop(resumed._train_loop)
    resumed.load_or_resume()
    assert resumed.iter == 4
    loss = resumed.message_hub.get_scalar('train/loss')
    assert_same(loss, runner.message_hub.get_scalar('train/loss'))

    # a save that dies must leave the previous checkpoint and the pointer to it intact
    hook = next(h for h in runner.hooks if type(h).__name__ == 'CheckpointHook')

    def failing_save(*args, **kwargs):
        raise RuntimeError('disk full')

    runner.save_checkpoint = failing_save
    with pytest.raises(RuntimeError, match='disk full'):
        hook._save_checkpoint_with_step(runner, 6, meta={})
    assert osp.isfile(ckpt)
    assert open(osp.join(work_dir, 'last_checkpoint')).read() == ckpt
