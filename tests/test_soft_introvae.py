"""The Soft-IntroVAE training step, pinned against hand computations.

As in test_introvae_step.py, the optimizers are SGD with lr=1, so each
network's update is exactly minus the gradient it received. The expected
gradients are autograd gradients of the losses written out by hand below
(Daniel & Tamar, CVPR 2021, with the reductions of the authors' code), on a
copy of the model taken before the step and the same noise.
"""
import copy
import os.path as osp

import pytest
import torch
from mmengine import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict

from mmintrovae.models import SoftIntroVAE, kl_divergence, reconstruction_error, reparameterize
from conftest import REPO, make_batch, snapshot

# Non-default values everywhere, so a swapped or dropped weight shows. gamma_r
# is far above the authors' 1e-8 so that its gradient is measurable.
HYPER = dict(beta_rec=0.7, beta_kl=0.9, beta_neg=30.0, gamma_r=0.3, alpha=1.5)
SEED = 5
# (image_size, image_channels, channels): s = 1/3072 and s = 1/4096.
SHAPES = [(32, 3, (8, 16, 16)), (64, 1, (8, 8, 16, 16))]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads; with two OpenMP threads on a loaded
    2-core machine the hand-computation tests ran 50-100x slower (spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def at_iter():
    hub = MessageHub.get_current_instance()

    def set_iter(i):
        hub.update_info('iter', i)

    set_iter(0)
    yield set_iter
    set_iter(0)


def build(image_size=32, image_channels=3, channels=(8, 16, 16), lr_encoder=1.0,
          lr_generator=1.0, **kwargs):
    """A tiny SoftIntroVAE with SGD optimizers (update = -lr * gradient)."""
    torch.manual_seed(0)
    model = SoftIntroVAE(
        encoder=dict(type='IntroVAEEncoder'),
        generator=dict(type='IntroVAEGenerator'),
        architecture=dict(image_size=image_size, channels=channels, latent_dim=8,
                          image_channels=image_channels),
        data_preprocessor=dict(type='DataPreprocessor', mean=[0.0] * image_channels,
                               std=[255.0] * image_channels),
        **{**HYPER, **kwargs})
    wrappers = OptimWrapperDict(
        encoder=OptimWrapper(torch.optim.SGD(model.encoder.parameters(), lr=lr_encoder)),
        generator=OptimWrapper(torch.optim.SGD(model.generator.parameters(), lr=lr_generator)))
    return model, wrappers


def run_step(model, wrappers, batch):
    torch.manual_seed(SEED)
    return model.train_step(batch, wrappers)


def received_grads(before, module):
    return [before[k] - v.detach() for k, v in module.named_parameters()]


def grads(loss, module):
    return torch.autograd.grad(loss, list(module.parameters()), retain_graph=True,
                               allow_unused=True)


def same(actual, expected, rtol=1e-4, atol=1e-6):
    return all(torch.allclose(a, torch.zeros_like(a) if e is None else e, rtol=rtol, atol=atol)
               for a, e in zip(actual, expected))


def differ(actual, expected):
    return not same(actual, expected, rtol=1e-3, atol=1e-5)


def sse(a, b):
    """Per image: sum of squared errors over C*H*W."""
    return ((a - b) ** 2).flatten(1).sum(1)


def kl(mu, logvar):
    """Per image: KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dimensions."""
    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)


def encoder_pass(ref, x):
    """The encoder step's forward passes, drawing noise in train_step's order."""
    torch.manual_seed(SEED)
    f = {}
    f['mu'], f['logvar'] = ref.encoder(x)
    # the authors' order: z_p before eps, G(z_p) before G(z)
    z_p = torch.randn_like(f['mu'])
    z = reparameterize(f['mu'], f['logvar'])
    f['x_p'] = ref.generator(z_p)
    f['x_r'] = ref.generator(z)
    for name, img in (('r', f['x_r'].detach()), ('p', f['x_p'].detach())):
        mu, logvar = ref.encoder(img)
        f[f'kl_{name}'] = kl(mu, logvar)
        f[f'sse_{name}'] = sse(ref.generator(reparameterize(mu, logvar)), img)
    return f


def hand_encoder_loss(f, x, scale, beta_rec, beta_kl, beta_neg, alpha, **_):
    real = scale * (beta_rec * sse(f['x_r'], x).mean() + beta_kl * kl(f['mu'], f['logvar']).mean())
    exp_r = torch.exp(-alpha * scale * (beta_rec * f['sse_r'] + beta_neg * f['kl_r'])).mean()
    exp_p = torch.exp(-alpha * scale * (beta_rec * f['sse_p'] + beta_neg * f['kl_p'])).mean()
    return real + 0.5 / alpha * (exp_r + exp_p), exp_r, exp_p


def hand_decoder_loss(encoder, x_r, x_p, x, scale, beta_rec, beta_kl, gamma_r, generator,
                      detach_z=True, **_):
    """L_D with ``encoder`` (the updated one); noise continues after encoder_pass."""
    mu_r, logvar_r = encoder(x_r)
    mu_p, logvar_p = encoder(x_p)
    z_r, z_p = reparameterize(mu_r, logvar_r), reparameterize(mu_p, logvar_p)
    if detach_z:
        z_r, z_p = z_r.detach(), z_p.detach()
    sse_rr = sse(generator(z_r), x_r.detach()).mean()
    sse_pr = sse(generator(z_p), x_p.detach()).mean()
    kl_r, kl_p = kl(mu_r, logvar_r).mean(), kl(mu_p, logvar_p).mean()
    loss = scale * (beta_rec * sse(x_r, x).mean() + 0.5 * beta_kl * (kl_r + kl_p) +
                    gamma_r * 0.5 * beta_rec * (sse_rr + sse_pr))
    return loss, dict(kl_rec_g=kl_r, kl_fake_g=kl_p, loss_rec_rec_g=sse_rr,
                      loss_rec_fake_g=sse_pr, loss_generator=loss)


@pytest.mark.parametrize('size,ch,channels', SHAPES)
def test_encoder_step_is_L_E_with_exp_elbo_of_detached_generated_images(size, ch, channels):
    model, wrappers = build(size, ch, channels)
    ref = copy.deepcopy(model)
    batch, x = make_batch(size=size, channels=ch)
    before = snapshot(model.encoder)
    log = run_step(model, wrappers, batch)

    scale = 1.0 / (ch * size * size)
    f = encoder_pass(ref, x)
    loss_e, exp_r, exp_p = hand_encoder_loss(f, x, scale, **HYPER)
    expected_log = dict(loss_encoder=loss_e, exp_elbo_rec=exp_r, exp_elbo_fake=exp_p,
                        kl_real=kl(f['mu'], f['logvar']).mean(), loss_ae=sse(f['x_r'], x).mean(),
                        kl_rec=f['kl_r'].mean(), kl_fake=f['kl_p'].mean(),
                        loss_rec_rec=f['sse_r'].mean(), loss_rec_fake=f['sse_p'].mean())
    for key, value in expected_log.items():
        assert log[key].item() == pytest.approx(value.item(), rel=1e-5), key
    # The exponential terms are neither saturated at 1 nor vanishing: they count.
    assert 0.05 < exp_r.item() < 0.95 and 0.05 < exp_p.item() < 0.95

    actual = received_grads(before, model.encoder)
    assert same(actual, grads(loss_e, ref.encoder))

    # Each plausible mistake gives a different encoder gradient.
    def mutant(**changes):
        g = dict(f, **changes.pop('f', {}))
        return hand_encoder_loss(g, x, changes.pop('scale', scale), **{**HYPER, **changes})[0]

    torch.manual_seed(SEED)
    mu, logvar = ref.encoder(x)
    z_p = torch.randn_like(mu)
    z = reparameterize(mu, logvar)
    ref.generator(z_p)
    x_r = ref.generator(z)
    mu_rr, logvar_rr = ref.encoder(x_r)  # x_r not detached
    leaky_input = sse(ref.generator(reparameterize(mu_rr, logvar_rr)), x_r)
    mu_rr, logvar_rr = ref.encoder(f['x_r'].detach())
    leaky_target = sse(ref.generator(reparameterize(mu_rr, logvar_rr)), f['x_r'])
    mutants = {
        'no scale': mutant(scale=1.0),
        # s follows the image shape: the other test shape's s is wrong here
        'the other shape\'s scale': mutant(scale=1 / 4096 if scale == 1 / 3072 else 1 / 3072),
        'beta_kl for beta_neg': mutant(beta_neg=HYPER['beta_kl']),
        'no re-decoding': mutant(f=dict(sse_r=0 * f['sse_r'], sse_p=0 * f['sse_p'])),
        'x_r not detached before re-encoding': mutant(
            f=dict(sse_r=leaky_input, kl_r=kl(*ref.encoder(f['x_r'])))),
        'official code: x_r not detached as the target': mutant(f=dict(sse_r=leaky_target)),
        'alpha = 2 (the default)': mutant(alpha=2.0),
    }
    if ch > 1:
        mutants['scale without channels'] = mutant(scale=1.0 / (size * size))
    for name, loss in mutants.items():
        assert differ(actual, grads(loss, ref.encoder)), name
    # The exponential of the batch-mean ELBO instead of the mean of exponentials:
    elbo_r = -(HYPER['beta_rec'] * f['sse_r'] + HYPER['beta_neg'] * f['kl_r'])
    elbo_p = -(HYPER['beta_rec'] * f['sse_p'] + HYPER['beta_neg'] * f['kl_p'])
    a = HYPER['alpha']
    exp_of_mean = scale * (HYPER['beta_rec'] * sse(f['x_r'], x).mean() +
                           HYPER['beta_kl'] * kl(f['mu'], f['logvar']).mean()) + 0.5 / a * (
        torch.exp(a * scale * elbo_r.mean()) + torch.exp(a * scale * elbo_p.mean()))
    assert differ(actual, grads(exp_of_mean, ref.encoder))


@pytest.mark.parametrize('size,ch,channels', SHAPES)
def test_decoder_step_is_L_D_with_updated_encoder_and_detached_re_decoding(size, ch, channels):
    model, wrappers = build(size, ch, channels)
    ref = copy.deepcopy(model)
    batch, x = make_batch(size=size, channels=ch)
    before = snapshot(model.generator)
    log = run_step(model, wrappers, batch)
    actual = received_grads(before, model.generator)

    scale = 1.0 / (ch * size * size)
    f = encoder_pass(ref, x)
    rng = torch.get_rng_state()  # the decoder step's noise continues from here
    encoder_after = copy.deepcopy(ref.encoder)
    encoder_after.load_state_dict(model.encoder.state_dict())

    def loss_d(encoder=encoder_after, x_p=f['x_p'], **changes):
        torch.set_rng_state(rng)
        return hand_decoder_loss(encoder, f['x_r'], x_p, x, changes.pop('scale', scale),
                                 generator=ref.generator, **{**HYPER, **changes})

    expected, terms = loss_d()
    for key, value in terms.items():
        assert log[key].item() == pytest.approx(value.item(), rel=1e-5), key
    assert same(actual, grads(expected, ref.generator))

    mutants = {
        'stale encoder': loss_d(encoder=ref.encoder)[0],
        'detached prior samples': loss_d(x_p=f['x_p'].detach())[0],
        're-decoding from a non-detached z': loss_d(detach_z=False)[0],
        'no gamma_r term': loss_d(gamma_r=0.0)[0],
        'beta_neg for beta_kl': loss_d(beta_kl=HYPER['beta_neg'])[0],
        'no scale': loss_d(scale=1.0)[0],
        'the other shape\'s scale': loss_d(scale=1 / 4096 if scale == 1 / 3072 else 1 / 3072)[0],
    }
    for name, loss in mutants.items():
        assert differ(actual, grads(loss, ref.generator)), name


def test_beta_neg_reaches_only_the_encoder_and_gamma_r_only_the_decoder():
    """Which network each term reaches, read from the updates themselves.

    beta_neg appears only in the encoder's exponential ELBO terms, gamma_r only
    in the decoder's re-reconstruction term. The encoder's learning rate is 0
    here, so both runs' decoder steps see the same encoder.
    """
    # The encoder's gradients are zeroed after its step: read them with a hook.
    def encoder_grads(**hyper):
        model, wrappers = build(lr_encoder=0.0, **hyper)
        seen = []
        opt = wrappers['encoder'].optimizer
        step = opt.step

        def spy(*args, **kwargs):
            seen.extend(p.grad.clone() for p in model.encoder.parameters())
            return step(*args, **kwargs)

        opt.step = spy
        gen = snapshot(model.generator)
        run_step(model, wrappers, make_batch()[0])
        return seen, received_grads(gen, model.generator)

    enc_a, gen_a = encoder_grads()
    enc_neg, gen_neg = encoder_grads(beta_neg=3 * HYPER['beta_neg'])
    enc_gam, gen_gam = encoder_grads(gamma_r=3 * HYPER['gamma_r'])
    assert differ(enc_neg, enc_a) and same(gen_neg, gen_a, rtol=1e-5, atol=1e-7)
    assert same(enc_gam, enc_a, rtol=1e-5, atol=1e-7) and differ(gen_gam, gen_a)


def test_decoder_step_leaves_the_encoder_and_encoder_step_the_decoder():
    # Decoder lr 0: the encoder's update is its own gradient only (pinned above),
    # and with encoder lr 0 the encoder stays put through the decoder step.
    model, wrappers = build(lr_encoder=0.0)
    enc = snapshot(model.encoder)
    run_step(model, wrappers, make_batch()[0])
    assert all(torch.equal(enc[k], v) for k, v in model.encoder.named_parameters())
    model, wrappers = build(lr_generator=0.0)
    gen = snapshot(model.generator)
    run_step(model, wrappers, make_batch()[0])
    assert all(torch.equal(gen[k], v) for k, v in model.generator.named_parameters())


def count_forward_calls(model):
    calls = dict(encoder=0, generator=0)
    for name in calls:
        def hook(*_, name=name):
            calls[name] += 1
        getattr(model, name).register_forward_hook(hook)
    return calls


@pytest.mark.parametrize('size,ch,channels', SHAPES)
def test_vae_warmup_is_a_plain_scaled_vae_step(size, ch, channels, at_iter):
    model, wrappers = build(size, ch, channels, vae_warmup_iters=3)
    ref = copy.deepcopy(model)
    batch, x = make_batch(size=size, channels=ch)
    enc, gen = snapshot(model.encoder), snapshot(model.generator)
    calls = count_forward_calls(model)
    at_iter(2)
    log = run_step(model, wrappers, batch)
    assert calls == dict(encoder=1, generator=1)
    assert log['introspective'].item() == 0.0

    torch.manual_seed(SEED)
    mu, logvar = ref.encoder(x)
    x_r = ref.generator(reparameterize(mu, logvar))
    scale = 1.0 / (ch * size * size)
    loss = scale * (HYPER['beta_rec'] * sse(x_r, x).mean() + HYPER['beta_kl'] * kl(mu, logvar).mean())
    assert log['loss_encoder'].item() == pytest.approx(loss.item(), rel=1e-5)
    assert same(received_grads(enc, model.encoder), grads(loss, ref.encoder))
    assert same(received_grads(gen, model.generator), grads(loss, ref.generator))


def test_introspection_starts_after_warmup_with_5_encoder_and_6_decoder_passes(at_iter):
    model, wrappers = build(vae_warmup_iters=3)
    calls = count_forward_calls(model)
    at_iter(3)
    log = run_step(model, wrappers, make_batch()[0])
    assert calls == dict(encoder=5, generator=6)
    assert log['introspective'].item() == 1.0


LOSS_KEYS = ['loss_encoder', 'loss_generator', 'loss_ae', 'kl_real', 'kl_rec', 'kl_fake',
             'kl_rec_g', 'kl_fake_g', 'exp_elbo_rec', 'exp_elbo_fake', 'loss_rec_rec',
             'loss_rec_fake', 'loss_rec_rec_g', 'loss_rec_fake_g']


def test_every_term_is_logged_in_fp32_and_finite():
    model, wrappers = build(beta_rec=1.0, beta_kl=1.0, beta_neg=256.0, gamma_r=1e-8, alpha=2.0)
    log = run_step(model, wrappers, make_batch()[0])
    assert set(LOSS_KEYS) <= set(log)
    for key in LOSS_KEYS:
        assert log[key].dtype == torch.float32 and torch.isfinite(log[key]), key


def test_authors_defaults():
    import inspect
    defaults = {k: p.default for k, p in inspect.signature(SoftIntroVAE).parameters.items()}
    assert defaults['beta_rec'] == 1.0 and defaults['beta_kl'] == 1.0
    assert defaults['beta_neg'] == 256.0 and defaults['gamma_r'] == 1e-8
    assert defaults['alpha'] == 2.0 and defaults['vae_warmup_iters'] == 0
    model, _ = build()
    assert not hasattr(model, 'm') and not hasattr(model, 'alpha_generator')
    with pytest.raises(ValueError, match='alpha'):
        build(alpha=0.0)


def poisoned_batch():
    batch, _ = make_batch()
    batch['data_samples'][1].gt_img[0, 3, 3] = float('nan')
    return batch


def test_divergence_guard_skips_bad_iterations_and_names_soft_hyper_parameters():
    model, wrappers = build(max_bad_iterations=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = run_step(model, wrappers, poisoned_batch())
    assert not torch.isfinite(log['loss_encoder'])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BatchNorm statistics
    with pytest.raises(FloatingPointError, match='diverged.*last_checkpoint.*model.beta_neg'):
        run_step(model, wrappers, poisoned_batch())


# ------------------------------------------------------------------ configs
def load(config):
    from mmengine.config import Config
    return Config.fromfile(osp.join(REPO, 'configs', config))


def build_model(cfg):
    from mmagic.registry import MODELS
    import mmintrovae  # noqa: F401
    return MODELS.build(cfg.model)


def test_config_switch_builds_soft_introvae_on_the_introvae_recipe():
    soft, base = load('softintrovae_fashionmnist32.py'), load('introvae_fashionmnist32.py')
    model = build_model(soft)
    assert type(model) is SoftIntroVAE
    assert (model.beta_rec, model.beta_kl, model.beta_neg, model.gamma_r, model.alpha,
            model.vae_warmup_iters) == (1.0, 1.0, 256.0, 1e-8, 2.0, 0)
    # Only the objective differs: networks, data, optimizers and schedule are inherited.
    for key in ('architecture', 'encoder', 'generator', 'data_preprocessor'):
        assert soft.model[key] == base.model[key], key
    for key in ('optim_wrapper', 'train_dataloader', 'train_cfg', 'val_evaluator'):
        assert soft[key] == base[key], key
    assert type(build_model(base)).__name__ == 'IntroVAE'


@pytest.mark.parametrize('config,size,expected', [
    ('softintrovae_emoji64.py', 64, dict(beta_rec=1.0, beta_kl=1.0, beta_neg=256.0)),
    ('softintrovae_celebahq256.py', 256, dict(beta_rec=1.0, beta_kl=0.5, beta_neg=1024.0)),
])
def test_other_soft_recipes(config, size, expected):
    cfg = load(config)
    assert cfg.model.type == 'SoftIntroVAE'
    assert cfg.model.architecture.image_size == size
    for key, value in expected.items():
        assert cfg.model[key] == value, key
    assert not {'m', 'beta', 'alpha_generator'} & set(cfg.model)
    if size == 256:  # the authors' CelebA-HQ 256 setting
        assert cfg.model.architecture.latent_dim == 256
        assert tuple(cfg.model.architecture.channels) == (64, 128, 256, 512, 512, 512)
        assert cfg.train_dataloader.batch_size == 8
    else:
        assert type(build_model(cfg)) is SoftIntroVAE


def test_vae_baseline_recipe_never_runs_introspective_passes(at_iter):
    cfg = load('vae_fashionmnist32.py')
    model = build_model(cfg)
    assert type(model).__name__ == 'IntroVAE'
    assert model.alpha == 0 and model.alpha_generator == 0
    wrappers = OptimWrapperDict(
        encoder=OptimWrapper(torch.optim.SGD(model.encoder.parameters(), lr=0.0)),
        generator=OptimWrapper(torch.optim.SGD(model.generator.parameters(), lr=0.0)))
    calls = count_forward_calls(model)
    at_iter(cfg.train_cfg.max_iters - 1)  # the last iteration, long after any warm-up
    log = run_step(model, wrappers, make_batch(size=32, channels=1)[0])
    assert calls == dict(encoder=1, generator=1)
    assert log['alpha'].item() == 0.0
    assert load('introvae_fashionmnist32.py').train_cfg == cfg.train_cfg


# ------------------------------------------------------------ end to end
@pytest.mark.slow
@pytest.mark.parametrize('config,keys', [
    ('configs/softintrovae_fashionmnist32.py', LOSS_KEYS),
    ('configs/vae_fashionmnist32.py', ['loss_encoder', 'loss_generator', 'loss_ae', 'kl_real']),
])
def test_fashionmnist_recipe_trains_with_every_loss_logged(tmp_path, config, keys):
    from _images import write_image_folder
    from test_train_recipes import logged_scalars, train
    data = write_image_folder(tmp_path / 'images', 4, 32, mode='L')
    work = tmp_path / 'work'
    # model.vae_warmup_iters=1 (set by train()): iteration 1 is a VAE step, 2 introspective.
    result = train(config, work, data, 32)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert osp.isfile(work / 'iter_2.pth')
    last = [r for r in logged_scalars(work) if r.get('iter') == 2]
    assert last
    for key in keys:
        assert key in last[0], (key, last[0])


def test_channels_last_changes_the_layout_not_the_step():
    batch = make_batch()[0]
    updates, logs = {}, {}
    for channels_last in (False, True):
        model, wrappers = build(channels_last=channels_last)
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        logs[channels_last] = run_step(model, wrappers, batch)
        updates[channels_last] = received_grads(before, model)
        if channels_last:
            assert all(p.is_contiguous(memory_format=torch.channels_last)
                       for p in model.parameters() if p.ndim == 4)
    for key, value in logs[False].items():
        assert logs[True][key].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-6), key
    for plain, nhwc in zip(updates[False], updates[True]):
        assert torch.allclose(nhwc, plain, rtol=1e-3, atol=1e-4 * max(1.0, plain.abs().max()))


@pytest.mark.parametrize('config', ['introvae_emoji64.py', 'introvae_fashionmnist32.py',
                                    'softintrovae_emoji64.py', 'softintrovae_fashionmnist32.py',
                                    'vae_fashionmnist32.py'])
def test_cpu_recipes_train_in_channels_last(config):
    from mmengine.config import Config

    from mmagic.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    model = MODELS.build(cfg.model)
    assert model.channels_last
    assert model.encoder.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    arch = cfg.model.architecture
    x = model.training_images(make_batch(n=2, size=arch.image_size,
                                         channels=arch.image_channels)[0])
    assert x.is_contiguous(memory_format=torch.channels_last)
