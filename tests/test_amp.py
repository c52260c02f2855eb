"""Mixed precision (--amp) for both optim wrappers: bf16 on CPU (or the fp32 fallback),
MMEngine's fp16 AmpOptimWrapper on GPUs (not available here), fp32 loss sums, and
gradient accumulation."""
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine import MessageHub
from mmengine.optim import OptimWrapperDict

from _images import write_image_folder
from conftest import make_batch, snapshot

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture
def logs(monkeypatch):
    from mmintrovae.engine import amp
    messages = []
    monkeypatch.setattr(amp, 'print_log', lambda msg, *a, **k: messages.append(msg))
    return messages


def amp_wrappers(model, **kwargs):
    from mmintrovae.engine.amp import IntroVAEAmpOptimWrapper
    return OptimWrapperDict(**{
        name: IntroVAEAmpOptimWrapper(
            optimizer=torch.optim.Adam(getattr(model, name).parameters(), lr=1e-3), **kwargs)
        for name in ('encoder', 'generator')})


@pytest.mark.parametrize('native', [True, False])
def test_cpu_picks_bf16_where_supported_and_says_when_it_falls_back(monkeypatch, logs, native):
    from mmintrovae.engine import amp
    monkeypatch.setattr(amp, 'cpu_supports_bf16', lambda: native)
    wrapper = amp.IntroVAEAmpOptimWrapper(optimizer=torch.optim.SGD([torch.zeros(1)], lr=1))
    assert not hasattr(wrapper, 'loss_scaler')  # no GradScaler on CPU
    if native:
        assert wrapper.amp_dtype == torch.bfloat16
        assert 'bfloat16 autocast' in logs[0]
    else:
        assert wrapper.amp_dtype == torch.float32
        assert 'falling back to float32' in logs[0]
    with wrapper.optim_context(torch.nn.Linear(1, 1)):
        assert torch.is_autocast_enabled('cpu') == native
        if native:
            assert torch.get_autocast_dtype('cpu') == torch.bfloat16


def test_fp16_on_cpu_is_refused():
    from mmintrovae.engine.amp import IntroVAEAmpOptimWrapper
    with pytest.raises(ValueError, match='bfloat16 only'):
        IntroVAEAmpOptimWrapper(optimizer=torch.optim.SGD([torch.zeros(1)], lr=1),
                                dtype='float16')


def test_amp_flag_makes_both_wrappers_mixed_precision():
    from types import SimpleNamespace

    from mmengine.config import Config

    from mmintrovae.engine.config import apply_train_args
    cfg = Config.fromfile(osp.join(REPO, 'configs/introvae_fashionmnist32.py'))
    args = SimpleNamespace(launcher='none', work_dir='w', resume=None, amp=True,
                           config='configs/introvae_fashionmnist32.py')
    cfg = apply_train_args(cfg, args)
    assert cfg.optim_wrapper.encoder.type == 'IntroVAEAmpOptimWrapper'
    assert cfg.optim_wrapper.generator.type == 'IntroVAEAmpOptimWrapper'


def test_loss_sums_are_fp32_under_bf16_autocast():
    from mmintrovae.models import kl_divergence, reconstruction_error
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 512, generator=g), torch.randn(4, 512, generator=g)
    x, y = torch.rand(4, 3, 64, 64, generator=g), torch.rand(4, 3, 64, 64, generator=g)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        # what the networks hand over under autocast: bf16 tensors
        kl = kl_divergence(mu.bfloat16(), logvar.bfloat16())
        rec = reconstruction_error(x.bfloat16(), y.bfloat16())
    assert kl.dtype == torch.float32 and rec.dtype == torch.float32
    # the sums are those of fp64 over the same (bf16-rounded) inputs, to fp32 precision;
    # a bf16 sum over 512 or 12288 terms would be off by far more (8-bit mantissa)
    m, lv = mu.bfloat16().double(), logvar.bfloat16().double()
    kl64 = -0.5 * (1 + lv - m.pow(2) - lv.exp()).sum(1)
    rec64 = (x.bfloat16().double() - y.bfloat16().double()).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(kl.double(), kl64, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(rec.double(), rec64, rtol=1e-5, atol=1e-4)


@pytest.mark.slow  # emulated bf16 kernels: 10-25 s on this CPU
def test_forced_bf16_step_runs_both_networks_in_bf16(tiny_introvae, logs):
    model, _ = tiny_introvae(m=1e3)
    wrappers = amp_wrappers(model, dtype='bfloat16')
    dtypes = {}

    def record(name):
        def hook(module, inputs, output):
            dtypes.setdefault(name, (output[0] if isinstance(output, tuple) else output).dtype)
        return hook

    hooks = [getattr(model, name).register_forward_hook(record(name))
             for name in ('encoder', 'generator')]
    enc, gen = snapshot(model.encoder), snapshot(model.generator)
    batch, _ = make_batch(4, 32)
    log = model.train_step(batch, wrappers)
    for h in hooks:
        h.remove()
    assert dtypes == dict(encoder=torch.bfloat16, generator=torch.bfloat16)
    for key, value in log.items():
        assert torch.isfinite(value), key
        assert value.dtype == torch.float32, key
    assert all(not torch.equal(v, enc[k]) for k, v in model.encoder.named_parameters())
    assert all(not torch.equal(v, gen[k]) for k, v in model.generator.named_parameters())
    # the master weights stay fp32
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_gradient_accumulation_steps_every_second_iteration(tiny_introvae, logs):
    model, _ = tiny_introvae(m=1e3)
    wrappers = amp_wrappers(model, accumulative_counts=2)  # bf16 or the fp32 fallback
    hub = MessageHub.get_current_instance()
    enc0, gen0 = snapshot(model.encoder), snapshot(model.generator)
    batch, _ = make_batch(4, 32)
    try:
        hub.update_info('iter', 0)
        model.train_step(batch, wrappers)
        assert snapshot(model.encoder).keys() == enc0.keys()
        assert all(torch.equal(v, enc0[k]) for k, v in snapshot(model.encoder).items())
        assert all(torch.equal(v, gen0[k]) for k, v in snapshot(model.generator).items())
        hub.update_info('iter', 1)
        model.train_step(batch, wrappers)
    finally:
        hub.update_info('iter', 0)
    assert all(not torch.equal(v, enc0[k]) for k, v in snapshot(model.encoder).items())
    assert all(not torch.equal(v, gen0[k]) for k, v in snapshot(model.generator).items())
    for name in ('encoder', 'generator'):
        state = wrappers[name].optimizer.state_dict()['state']
        assert {int(s['step']) for s in state.values()} == {1}, name


def test_cpu_state_dict_round_trip_and_gpu_checkpoints(tiny_introvae):
    model, _ = tiny_introvae()
    wrappers = amp_wrappers(model, dtype='bfloat16')
    state = wrappers['encoder'].state_dict()
    assert 'loss_scaler' not in state
    state['loss_scaler'] = dict(scale=65536.0)  # a checkpoint of a GPU (fp16) run
    wrappers['encoder'].load_state_dict(state)


# ---------------------------------------------------------------- end to end (slow)
@pytest.mark.slow
@pytest.mark.parametrize('dtype', ['auto', 'bfloat16'])
def test_train_with_amp_on_cpu(tmp_path, dtype):
    """tools/train.py --amp, 3 iterations (1 VAE warm-up, 2 introspective) of the shrunk
    Fashion-MNIST recipe. 'auto' is what --amp does here: bf16 on a CPU with native
    bf16, otherwise the logged fp32 fallback (this machine has none); 'bfloat16' forces
    (emulated) bf16 autocast so the mixed-precision path runs end to end here."""
    from mmintrovae.engine.amp import cpu_supports_bf16
    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    data = write_image_folder(tmp_path / 'images', 4, 32, mode='L')
    work = tmp_path / 'work'
    options = [
        'model.architecture.channels=(8,16,16)', 'model.architecture.latent_dim=8',
        'model.vae_warmup_iters=1', 'train_cfg.max_iters=3', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        f'train_dataloader.dataset.data_root={data}', 'val_cfg=None', 'val_dataloader=None',
        'val_evaluator=None', 'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=-1', 'default_hooks.checkpoint.save_best=None',
        'default_hooks.logger.interval=1', 'custom_hooks=[]']
    if dtype != 'auto':
        options += [f'optim_wrapper.encoder.dtype={dtype}',
                    f'optim_wrapper.generator.dtype={dtype}']
    cmd = [sys.executable, 'tools/train.py', 'configs/introvae_fashionmnist32.py', '--amp',
           '--work-dir', str(work), '--cfg-options', *options]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, OMP_NUM_THREADS='1'))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    if dtype == 'bfloat16' or cpu_supports_bf16():
        assert 'Mixed precision on cpu: bfloat16 autocast' in out
    else:
        assert 'falling back to float32' in out

    rows = []
    for path in glob.glob(str(work / '*' / 'vis_data' / 'scalars.json')):
        rows += [json.loads(line) for line in open(path) if line.strip()]
    losses = [r for r in rows if 'loss_encoder' in r]
    assert [r['iter'] for r in losses] == [1, 2, 3]
    for row in losses:
        for key in ('loss_encoder', 'loss_generator', 'loss_ae', 'kl_real'):
            assert math.isfinite(row[key]), (key, row)
    assert all(math.isfinite(r['kl_fake_g']) for r in losses[1:])

    first, last = (load_checkpoint_safely(str(work / f'iter_{i}.pth')) for i in (1, 3))
    for net in ('encoder', 'generator'):
        keys = [k for k in last['state_dict'] if k.startswith(net + '.') and
                last['state_dict'][k].is_floating_point() and 'running' not in k]
        assert keys and all(not torch.equal(first['state_dict'][k], last['state_dict'][k])
                            for k in keys if k.endswith('weight')), net
        steps = {int(s['step']) for s in last['optimizer'][net]['state'].values()}
        assert steps == {3}, (net, steps)  # every iteration stepped both optimizers
