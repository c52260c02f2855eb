"""IntrospectionMonitorHook: warns, then stops, when the introspective balance breaks.

Fast tests feed synthetic log streams shaped like the recipes' healthy runs and
like the collapse of issue 14; a slow test trains a run that really collapses
through tools/train.py and checks that it stops with the message.
"""
import math
import os.path as osp
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from mmintrovae.engine import introspection_monitor_hook as monitor_module
from mmintrovae.engine.introspection_monitor_hook import (IntrospectionCollapseError,
                                                          IntrospectionMonitorHook)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


class ScaledGenerator(nn.Module):
    """G(z) = scale * z as 1x2x2 images: sample diversity is proportional to ``scale``."""
    noise_size = 4  # the latent size, as MMagic generators state it

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, z):
        return (self.scale * z).view(-1, 1, 2, 2)


def introvae_like(m=30.0, warmup=200):
    return SimpleNamespace(m=m, alpha=0.25, beta=1.0, alpha_generator=0.5,
                           vae_warmup_iters=warmup, encoder=nn.Identity(),
                           generator=ScaledGenerator())


def soft_introvae_like(warmup=0):
    return SimpleNamespace(beta_neg=256.0, vae_warmup_iters=warmup, encoder=nn.Identity(),
                           generator=ScaledGenerator())


@pytest.fixture
def logged(monkeypatch):
    """(level, message) of everything the hook logs."""
    records = []
    monkeypatch.setattr(monitor_module, 'print_log',
                        lambda msg, logger=None, level=20: records.append((level, msg)))
    return records


def warnings_of(records):
    return [msg for level, msg in records if level >= 30]


def run_stream(hook, model, stream, iters):
    """Feed ``stream(i)`` (0-based iteration -> outputs dict or None) through after_train_iter.

    Returns the 1-based iteration at which the hook raised, or None.
    """
    runner = SimpleNamespace(model=model, iter=0, _resume=False)
    for i in range(iters):
        runner.iter = i
        outputs = stream(i)
        if outputs is not None and 'scale' in outputs:
            model.generator.scale.data.fill_(outputs.pop('scale'))
        try:
            hook.after_train_iter(runner, i, None,
                                  {k: torch.tensor(float(v)) for k, v in outputs.items()})
        except IntrospectionCollapseError:
            return i + 1
    return None


def noisy(rng, value, rel=0.08):
    return value * (1 + rng.normal(0, rel))


def emoji_healthy(seed=0, warmup=400):
    """The emoji recipe's healthy run: m=100, KL(real) 75-100, L_AE 490 -> 350 after warm-up."""
    rng = np.random.default_rng(seed)

    def stream(i):
        if i < warmup:
            return dict(kl_real=noisy(rng, 120 - 40 * i / warmup), loss_ae=noisy(rng, 900 - i),
                        scale=1.0)
        t = (i - warmup) / 600
        return dict(kl_real=noisy(rng, 75 + 25 * t), kl_rec=noisy(rng, 110),
                    kl_fake=noisy(rng, 130), loss_ae=noisy(rng, 490 - 140 * t),
                    scale=1.0 + 0.3 * np.sin(i / 50))
    return stream


def fashion_collapse(seed=0, warmup=200, collapse_at=None):
    """Issue 14: after warm-up L_AE 41 -> 80-92, KL(real) ~1, KL(rec)/KL(fake) ~100 (m=30)."""
    rng = np.random.default_rng(seed)
    collapse_at = warmup if collapse_at is None else collapse_at

    def stream(i):
        if i < warmup:
            return dict(kl_real=noisy(rng, 25), loss_ae=noisy(rng, 41 + 39 * max(0, 1 - i / 150)),
                        scale=1.0)
        if i < collapse_at:
            return dict(kl_real=noisy(rng, 22), kl_rec=noisy(rng, 32), kl_fake=noisy(rng, 35),
                        loss_ae=noisy(rng, 41), scale=1.0)
        return dict(kl_real=noisy(rng, 1.0, 0.3), kl_rec=noisy(rng, 100), kl_fake=noisy(rng, 100),
                    loss_ae=rng.uniform(80, 92), scale=0.05)
    return stream


# ------------------------------------------------------------------ healthy
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_healthy_emoji_run_is_left_alone(logged, seed):
    hook = IntrospectionMonitorHook()
    assert run_stream(hook, introvae_like(m=100, warmup=400), emoji_healthy(seed), 1500) is None
    assert warnings_of(logged) == []
    assert hook.loss_ae_reference < 400  # the reference follows L_AE down


def test_healthy_fashion_run_is_left_alone(logged):
    """The Fashion-MNIST recipe's healthy shape: L_AE about 41 at warm-up end, KL(real) below m."""
    stream = fashion_collapse(collapse_at=10 ** 9)
    assert run_stream(IntrospectionMonitorHook(), introvae_like(), stream, 800) is None
    assert warnings_of(logged) == []


def test_healthy_fashion_run_of_the_readme_is_left_alone(logged):
    """The README's Fashion-MNIST log (20-iteration windows after the 200-iteration warm-up):
    L_AE 30.8 -> 36.9 -> 33.6 -> 35.4 -> 33.9 -> 31.5, KL(real) 12-18 against m = 30."""
    table = np.array([  # iteration, KL real, KL rec, KL fake, L_AE
        [200, 13.6, 13.5, 13.0, 30.8], [260, 15.0, 20.0, 19.0, 28.6], [340, 18.1, 31.3, 23.8, 36.9],
        [460, 12.0, 17.0, 17.3, 33.6], [580, 14.8, 31.0, 34.2, 35.4],
        [700, 14.9, 27.0, 23.4, 33.9], [800, 15.7, 28.2, 31.6, 31.5]])
    rng = np.random.default_rng(5)

    def stream(i):
        if i < 200:
            return dict(kl_real=noisy(rng, 9), loss_ae=noisy(rng, 32 + 70 * math.exp(-i / 40)),
                        scale=1.0)
        kl_real, kl_rec, kl_fake, loss_ae = (np.interp(i, table[:, 0], table[:, c])
                                             for c in range(1, 5))
        return dict(kl_real=noisy(rng, kl_real, 0.15), kl_rec=noisy(rng, kl_rec, 0.15),
                    kl_fake=noisy(rng, kl_fake, 0.15), loss_ae=noisy(rng, loss_ae), scale=1.0)
    assert run_stream(IntrospectionMonitorHook(), introvae_like(), stream, 800) is None
    assert warnings_of(logged) == []


def test_soft_introvae_without_warmup_is_left_alone(logged):
    rng = np.random.default_rng(3)

    def stream(i):
        # L_AE falls steeply from the untrained value; KL(real) far below KL(fake); the
        # freshly initialised generator's images vary 10x more than the trained one's
        return dict(kl_real=noisy(rng, 30), kl_rec=noisy(rng, 300), kl_fake=noisy(rng, 400),
                    loss_ae=noisy(rng, 60 + 3000 * math.exp(-i / 40)),
                    scale=10.0 if i < 150 else 1.0)
    assert run_stream(IntrospectionMonitorHook(), soft_introvae_like(), stream, 800) is None
    assert warnings_of(logged) == []


# ----------------------------------------------------------------- collapse
def test_collapse_warns_early_then_stops_after_patience(logged):
    hook = IntrospectionMonitorHook(interval=10, window=50, patience=200)
    stopped = run_stream(hook, introvae_like(m=30, warmup=200), fashion_collapse(), 2000)
    warned = warnings_of(logged)
    assert warned, logged
    # warned at one of the first checks with a full window of introspective iterations
    first = int(warned[0].split('iteration ')[1].split(':')[0])
    assert 200 < first <= 250 and 'unless it recovers' in warned[0]
    assert stopped is not None and first + 200 <= stopped <= first + 210


def test_collapse_error_names_what_broke_and_what_to_change(logged):
    hook = IntrospectionMonitorHook()
    runner = SimpleNamespace(model=introvae_like(), iter=0, _resume=False)
    hook.before_save_checkpoint(runner, dict(meta=dict(iter=200)))  # saved while healthy
    with pytest.raises(IntrospectionCollapseError) as info:
        stream = fashion_collapse()
        for i in range(2000):
            runner.iter = i
            outputs = stream(i)
            runner.model.generator.scale.data.fill_(outputs.pop('scale'))
            hook.after_train_iter(runner, i, None,
                                  {k: torch.tensor(float(v)) for k, v in outputs.items()})
    msg = str(info.value)
    assert 'collapsed' in msg
    for name in ('balance', 'loss_ae', 'diversity'):
        assert f'- {name} (since iteration' in msg, name
    assert 'KL(real) = ' in msg and 'm = 30' in msg and '0.1 x m = 3' in msg
    ref = float(re.search(r'its reference ([0-9.]+)', msg).group(1))
    assert 'L_AE = ' in msg and 39 < ref < 43  # the warm-up's end, about 41
    for setting in ('model.m (now 30)', 'model.alpha', 'model.beta', 'model.vae_warmup_iters'):
        assert setting in msg, setting
    # m towards KL(real) of the end of the warm-up (about 25 in this stream), not the collapsed 1
    towards = float(re.search(r'end of the warm-up \(([0-9.]+) in this run\)', msg).group(1))
    assert 22 < towards < 28
    assert 'iter_200.pth' in msg  # the newest checkpoint saved before the imbalance
    assert 'stop=False' in msg
    # warnings say the same, with numbers, before the stop
    warned = warnings_of(logged)
    assert any('KL(real) = ' in w and 'model.m' in w for w in warned)
    assert any('L_AE = ' in w and 'model.beta' in w for w in warned)


def test_each_quantity_alone_stops_the_run(logged):
    # L_AE alone (KL healthy, samples diverse)
    base = fashion_collapse(collapse_at=10 ** 9)

    def ae_only(i):
        out = base(i)
        if i >= 300:
            out['loss_ae'] = 90.0
        return out
    hook = IntrospectionMonitorHook()
    with pytest.raises(IntrospectionCollapseError, match='loss_ae') as info:
        runner = SimpleNamespace(model=introvae_like(), iter=0, _resume=False)
        for i in range(1000):
            runner.iter = i
            out = ae_only(i)
            out.pop('scale')
            hook.after_train_iter(runner, i, None, {k: torch.tensor(v) for k, v in out.items()})
    assert '- balance' not in str(info.value) and '- diversity' not in str(info.value)

    # diversity alone
    def collapsing_samples(i):
        out = base(i)
        out['scale'] = 1.0 if i < 300 else 0.01
        return out
    hook = IntrospectionMonitorHook()
    stopped = run_stream(hook, introvae_like(), collapsing_samples, 1000)
    assert stopped is not None and 'diversity' in hook.breach_since
    assert set(hook.breach_since) == {'diversity'}
    assert any('collapsing onto few images' in w for w in warnings_of(logged))


def test_soft_introvae_advice_and_no_margin_check(logged):
    rng = np.random.default_rng(4)

    def stream(i):
        return dict(kl_real=noisy(rng, 0.5), kl_rec=noisy(rng, 300), kl_fake=noisy(rng, 400),
                    loss_ae=noisy(rng, 60 if i < 300 else 150), scale=1.0)
    hook = IntrospectionMonitorHook()
    assert run_stream(hook, soft_introvae_like(), stream, 1000) is not None
    assert set(hook.breach_since) == {'loss_ae'}  # no margin: no balance check
    assert any('model.beta_neg' in w for w in warnings_of(logged))


def test_transient_breach_recovers_without_stopping(logged):
    base = fashion_collapse(collapse_at=10 ** 9)

    def blip(i):
        out = base(i)
        if 300 <= i < 400:  # 100 bad iterations, patience 200
            out.update(kl_real=1.0, kl_rec=100.0, kl_fake=100.0)
        return out
    hook = IntrospectionMonitorHook()
    assert run_stream(hook, introvae_like(), blip, 1200) is None
    assert any('KL(real)' in w for w in warnings_of(logged))
    assert any('back within its limits' in msg for _, msg in logged)
    assert hook.breach_since == {}


def test_stop_false_only_warns(logged):
    hook = IntrospectionMonitorHook(stop=False)
    assert run_stream(hook, introvae_like(), fashion_collapse(), 1500) is None
    warned = warnings_of(logged)
    assert warned and all('stop=False' in w for w in warned)
    # repeated, not every check: about every patience/4 iterations per quantity
    assert 3 * 20 <= len(warned) <= 3 * 30


def test_state_survives_a_resume_but_not_load_from(logged):
    hook = IntrospectionMonitorHook()
    model = introvae_like()
    run_stream(hook, model, fashion_collapse(collapse_at=10 ** 9), 400)
    checkpoint = dict(meta=dict(iter=400))
    hook.before_save_checkpoint(SimpleNamespace(iter=399), checkpoint)
    state = checkpoint['meta']['introspection_monitor']
    assert state['loss_ae_reference'] == hook.loss_ae_reference
    assert state['last_checkpoint_iter'] == 400
    resumed = IntrospectionMonitorHook()
    resumed.after_load_checkpoint(SimpleNamespace(_resume=True), checkpoint)
    assert resumed.loss_ae_reference == hook.loss_ae_reference
    assert resumed.diversity_reference == hook.diversity_reference
    assert resumed.kl_real_reference == hook.kl_real_reference is not None
    assert list(resumed._values['kl_real']) == list(hook._values['kl_real'])
    fresh = IntrospectionMonitorHook()
    fresh.after_load_checkpoint(SimpleNamespace(_resume=False), checkpoint)
    assert fresh.loss_ae_reference is None


def test_bad_settings_name_the_key():
    for kwargs, key in [(dict(patience=0), 'patience'), (dict(window=2.5), 'window'),
                        (dict(loss_ae_ratio=0.9), 'loss_ae_ratio'),
                        (dict(diversity_ratio=1.5), 'diversity_ratio'),
                        (dict(num_samples=1), 'num_samples'),
                        (dict(start_iters=-1), 'start_iters')]:
        with pytest.raises(ValueError, match=key):
            IntrospectionMonitorHook(**kwargs)


def test_diversity_of_a_real_generator_leaves_training_untouched(tiny_introvae):
    model, _ = tiny_introvae()
    model.train()
    hook = IntrospectionMonitorHook(num_samples=6)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    rng_state = torch.get_rng_state()
    value = hook.measure_diversity(model)
    assert value > 0 and math.isfinite(value)
    assert model.generator.training  # mode restored
    assert torch.equal(torch.get_rng_state(), rng_state)  # own generator for the draws
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k  # eval mode: BatchNorm statistics unchanged
    assert hook.measure_diversity(model) == value  # fixed draws


def test_registered_and_in_every_recipe():
    from mmagic.registry import HOOKS
    from mmengine import Config
    assert HOOKS.get('IntrospectionMonitorHook') is IntrospectionMonitorHook
    for name in ('introvae_emoji64', 'introvae_fashionmnist32', 'softintrovae_emoji64',
                 'softintrovae_fashionmnist32', 'introvae_celebahq256', 'vae_fashionmnist32'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))
        types = [h['type'] for h in cfg.custom_hooks]
        assert types[-1] == 'IntrospectionMonitorHook', (name, types)


# ------------------------------------------------------------- a real run
@pytest.mark.slow
def test_collapsing_training_run_stops_with_the_message(tmp_path):
    """tools/train.py on a tiny folder with settings that break the game within a few dozen
    iterations: the run fails with IntrospectionCollapseError naming the imbalance, and the
    checkpoint saved before it stays."""
    from _images import write_image_folder
    data = write_image_folder(tmp_path / 'images', 32, 32, mode='L')
    work = tmp_path / 'work'
    options = [
        f'train_dataloader.dataset.data_root={data}', 'train_dataloader.batch_size=16',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
        'model.architecture.channels=[8,16,16]', 'model.architecture.latent_dim=8',
        *COLLAPSE_SETTINGS,
        'train_cfg.max_iters=400', 'default_hooks.checkpoint.interval=20',
        'default_hooks.checkpoint.max_keep_ckpts=100', 'default_hooks.logger.interval=10',
        'custom_hooks.1.interval=1000',
        'custom_hooks.2.interval=5', 'custom_hooks.2.window=10', 'custom_hooks.2.patience=30',
        'custom_hooks.2.diversity_interval=10', 'custom_hooks.2.start_iters=0',
    ]
    cmd = [sys.executable, osp.join(REPO, 'tools/train.py'),
           osp.join(REPO, 'configs/introvae_fashionmnist32.py'), '--work-dir', str(work),
           '--cfg-options', *options]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200,
                            env=dict(__import__('os').environ, OMP_NUM_THREADS='1'))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert 'IntrospectionCollapseError' in out and 'collapsed' in out, out[-3000:]
    assert 'IntrospectionMonitorHook: iteration' in out  # warned before stopping
    assert 'out of balance for' in out and ('L_AE = ' in out or 'KL(real) = ' in out)
    assert 'model.vae_warmup_iters' in out and 'before the imbalance began' in out
    assert not osp.isfile(work / 'iter_400.pth')  # stopped early
    assert osp.isfile(work / 'iter_20.pth')


# Found by trial: a huge margin and hinge weight and a tiny L_AE weight; the tiny network's L_AE
# doubles about 60 iterations after the warm-up and the run stops near iteration 115 (57 s here).
COLLAPSE_SETTINGS = ['model.vae_warmup_iters=20', 'model.m=1000.0', 'model.alpha=10.0',
                     'model.beta=0.01']


def test_diversity_of_an_mmagic_generator_reads_its_noise_size():
    # MMagic's generators state their latent size as noise_size only (no latent_dim):
    # the monitor must sample from them like from the residual generator.
    import mmintrovae  # noqa: F401 (the DCGAN init_weights fix)
    from mmagic.registry import MODELS
    generator = MODELS.build(dict(type='DCGANGenerator', output_scale=16, out_channels=1,
                                  base_channels=16, noise_size=8))
    assert not hasattr(generator, 'latent_dim')
    hook = IntrospectionMonitorHook(num_samples=4)
    value = hook.measure_diversity(SimpleNamespace(generator=generator))
    assert value > 0 and math.isfinite(value)
    assert hook._noise.shape == (4, 8)
