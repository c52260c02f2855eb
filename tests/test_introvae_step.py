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


def grads_differ(actual, expected_list, module):
    return any(not torch.allclose(actual[name], exp, rtol=1e-3, atol=1e-5)
               for (name, _), exp in zip(module.named_parameters(), expected_list))


def hand_forward(ref, x):
    """The forward passes of one step, in the order train_step draws its noise."""
    torch.manual_seed(SEED)
    mu, logvar = ref.encoder(x)
    z = reparameterize(mu, logvar)
    x_r = ref.generator(z)
    x_p = ref.generator(torch.randn_like(z))
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


def test_alpha_zero_is_a_plain_vae_step(tiny_introvae, at_iter):
    model, wrappers = tiny_introvae(vae_warmup_iters=3, **HYPER)
    ref = copy.deepcopy(model)
    batch, x = make_batch()
    enc_before, gen_before = snapshot(model.encoder), snapshot(model.generator)
    calls = count_forward_calls(model)
    at_iter(2)  # still inside the warm-up
    log = run_step(model, wrappers, batch)
    assert log['alpha'].item() == 0.0
    assert calls == dict(encoder=1, generator=1)

    torch.manual_seed(SEED)
    mu, logvar = ref.encoder(x)
    x_r = ref.generator(reparameterize(mu, logvar))
    vae_loss = kl_divergence(mu, logvar).mean() + HYPER['beta'] * reconstruction_error(x_r, x).mean()
    vae_loss.backward()
    assert_grads_equal(received_grads(enc_before, model.encoder),
                       [p.grad for p in ref.encoder.parameters()], model.encoder)
    assert_grads_equal(received_grads(gen_before, model.generator),
                       [p.grad for p in ref.generator.parameters()], model.generator)


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


def test_paper_exact_step_runs_5_encoder_and_2_generator_passes(tiny_introvae):
    model, wrappers = tiny_introvae(**HYPER)
    calls = count_forward_calls(model)
    run_step(model, wrappers, make_batch()[0])
    assert calls == dict(encoder=5, generator=2)


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
