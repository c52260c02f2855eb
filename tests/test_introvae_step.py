"""The introspective training step, pinned against hand computations.

Optimizers are SGD with lr=1, so each network's update is exactly minus the
gradient it received; every expected gradient below is computed by hand from
the paper's losses on a copy of the model taken before the step.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine import MessageHub

from mmintrovae.models import kl_divergence, reconstruction_error, reparameterize
from conftest import make_batch, snapshot

HYPER = dict(m=1e4, alpha=0.3, beta=0.7, alpha_generator=0.4)  # m large: both hinges active
SEED = 5


@pytest.fixture(autouse=True)
def at_iter():
    hub = MessageHub.get_current_instance()

    def set_iter(i):
        hub.update_info('iter', i)

    set_iter(0)
    yield set_iter
    set_iter(0)


def received_grads(before, module):
    return {k: before[k] - v.detach() for k, v in module.named_parameters()}


def assert_grads_equal(actual, expected_list, module, rtol=1e-4, atol=1e-6):
    for (name, _), exp in zip(module.named_parameters(), expected_list):
        assert torch.allclose(actual[name], exp, rtol=rtol, atol=atol), name


def assert_grads_close(actual, expected_list, module):
    """assert_grads_equal with an absolute tolerance relative to each tensor's largest
    gradient: the chain rule taken in another order rounds differently."""
    for (name, _), exp in zip(module.named_parameters(), expected_list):
        atol = 1e-6 * max(1.0, exp.abs().max().item())
        assert torch.allclose(actual[name], exp, rtol=1e-4, atol=atol), name


def grads_differ(actual, expected_list, module):
    return any(not torch.allclose(actual[name], exp, rtol=1e-3, atol=1e-5)
               for (name, _), exp in zip(module.named_parameters(), expected_list))


def hand_forward(ref, x):
    """The forward passes of one step in the official order (main.py's train): z_p is
    drawn first and G(z_p) decoded, then E(x), eps and G(z)."""
    torch.manual_seed(SEED)
    z_p = torch.randn(x.shape[0], ref.generator.latent_dim)
    x_p = ref.generator(z_p)
    mu, logvar = ref.encoder(x)
    x_r = ref.generator(reparameterize(mu, logvar))
    return mu, logvar, x_r, x_p


def run_step(model, wrappers, batch):
    torch.manual_seed(SEED)
    return model.train_step(batch, wrappers)


def test_encoder_step_is_L_E_with_detached_hinge_inputs(tiny_introvae):
    model, wrappers = tiny_introvae(**HYPER)
    ref = copy.deepcopy(model)
    batch, x = make_batch()
    enc_before = snapshot(model.encoder)
    log = run_step(model, wrappers, batch)

    mu, logvar, x_r, x_p = hand_forward(ref, x)
    l_reg_real = kl_divergence(mu, logvar).mean()
    l_ae = reconstruction_error(x_r, x).mean()
    l_reg_rec = kl_divergence(*ref.encoder(x_r.detach())).mean()
    l_reg_fake = kl_divergence(*ref.encoder(x_p.detach())).mean()
    m, alpha, beta = HYPER['m'], HYPER['alpha'], HYPER['beta']
    loss_e = l_reg_real + alpha * (F.relu(m - l_reg_rec) + F.relu(m - l_reg_fake)) + beta * l_ae

    for key, value in dict(kl_real=l_reg_real, loss_ae=l_ae, kl_rec=l_reg_rec,
                           kl_fake=l_reg_fake, loss_encoder=loss_e).items():
        assert log[key].item() == pytest.approx(value.item(), rel=1e-5), key
    expected = torch.autograd.grad(loss_e, list(ref.encoder.parameters()), retain_graph=True)
    actual = received_grads(enc_before, model.encoder)
    assert_grads_equal(actual, expected, model.encoder)

    # The same loss with the hinge inputs *not* detached sends the hinge
    # through the generator back into the encoder: a different gradient.
    leaky = l_reg_real + beta * l_ae + alpha * (
        F.relu(m - kl_divergence(*ref.encoder(x_r)).mean()) +
        F.relu(m - kl_divergence(*ref.encoder(x_p)).mean()))
    assert grads_differ(actual, torch.autograd.grad(leaky, list(ref.encoder.parameters())),
                        model.encoder)


def test_generator_step_is_L_G_with_updated_encoder(tiny_introvae):
    model, wrappers = tiny_introvae(**HYPER)
    ref = copy.deepcopy(model)
    batch, x = make_batch()
    gen_before = snapshot(model.generator)
    log = run_step(model, wrappers, batch)
    actual = received_grads(gen_before, model.generator)

    _, _, x_r, x_p = hand_forward(ref, x)
    encoder_after = copy.deepcopy(ref.encoder)
    encoder_after.load_state_dict(model.encoder.state_dict())
    l_ae = reconstruction_error(x_r, x).mean()
    a_g, beta, m = HYPER['alpha_generator'], HYPER['beta'], HYPER['m']

    def loss_g(encoder, x_r, x_p, with_ae=True, hinge=False):
        kl_r = kl_divergence(*encoder(x_r)).mean()
        kl_p = kl_divergence(*encoder(x_p)).mean()
        adv = (F.relu(m - kl_r) + F.relu(m - kl_p)) if hinge else (kl_r + kl_p)
        return a_g * adv + (beta * l_ae if with_ae else 0), kl_r, kl_p

    def grads(loss):
        return torch.autograd.grad(loss, list(ref.generator.parameters()), retain_graph=True)

    expected, kl_r, kl_p = loss_g(encoder_after, x_r, x_p)
    assert log['kl_rec_g'].item() == pytest.approx(kl_r.item(), rel=1e-5)
    assert log['kl_fake_g'].item() == pytest.approx(kl_p.item(), rel=1e-5)
    assert log['loss_generator'].item() == pytest.approx(expected.item(), rel=1e-5)
    assert_grads_equal(actual, grads(expected), model.generator)

    # Each bug that other ports shipped gives a different generator gradient:
    mutants = {
        'stale encoder': loss_g(ref.encoder, x_r, x_p)[0],
        'no L_AE': loss_g(encoder_after, x_r, x_p, with_ae=False)[0],
        'detached prior samples': loss_g(encoder_after, x_r, x_p.detach())[0],
        'hinge on generator side': loss_g(encoder_after, x_r, x_p, hinge=True)[0],
    }
    for name, loss in mutants.items():
        assert grads_differ(actual, grads(loss), model.generator), name


@pytest.mark.parametrize('update_mode', ['alternating', 'simultaneous'])
def test_generator_batchnorm_statistics_follow_the_official_order(tiny_introvae, update_mode):
    """G's running statistics after one step are those of G(z_p) then G(z), with z_p
    drawn before eps, as in the official train(); the other order gives others."""
    model, wrappers = tiny_introvae(update_mode=update_mode, **HYPER)
    official, swapped = copy.deepcopy(model), copy.deepcopy(model)
    batch, x = make_batch()
    run_step(model, wrappers, batch)

    torch.manual_seed(SEED)
    z_p = torch.randn(x.shape[0], official.generator.latent_dim)  # noise, before eps
    with torch.no_grad():
        official.generator(z_p)  # fake = model.sample(noise)
        mu, logvar = official.encoder(x)  # model(real): encode, eps, decode
        z = reparameterize(mu, logvar)
        official.generator(z)
        swapped.generator(z)  # the same draws, decoded the other way round
        swapped.generator(z_p)
    expected = dict(official.generator.named_buffers())
    other = dict(swapped.generator.named_buffers())
    running = [name for name in expected if 'running' in name]
    assert running
    for name, buf in model.generator.named_buffers():
        assert torch.allclose(buf, expected[name], rtol=1e-6, atol=1e-8), name
    assert any(not torch.allclose(model.generator.get_buffer(name), other[name],
                                  rtol=1e-5, atol=1e-7) for name in running)


def test_generator_loss_reaches_decoder_through_reconstructions_and_samples(tiny_introvae):
    model, _ = tiny_introvae(**HYPER)
    x = torch.rand(4, 3, 32, 32)
    _, _, x_r, x_p = hand_forward(model, x)
    params = list(model.generator.parameters())
    for branch in (x_r, x_p):
        g = torch.autograd.grad(kl_divergence(*model.encoder(branch)).mean(), params,
                                retain_graph=True)
        assert sum(t.abs().sum() for t in g) > 0


def test_L_AE_reaches_both_networks(tiny_introvae):
    model, _ = tiny_introvae(**HYPER)
    x = torch.rand(4, 3, 32, 32)
    _, _, x_r, _ = hand_forward(model, x)
    l_ae = reconstruction_error(x_r, x).mean()
    for net in (model.encoder, model.generator):
        g = torch.autograd.grad(l_ae, list(net.parameters()), retain_graph=True,
                                allow_unused=True)
        assert sum(t.abs().sum() for t in g if t is not None) > 0


def official_train_vae(ref, x):
    """The official train_vae by hand: loss = L_AE + L_REG(E(x)) (weight 1 on L_AE,
    whatever beta is), one backward, both optimizers step. Returns the loss and
    each network's gradients."""
    torch.manual_seed(SEED)  # no prior sample in train_vae: eps is the first draw
    mu, logvar = ref.encoder(x)
    x_r = ref.generator(reparameterize(mu, logvar))
    l_reg, l_ae = kl_divergence(mu, logvar).mean(), reconstruction_error(x_r, x).mean()
    loss = l_ae + l_reg
    enc_params, gen_params = list(ref.encoder.parameters()), list(ref.generator.parameters())
    grads = torch.autograd.grad(loss, enc_params + gen_params)
    return (loss, l_reg, l_ae), grads[:len(enc_params)], grads[len(enc_params):]


@pytest.mark.parametrize('update_mode', ['alternating', 'simultaneous'])
def test_vae_warmup_is_the_official_train_vae(tiny_introvae, at_iter, update_mode):
    model, wrappers = tiny_introvae(vae_warmup_iters=3, update_mode=update_mode, **HYPER)
    ref = copy.deepcopy(model)
    batch, x = make_batch()
    enc_before, gen_before = snapshot(model.encoder), snapshot(model.generator)
    calls = count_forward_calls(model)
    at_iter(2)  # still inside the warm-up
    log = run_step(model, wrappers, batch)
    assert log['alpha'].item() == 0.0
    assert calls == dict(encoder=1, generator=1)

    (loss, l_reg, l_ae), enc_expected, gen_expected = official_train_vae(ref, x)
    for key, value in dict(loss_encoder=loss, kl_real=l_reg, loss_ae=l_ae,
                           loss_generator=l_ae).items():
        assert log[key].item() == pytest.approx(value.item(), rel=1e-5), key
    enc_actual = received_grads(enc_before, model.encoder)
    gen_actual = received_grads(gen_before, model.generator)
    assert_grads_equal(enc_actual, enc_expected, model.encoder)
    assert_grads_equal(gen_actual, gen_expected, model.generator)

    # The paper's reading (L_E, L_G with alpha = 0: L_AE weighted by beta = 0.7) moves
    # both networks differently.
    torch.manual_seed(SEED)
    mu, logvar = ref.encoder(x)
    x_r = ref.generator(reparameterize(mu, logvar))
    paper = kl_divergence(mu, logvar).mean() + HYPER['beta'] * reconstruction_error(x_r, x).mean()
    enc_paper = torch.autograd.grad(paper, list(ref.encoder.parameters()), retain_graph=True)
    assert grads_differ(enc_actual, enc_paper, model.encoder)
    assert grads_differ(gen_actual, torch.autograd.grad(paper, list(ref.generator.parameters())),
                        model.generator)


def test_paper_warmup_weighs_L_AE_by_beta(tiny_introvae, at_iter):
    model, wrappers = tiny_introvae(vae_warmup_iters=3, vae_warmup_loss='paper', **HYPER)
    ref = copy.deepcopy(model)
    batch, x = make_batch()
    enc_before, gen_before = snapshot(model.encoder), snapshot(model.generator)
    at_iter(2)
    log = run_step(model, wrappers, batch)

    torch.manual_seed(SEED)
    mu, logvar = ref.encoder(x)
    x_r = ref.generator(reparameterize(mu, logvar))
    beta = HYPER['beta']
    vae_loss = kl_divergence(mu, logvar).mean() + beta * reconstruction_error(x_r, x).mean()
    assert log['loss_encoder'].item() == pytest.approx(vae_loss.item(), rel=1e-5)
    vae_loss.backward()
    assert_grads_equal(received_grads(enc_before, model.encoder),
                       [p.grad for p in ref.encoder.parameters()], model.encoder)
    assert_grads_equal(received_grads(gen_before, model.generator),
                       [p.grad for p in ref.generator.parameters()], model.generator)


@pytest.mark.parametrize('form', ['official', 'paper'])
def test_L_AE_is_weighted_by_beta_after_the_warmup(tiny_introvae, at_iter, form):
    model, wrappers = tiny_introvae(vae_warmup_iters=3, vae_warmup_loss=form, **HYPER)
    at_iter(3)  # the first introspective iteration
    log = {k: v.item() for k, v in run_step(model, wrappers, make_batch()[0]).items()}
    m, alpha, beta, a_g = HYPER['m'], HYPER['alpha'], HYPER['beta'], HYPER['alpha_generator']
    expected_e = log['kl_real'] + beta * log['loss_ae'] + alpha * (
        max(m - log['kl_rec'], 0) + max(m - log['kl_fake'], 0))
    expected_g = beta * log['loss_ae'] + a_g * (log['kl_rec_g'] + log['kl_fake_g'])
    assert log['loss_encoder'] == pytest.approx(expected_e, rel=1e-5)
    assert log['loss_generator'] == pytest.approx(expected_g, rel=1e-5)


def test_invalid_vae_warmup_loss_names_the_key(tiny_introvae):
    with pytest.raises(ValueError, match="vae_warmup_loss.*'official'.*'paper'.*'beta'"):
        tiny_introvae(vae_warmup_loss='beta')


def test_divergence_guard_in_the_warmup(tiny_introvae, at_iter):
    model, wrappers = tiny_introvae(lr=1e-4, vae_warmup_iters=3, max_bad_iterations=2, **HYPER)
    at_iter(0)
    run_step(model, wrappers, make_batch()[0])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    at_iter(1)
    log = run_step(model, wrappers, poisoned_batch())
    assert log['alpha'].item() == 0.0 and not torch.isfinite(log['loss_encoder'])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BatchNorm statistics
    with pytest.raises(FloatingPointError):
        run_step(model, wrappers, poisoned_batch())


def test_introspection_starts_after_warmup(tiny_introvae, at_iter):
    model, wrappers = tiny_introvae(vae_warmup_iters=3, **HYPER)
    at_iter(3)
    log = run_step(model, wrappers, make_batch()[0])
    assert log['alpha'].item() == pytest.approx(HYPER['alpha'])
    assert {'kl_rec', 'kl_fake', 'kl_rec_g', 'kl_fake_g'} <= set(log)


def count_forward_calls(model):
    calls = dict(encoder=0, generator=0)
    for name in calls:
        def hook(*_, name=name):
            calls[name] += 1
        getattr(model, name).register_forward_hook(hook)
    return calls


@pytest.mark.parametrize('update_mode, curr_iter, expected', [
    ('alternating', 3, dict(encoder=5, generator=2)),  # the paper's step: nothing recomputed
    ('alternating', 2, dict(encoder=1, generator=1)),  # VAE warm-up
    ('simultaneous', 3, dict(encoder=3, generator=2)),  # E(x_r), E(x_p) serve both losses
    ('simultaneous', 2, dict(encoder=1, generator=1)),
])
def test_forward_passes_per_step(tiny_introvae, at_iter, update_mode, curr_iter, expected):
    model, wrappers = tiny_introvae(vae_warmup_iters=3, update_mode=update_mode, **HYPER)
    calls = count_forward_calls(model)
    at_iter(curr_iter)
    run_step(model, wrappers, make_batch()[0])
    assert calls == expected


def test_every_loss_term_is_logged_and_finite(tiny_introvae):
    model, wrappers = tiny_introvae(m=50.0, alpha=0.25, beta=0.05)
    log = run_step(model, wrappers, make_batch()[0])
    for key in ('loss_encoder', 'loss_generator', 'loss_ae', 'kl_real', 'kl_rec', 'kl_fake',
                'kl_rec_g', 'kl_fake_g'):
        assert torch.isfinite(log[key]), key


def poisoned_batch():
    batch, _ = make_batch()
    batch['data_samples'][1].gt_img[0, 3, 3] = float('nan')
    return batch


def test_non_finite_iteration_changes_nothing_and_training_goes_on(tiny_introvae):
    model, wrappers = tiny_introvae(lr=1e-4, **HYPER)
    run_step(model, wrappers, make_batch()[0])  # Adam-like state exists from here on
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optim_before = copy.deepcopy(wrappers.state_dict())
    log = run_step(model, wrappers, poisoned_batch())
    assert not torch.isfinite(log['loss_encoder'])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BatchNorm statistics
    assert str(wrappers.state_dict()) == str(optim_before)
    log = run_step(model, wrappers, make_batch(seed=3)[0])
    assert torch.isfinite(log['loss_encoder']) and model._bad_iterations == 0
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_repeated_non_finite_iterations_stop_the_run(tiny_introvae):
    model, wrappers = tiny_introvae(max_bad_iterations=3, **HYPER)
    for _ in range(2):
        run_step(model, wrappers, poisoned_batch())
    with pytest.raises(FloatingPointError, match='last_checkpoint.*model.m.*vae_warmup_iters'):
        run_step(model, wrappers, poisoned_batch())


# ----------------------------------------------------------------- update modes
def test_invalid_update_mode_names_the_key(tiny_introvae):
    with pytest.raises(ValueError, match="update_mode.*'alternating'.*'simultaneous'.*'paper'"):
        tiny_introvae(update_mode='paper')


def kl_values(model, x):
    """L_REG of x_r and x_p as the step will see them (same noise, no update)."""
    ref = copy.deepcopy(model)
    _, _, x_r, x_p = hand_forward(ref, x)
    return (kl_divergence(*ref.encoder(x_r)).mean().item(),
            kl_divergence(*ref.encoder(x_p)).mean().item())


@pytest.mark.parametrize('margin', ['both hinges active', 'no hinge active', 'one hinge active'])
def test_simultaneous_step_gives_each_network_the_gradient_of_its_own_loss(tiny_introvae,
                                                                           margin):
    """Encoder: grad of L_E (hinge on ng(x_r), ng(x_p)). Generator: grad of L_G
    evaluated with the encoder *before* its update."""
    batch, x = make_batch()
    model, _ = tiny_introvae(**HYPER)
    kl_r, kl_p = kl_values(model, x)
    m = {'both hinges active': 1e4, 'no hinge active': 0.0,
         'one hinge active': (kl_r + kl_p) / 2}[margin]
    model, wrappers = tiny_introvae(update_mode='simultaneous', **dict(HYPER, m=m))
    ref = copy.deepcopy(model)
    enc_before, gen_before = snapshot(model.encoder), snapshot(model.generator)
    log = run_step(model, wrappers, batch)

    mu, logvar, x_r, x_p = hand_forward(ref, x)
    alpha, a_g, beta = HYPER['alpha'], HYPER['alpha_generator'], HYPER['beta']
    l_reg_real = kl_divergence(mu, logvar).mean()
    l_ae = reconstruction_error(x_r, x).mean()
    l_reg_rec = kl_divergence(*ref.encoder(x_r.detach())).mean()
    l_reg_fake = kl_divergence(*ref.encoder(x_p.detach())).mean()
    loss_e = l_reg_real + alpha * (F.relu(m - l_reg_rec) + F.relu(m - l_reg_fake)) + beta * l_ae
    # the pre-update encoder, on x_r and x_p that are not detached
    loss_g = beta * l_ae + a_g * (kl_divergence(*ref.encoder(x_r)).mean() +
                                  kl_divergence(*ref.encoder(x_p)).mean())
    for key, value in dict(loss_encoder=loss_e, loss_generator=loss_g, kl_real=l_reg_real,
                           loss_ae=l_ae, kl_rec=l_reg_rec, kl_fake=l_reg_fake,
                           kl_rec_g=l_reg_rec, kl_fake_g=l_reg_fake).items():
        assert log[key].item() == pytest.approx(value.item(), rel=1e-5), key

    enc_actual = received_grads(enc_before, model.encoder)
    assert_grads_close(enc_actual, torch.autograd.grad(
        loss_e, list(ref.encoder.parameters()), retain_graph=True), model.encoder)
    gen_actual = received_grads(gen_before, model.generator)
    assert_grads_close(gen_actual, torch.autograd.grad(
        loss_g, list(ref.generator.parameters()), retain_graph=True), model.generator)

    # ... which is not the paper's generator gradient (L_G with the updated encoder)
    encoder_after = copy.deepcopy(ref.encoder)
    encoder_after.load_state_dict(model.encoder.state_dict())
    paper_g = beta * l_ae + a_g * (kl_divergence(*encoder_after(x_r)).mean() +
                                   kl_divergence(*encoder_after(x_p)).mean())
    assert grads_differ(gen_actual, torch.autograd.grad(paper_g, list(ref.generator.parameters())),
                        model.generator)


def test_simultaneous_and_alternating_encoder_updates_agree(tiny_introvae):
    """The encoder step is the same in both modes; only L_G's encoder differs."""
    batch, _ = make_batch()
    states = {}
    for mode in ('alternating', 'simultaneous'):
        model, wrappers = tiny_introvae(update_mode=mode, **HYPER)
        run_step(model, wrappers, batch)
        states[mode] = model.encoder.state_dict()
    for k, v in states['alternating'].items():
        if k.endswith('num_batches_tracked') or 'running' in k:
            continue  # the alternating step runs two more encoder passes through BatchNorm
        assert torch.allclose(v, states['simultaneous'][k], rtol=1e-4, atol=1e-6), k


@pytest.mark.parametrize('update_mode', ['alternating', 'simultaneous'])
def test_divergence_guard_in_both_update_modes(tiny_introvae, update_mode):
    model, wrappers = tiny_introvae(lr=1e-4, max_bad_iterations=2, update_mode=update_mode,
                                    **HYPER)
    run_step(model, wrappers, make_batch()[0])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = run_step(model, wrappers, poisoned_batch())
    assert not torch.isfinite(log['loss_encoder'])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(FloatingPointError):
        run_step(model, wrappers, poisoned_batch())


def test_simultaneous_generator_update_is_skipped_on_an_infinite_L_G(tiny_introvae, monkeypatch):
    """L_G = inf with finite gradients (an overflowing KL the hinge ignores): the
    surrogate the simultaneous mode back-propagates is finite, the guard must not be."""
    import mmintrovae.models.introvae as introvae_module
    model, wrappers = tiny_introvae(m=0.0, update_mode='simultaneous',
                                    **{k: v for k, v in HYPER.items() if k != 'm'})
    calls = [0]
    real_kl = introvae_module.kl_divergence

    def kl(mu, logvar):
        calls[0] += 1
        out = real_kl(mu, logvar)
        return out + float('inf') if calls[0] == 2 else out  # L_REG(E(x_r)) only

    monkeypatch.setattr(introvae_module, 'kl_divergence', kl)
    gen_before = snapshot(model.generator)
    log = run_step(model, wrappers, make_batch()[0])
    assert log['loss_generator'].item() == float('inf')
    assert all(torch.equal(v, gen_before[k]) for k, v in model.generator.named_parameters())


@pytest.mark.parametrize('update_mode', ['alternating', 'simultaneous'])
def test_hinge_graphs_are_freed_before_the_generator_backward(tiny_introvae, update_mode):
    """The activations saved by E(ng(x_r)) and E(ng(x_p)) (encoder passes 2 and 3)
    must be gone before the generator's backward: nothing needs them any more."""
    import gc
    import weakref

    from torch.autograd.graph import saved_tensors_hooks

    model, wrappers = tiny_introvae(update_mode=update_mode, **HYPER)

    class Saved:
        def __init__(self, t):
            self.t = t.detach()  # no grad_fn: a holder -> tensor -> node -> holder cycle never dies

    encoder_call = [0]
    saved_by_call = {}

    def pack(t):
        holder = Saved(t)
        saved_by_call.setdefault(encoder_call[0], []).append(weakref.ref(holder))
        return holder

    def untag(module, args, output):
        encoder_call[0] = -encoder_call[0]  # outside an encoder pass: negative

    model.encoder.register_forward_pre_hook(lambda m, a: encoder_call.__setitem__(
        0, abs(encoder_call[0]) + 1))
    model.encoder.register_forward_hook(untag)
    alive_at_generator_backward = []
    real_update = model._update

    def update(opt, loss, module, retain_graph, **kwargs):
        if module is model.generator:
            gc.collect()
            alive_at_generator_backward.append(
                sum(r() is not None for call in (2, 3) for r in saved_by_call.get(call, [])))
        return real_update(opt, loss, module, retain_graph, **kwargs)

    model._update = update
    with saved_tensors_hooks(pack, lambda holder: holder.t):
        run_step(model, wrappers, make_batch()[0])
    assert saved_by_call.get(2) and saved_by_call.get(3)
    assert alive_at_generator_backward == [0]


@pytest.mark.parametrize('update_mode', ['alternating', 'simultaneous'])
def test_channels_last_changes_the_layout_not_the_step(tiny_introvae, update_mode):
    batch = make_batch()[0]
    results = {}
    for channels_last in (False, True):
        # lr=1e-3 (updates = 0.001 * gradients): with a large step the encoder moves so
        # far that the alternating L_G, taken through the updated encoder, turns the two
        # layouts' rounding differences into percent-level gradient differences (lr=1e-2
        # already did with two intra-op threads).
        model, wrappers = tiny_introvae(update_mode=update_mode, channels_last=channels_last,
                                        lr=1e-3, **HYPER)
        before = snapshot(model)
        log = run_step(model, wrappers, batch)
        results[channels_last] = (model, received_grads(before, model), log)
    model = results[True][0]
    conv = model.encoder.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters() if p.ndim == 4)
    for key, value in results[False][2].items():
        assert results[True][2][key].item() == pytest.approx(value.item(), rel=1e-4), key
    for name, grad in results[False][1].items():
        atol = 1e-4 * max(1.0, grad.abs().max().item())  # another summation order
        assert torch.allclose(results[True][1][name], grad, rtol=1e-3, atol=atol), name
    # checkpoints go both ways
    results[False][0].load_state_dict(model.state_dict())


@pytest.mark.parametrize('update_mode, encoder_passes', [('alternating', 13), ('simultaneous', 9)])
def test_step_flops_are_the_minimum_for_its_passes(tiny_introvae, at_iter, update_mode,
                                                   encoder_passes):
    """FLOPs of a whole step against the README's accounting, in units of one forward pass
    (F_E, F_G): alternating 13 F_E + 7 F_G, simultaneous 9 F_E + 7 F_G. Backward work that
    the step does not need (e.g. the encoder's weight gradients in the generator update, a
    recomputed decoder pass) would add at least one more F_E or F_G."""
    from torch.utils.flop_counter import FlopCounterMode

    from mmintrovae.utils.benchmark import count_flops
    model, wrappers = tiny_introvae(channels=(8, 16, 32), latent_dim=16,
                                    update_mode=update_mode, **HYPER)
    at_iter(10)
    batch, x = make_batch()
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            model.encoder(x)
        f_e = counter.get_total_flops()
        counter = FlopCounterMode(display=False)
        with counter:
            model.generator(torch.randn(x.shape[0], 16))
        f_g = counter.get_total_flops()
    expected = encoder_passes * f_e + 7 * f_g
    measured = count_flops(model, wrappers, batch)
    # a little under: the first convolution never needs its input's gradient for real images
    # or for the detached ng(x_r), ng(x_p)
    assert 0.95 * expected < measured <= expected
    # and the bound is tight enough to catch one wasted pass
    assert measured + min(f_e, f_g) > expected
