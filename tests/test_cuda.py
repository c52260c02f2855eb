"""The GPU code paths: the training step, fp16 AMP with loss scaling, channels-last,
a one-process NCCL group through the DDP wrapper, torch SyncBatchNorm, and the
inference tools on ``cuda``.

Every test is parametrised over the device. The ``cuda`` cases run only where
PyTorch sees a CUDA GPU (skipped otherwise: "needs a CUDA GPU"); the ``cpu`` cases
run the same bodies everywhere, with the CPU-side counterparts (gloo instead of
NCCL, mmintrovae's CPUSyncBatchNorm instead of torch's, bf16 autocast without a
loss scaler instead of fp16 with one), so no line here is only ever run on a GPU.
On a GPU machine the ``cpu`` cases still take the CPU branches: the device checks
of the AMP and DDP wrappers are pinned to 'cpu' for them.

fp32 comparisons switch TF32 off (cuDNN convolutions use TF32 by default), so a
CUDA step must agree with the CPU step to float32 rounding. The step's noise
(``torch.randn_like``: reparameterisation and prior samples) is drawn on the CPU
from a seeded generator and moved to the device, so both devices see the same
numbers.
"""
import importlib.util
import os
import os.path as osp
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from mmengine import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict
from PIL import Image

from _images import write_image_folder
from conftest import make_batch, snapshot

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
DEVICES = ['cpu', pytest.param('cuda', marks=CUDA)]
# conftest's tiny model (the smallest size the networks take); both hinges active (m large), as in test_introvae_step.
SMALL = dict(image_size=32, channels=(8, 16, 16), latent_dim=8)
HYPER = dict(m=1e4, alpha=0.3, beta=0.7, alpha_generator=0.4)


@pytest.fixture(autouse=True)
def iteration_zero():
    MessageHub.get_current_instance().update_info('iter', 0)
    yield
    MessageHub.get_current_instance().update_info('iter', 0)


@pytest.fixture
def no_tf32():
    """Plain fp32 on CUDA (cuDNN's convolutions default to TF32)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture
def device_branch(monkeypatch):
    """Pins what the AMP and DDP wrappers take for 'the machine's device' to the case's
    device, so a 'cpu' case takes the CPU branches on a GPU machine too."""
    def pin(device):
        if device == 'cpu':
            from mmintrovae.engine import amp, distributed
            monkeypatch.setattr(amp, 'get_device', lambda: 'cpu')
            monkeypatch.setattr(distributed, '_on_cpu', lambda: True)
    return pin


@contextmanager
def cpu_noise(seed=0):
    """torch.randn_like drawing on the CPU from a seeded generator (same numbers on
    every device), then moved to the tensor's device and dtype."""
    original = torch.randn_like
    gen = torch.Generator().manual_seed(seed)

    def randn_like(tensor, *args, dtype=None, **kwargs):
        noise = torch.randn(tensor.shape, generator=gen)
        return noise.to(device=tensor.device, dtype=dtype or tensor.dtype)

    torch.randn_like = randn_like
    try:
        yield
    finally:
        torch.randn_like = original


def build(tiny_introvae, device, lr=1e-2, optimizer=torch.optim.SGD, **kwargs):
    """The tiny model on ``device`` with plain fp32 optim wrappers (same init every call)."""
    model, _ = tiny_introvae(**SMALL, **HYPER, **kwargs)
    model.to(device)
    wrappers = OptimWrapperDict(**{
        name: OptimWrapper(optimizer(getattr(model, name).parameters(), lr=lr))
        for name in ('encoder', 'generator')})
    return model, wrappers


def step(model, wrappers, batch_seed=1, noise_seed=0, poison=False):
    batch, _ = make_batch(4, SMALL['image_size'], seed=batch_seed)
    if poison:
        batch['data_samples'][1].gt_img[0, 3, 3] = float('nan')
    with cpu_noise(noise_seed):
        return model.train_step(batch, wrappers)


def plain_params(model):
    """Parameters by checkpoint name (without DDP's ``module.`` level)."""
    return {k.replace('.module.', '.'): v for k, v in model.named_parameters()}


def assert_same_update(model, reference, before, rtol=2e-3):
    """Each parameter's change in ``model`` equals that in ``reference`` (on the CPU)
    to float32 rounding, relative to the size of the largest change in that tensor."""
    params, ref_params = plain_params(model), plain_params(reference)
    assert set(params) == set(ref_params) == set(before)
    moved = 0
    for name, p in params.items():
        got, want = p.detach().cpu() - before[name], ref_params[name].detach().cpu() - before[name]
        scale = want.abs().max().item()
        moved += scale > 0
        torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale + 1e-12,
                                   msg=lambda m: f'{name}: {m}')
    assert moved == len(before), 'a parameter did not move in the reference step'


def cpu_copy_of_init(tiny_introvae):
    model, _ = tiny_introvae(**SMALL, **HYPER)
    return snapshot(model)


# ---------------------------------------------------------------------- fp32 step
@pytest.mark.parametrize('update_mode', ['alternating', 'simultaneous'])
@pytest.mark.parametrize('device', DEVICES)
def test_step_on_the_device_equals_the_cpu_step(tiny_introvae, no_tf32, device, update_mode):
    before = cpu_copy_of_init(tiny_introvae)
    reference, ref_wrappers = build(tiny_introvae, 'cpu', update_mode=update_mode)
    ref_log = step(reference, ref_wrappers)
    model, wrappers = build(tiny_introvae, device, update_mode=update_mode)
    assert next(model.parameters()).device.type == device
    log = step(model, wrappers)
    assert set(log) == set(ref_log)
    for key in ref_log:
        torch.testing.assert_close(log[key].cpu(), ref_log[key], rtol=1e-4, atol=1e-3,
                                   msg=lambda m: f'{key}: {m}')
    assert_same_update(model, reference, before)
    for (name, a), (_, b) in zip(model.named_buffers(), reference.named_buffers()):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-5,
                                   msg=lambda m: f'buffer {name}: {m}')


@pytest.mark.parametrize('device', DEVICES)
def test_channels_last_gives_the_same_step(tiny_introvae, no_tf32, device):
    before = cpu_copy_of_init(tiny_introvae)
    plain, plain_wrappers = build(tiny_introvae, device)
    step(plain, plain_wrappers)
    nhwc, nhwc_wrappers = build(tiny_introvae, device, channels_last=True)
    weight = next(p for p in nhwc.encoder.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    step(nhwc, nhwc_wrappers)
    assert weight.is_contiguous(memory_format=torch.channels_last)  # kept through the update
    assert_same_update(nhwc, plain, before)


# --------------------------------------------------------------------------- AMP
def amp_wrappers(model, device, **kwargs):
    from mmintrovae.engine.amp import IntroVAEAmpOptimWrapper
    if device == 'cpu':
        kwargs.setdefault('dtype', 'bfloat16')  # the CPU's mixed precision (emulated here)
    return OptimWrapperDict(**{
        name: IntroVAEAmpOptimWrapper(
            optimizer=torch.optim.Adam(getattr(model, name).parameters(), lr=1e-3), **kwargs)
        for name in ('encoder', 'generator')})


def record_dtypes(model):
    seen = {}

    def hook(name):
        def record(module, inputs, output):
            seen.setdefault(name, (output[0] if isinstance(output, tuple) else output).dtype)
        return record
    return seen, [getattr(model, n).register_forward_hook(hook(n))
                  for n in ('encoder', 'generator')]


def adam_steps(wrappers):
    return {name: {int(s['step']) for s in w.optimizer.state_dict()['state'].values()}
            for name, w in wrappers.items()}


@pytest.mark.parametrize('device', DEVICES)
def test_amp_trains_both_networks_and_the_guard_skips_bad_steps(tiny_introvae, device,
                                                                device_branch):
    """fp16 autocast with the dynamic loss scaler on CUDA (bf16, no scaler, on CPU): both
    networks run in half precision and are updated; a NaN batch is skipped by the
    divergence guard; on CUDA a gradient overflow is skipped by the scaler, which halves
    its scale."""
    device_branch(device)
    model, _ = tiny_introvae(**SMALL, **HYPER)
    model.to(device)
    wrappers = amp_wrappers(model, device)
    half = torch.float16 if device == 'cuda' else torch.bfloat16
    assert all(w.amp_dtype == half for w in wrappers.values())
    assert all(hasattr(w, 'loss_scaler') == (device == 'cuda') for w in wrappers.values())
    seen, hooks = record_dtypes(model)
    start = snapshot(model)
    log = step(model, wrappers)
    for h in hooks:
        h.remove()
    assert seen == dict(encoder=half, generator=half)
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in log.values())
    for name, value in snapshot(model).items():
        assert not torch.equal(value, start[name]), f'{name} was not updated'
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert adam_steps(wrappers) == dict(encoder={1}, generator={1})

    # the divergence guard: a NaN image makes the losses NaN; nothing changes
    good = {k: v.clone() for k, v in model.state_dict().items()}
    log = step(model, wrappers, batch_seed=2, poison=True)
    assert not torch.isfinite(log['loss_encoder'])
    assert model._bad_iterations == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, good[k]), k
    assert adam_steps(wrappers) == dict(encoder={1}, generator={1})

    if device == 'cuda':
        # an overflowing scale: finite losses, inf fp16 gradients; GradScaler skips the
        # optimizer steps and halves its scale
        for w in wrappers.values():
            w.loss_scaler.update(2.0**60)
        log = step(model, wrappers, batch_seed=3)
        assert torch.isfinite(log['loss_encoder'])
        for k, v in model.state_dict().items():
            if 'running' not in k and 'num_batches' not in k:
                assert torch.equal(v, good[k]), k
        assert adam_steps(wrappers) == dict(encoder={1}, generator={1})
        assert all(w.loss_scaler.get_scale() == 2.0**59 for w in wrappers.values())
        for w in wrappers.values():
            w.loss_scaler.update(2.0**16)  # back to the initial scale

    log = step(model, wrappers, batch_seed=4)  # and training goes on
    assert torch.isfinite(log['loss_encoder']) and model._bad_iterations == 0
    assert adam_steps(wrappers) == dict(encoder={2}, generator={2})


# ------------------------------------------------------- process group, DDP, SyncBN
@contextmanager
def one_process_group(device, tmp_path):
    import torch.distributed as dist
    backend = 'nccl' if device == 'cuda' else 'gloo'
    if device == 'cuda':
        torch.cuda.set_device(0)
    dist.init_process_group(backend, init_method=f'file://{tmp_path / "rendezvous"}',
                            rank=0, world_size=1)
    try:
        assert dist.get_backend() == backend
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('sync_bn', [False, True], ids=['bn', 'sync_bn'])
@pytest.mark.parametrize('device', DEVICES)
def test_one_process_group_trains_through_the_ddp_wrapper(tiny_introvae, no_tf32, tmp_path,
                                                          device, sync_bn, device_branch):
    """NCCL on CUDA (gloo on CPU), one process: IntroVAEDistributedDataParallel wraps
    each network in its own DDP and the step equals the unwrapped one. With
    sync_bn='torch' (what MMEngine's Runner does for ``sync_bn='torch'``) the BatchNorms
    are torch.nn.SyncBatchNorm on CUDA, CPUSyncBatchNorm on CPU, and train."""
    from mmengine.model import convert_sync_batchnorm
    from torch.nn.parallel import DistributedDataParallel

    from mmintrovae.engine.distributed import (CPUSyncBatchNorm,
                                               IntroVAEDistributedDataParallel)
    device_branch(device)
    before = cpu_copy_of_init(tiny_introvae)
    reference, ref_wrappers = build(tiny_introvae, device)
    ref_log = step(reference, ref_wrappers)
    with one_process_group(device, tmp_path):
        model, wrappers = build(tiny_introvae, device)
        if sync_bn:
            model = convert_sync_batchnorm(model, implementation='torch')
        kwargs = dict(device_ids=[torch.cuda.current_device()]) if device == 'cuda' else {}
        wrapped = IntroVAEDistributedDataParallel(model, **kwargs)
        assert isinstance(model.encoder, DistributedDataParallel)
        assert isinstance(model.generator, DistributedDataParallel)
        if sync_bn:
            kind = torch.nn.SyncBatchNorm if device == 'cuda' else CPUSyncBatchNorm
            layers = [m for m in model.modules()
                      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
            assert layers and all(type(m) is kind for m in layers)
        with cpu_noise(0):
            log = wrapped.train_step(make_batch(4, SMALL['image_size'], seed=1)[0], wrappers)
        state = wrapped.module.state_dict()
    assert not any('.module.' in k for k in state)  # plain checkpoint keys
    for key in ref_log:
        torch.testing.assert_close(log[key].cpu(), ref_log[key].cpu(), rtol=1e-4, atol=1e-3)
    assert set(state) == set(reference.state_dict())
    assert_same_update(model, reference, before)


# ----------------------------------------------------------------- inference tools
def load_tool(name):
    spec = importlib.util.spec_from_file_location(f'_tool_{name}',
                                                  osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def emoji_checkpoint(tmp_path_factory):
    """The emoji64 recipe's model (untrained weights) as a checkpoint, and 3 images."""
    from mmengine.registry import init_default_scope

    from mmintrovae.apis import init_model
    init_default_scope('mmagic')
    config = osp.join(REPO, 'configs/introvae_emoji64.py')
    torch.manual_seed(0)
    model = init_model(config)
    root = tmp_path_factory.mktemp('emoji_ckpt')
    ckpt = str(root / 'model.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    images = write_image_folder(str(root / 'images'), 3, 64, mode='RGB')
    return config, ckpt, images, model


def read_pngs(folder, names):
    return np.stack([np.asarray(Image.open(osp.join(folder, n))) for n in names]).astype(int)


@pytest.mark.parametrize('device', DEVICES)
def test_inference_tools_run_on_the_device(emoji_checkpoint, tmp_path, device, no_tf32):
    """tools/sample.py, reconstruct.py and interpolate.py with --device DEVICE give the
    images the CPU API gives (to a grey level of rounding on CUDA)."""
    from mmintrovae.apis import interpolate, reconstruct_images, sample
    config, ckpt, images, cpu_model = emoji_checkpoint
    tol = 0 if device == 'cpu' else 2

    load_tool('sample').main([config, ckpt, '--device', device, '--num', '4', '--seed', '3',
                              '--out', str(tmp_path / 's')])
    got = read_pngs(tmp_path / 's', [f'sample_{i:04d}.png' for i in range(4)])
    want = sample(cpu_model, 4, seed=3).astype(int)
    assert np.abs(got - want).max() <= tol

    load_tool('reconstruct').main([config, ckpt, '--device', device, '--input', images,
                                   '--out', str(tmp_path / 'r')])
    names = sorted(os.listdir(images))
    got = read_pngs(tmp_path / 'r', names)
    want = reconstruct_images(cpu_model, [osp.join(images, n) for n in names]).astype(int)
    assert np.abs(got - want).max() <= tol

    load_tool('interpolate').main([config, ckpt, '--device', device, '--seeds', '1', '2',
                                   '--steps', '4', '--out', str(tmp_path / 'i')])
    got = read_pngs(tmp_path / 'i', [f'frame_{i:03d}.png' for i in range(4)])
    want = interpolate(cpu_model, 1, 2, steps=4).astype(int)
    assert np.abs(got - want).max() <= tol
