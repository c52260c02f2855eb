"""The seam between the introspective model, its objective and its networks.

``IntrospectiveVAE`` + ``objective=dict(type=...)`` must train exactly as the model types the
recipes use (``IntroVAE``, ``SoftIntroVAE``, and IntroVAE with alpha = alpha_generator = 0
for the plain VAE): same weights after the same seeded iterations, bit for bit. Their
checkpoints load into each other (objectives hold no parameters), and a bad objective
config fails naming the key at fault.
"""
import os
import os.path as osp
import textwrap

import pytest
import torch
from mmagic.registry import MODELS
from mmengine import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict

from conftest import make_batch
from mmintrovae.models import (OBJECTIVES, IntrospectiveObjective, IntrospectiveVAE, IntroVAE,
                               IntroVAEObjective, PhaseLoss, SoftIntroVAE, VAE, VAEObjective,
                               kl_divergence, reconstruction_error, reparameterize)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ARCH = dict(image_size=32, channels=(8, 16, 16), latent_dim=8, image_channels=3)
PRE = dict(type='DataPreprocessor', mean=[0.0] * 3, std=[255.0] * 3)


@pytest.fixture
def at_iter():
    hub = MessageHub.get_current_instance()
    yield lambda i: hub.update_info('iter', i)
    hub.update_info('iter', 0)


def build(model_type, **kwargs):
    """A model from a config dict, as a recipe builds it (same initial weights every time)."""
    torch.manual_seed(0)
    cfg = dict(type=model_type, encoder=dict(type='IntroVAEEncoder'),
               generator=dict(type='IntroVAEGenerator'), architecture=ARCH, data_preprocessor=PRE)
    return MODELS.build(dict(cfg, **kwargs))


def train(model, at_iter, iters=2):
    """``iters`` seeded iterations with Adam (sensitive to every bit of every gradient);
    returns the logs."""
    wrappers = OptimWrapperDict(
        encoder=OptimWrapper(torch.optim.Adam(model.encoder.parameters(), lr=1e-3)),
        generator=OptimWrapper(torch.optim.Adam(model.generator.parameters(), lr=1e-3)))
    logs = []
    for it in range(iters):
        at_iter(it)
        torch.manual_seed(100 + it)
        logs.append(model.train_step(make_batch(seed=it)[0], wrappers))
    return logs


def assert_same_training(a, b, logs_a, logs_b):
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)  # the same checkpoint keys
    for key, value in state_a.items():
        assert torch.equal(value, state_b[key]), key  # weights and BatchNorm statistics
    for log_a, log_b in zip(logs_a, logs_b):
        assert set(log_a) == set(log_b)
        for key, value in log_a.items():
            assert torch.equal(value, log_b[key]), key


INTROVAE = dict(m=1e4, alpha=0.3, beta=0.7, alpha_generator=0.4)  # m large: both hinges active


@pytest.mark.parametrize('kwargs', [
    dict(INTROVAE, vae_warmup_iters=1),  # iteration 0 the official warm-up, 1 introspective
    dict(INTROVAE, vae_warmup_iters=1, vae_warmup_loss='paper'),
    dict(INTROVAE, vae_warmup_iters=1, update_mode='simultaneous'),
    dict(m=30.0, alpha=0.25, beta=0.5, update_mode='simultaneous'),  # hinges partly active
], ids=['alternating', 'paper-warmup', 'simultaneous', 'simultaneous-small-m'])
def test_generic_model_with_introvae_objective_trains_as_IntroVAE(at_iter, kwargs):
    thin = build('IntroVAE', **kwargs)
    generic = build('IntrospectiveVAE', objective=dict(type='IntroVAEObjective', **kwargs))
    assert type(generic) is IntrospectiveVAE and isinstance(generic.objective, IntroVAEObjective)
    logs_thin, logs_generic = train(thin, at_iter), train(generic, at_iter)
    if kwargs.get('vae_warmup_iters'):  # both iterations ran, the warm-up and the introspective
        assert [log['alpha'].item() for log in logs_generic] == [0.0, pytest.approx(0.3)]
    assert_same_training(thin, generic, logs_thin, logs_generic)
    # the recipe's attributes read the same on both
    for name in ('m', 'alpha', 'beta', 'alpha_generator', 'vae_warmup_iters', 'update_mode'):
        assert getattr(generic, name) == getattr(thin, name), name


SOFT = dict(beta_rec=0.5, beta_kl=0.5, beta_neg=64.0, gamma_r=1e-3, alpha=2.0)


@pytest.mark.parametrize('warmup', [0, 1])
def test_generic_model_with_soft_introvae_objective_trains_as_SoftIntroVAE(at_iter, warmup):
    thin = build('SoftIntroVAE', vae_warmup_iters=warmup, **SOFT)
    generic = build('IntrospectiveVAE', objective=dict(type='SoftIntroVAEObjective',
                                                        vae_warmup_iters=warmup, **SOFT))
    logs_thin, logs_generic = train(thin, at_iter), train(generic, at_iter)
    assert logs_generic[0]['introspective'].item() == float(warmup == 0)
    assert_same_training(thin, generic, logs_thin, logs_generic)
    assert generic.beta_neg == 64.0 and not hasattr(generic, 'm')


def test_vae_objective_trains_as_IntroVAE_without_introspection(at_iter):
    """The plain VAE three ways: the recipes' IntroVAE(alpha=0, alpha_generator=0), the VAE
    type and the generic model with VAEObjective; one encoder and one generator pass."""
    reference = build('IntroVAE', alpha=0.0, alpha_generator=0.0, beta=0.7)
    typed = build('VAE', beta=0.7)
    generic = build('IntrospectiveVAE', objective=dict(type='VAEObjective', beta=0.7))
    calls = dict(encoder=0, generator=0)
    for name in calls:
        getattr(typed, name).register_forward_hook(
            lambda m, a, o, name=name: calls.__setitem__(name, calls[name] + 1))
    logs_ref = train(reference, at_iter)
    logs_typed, logs_generic = train(typed, at_iter), train(generic, at_iter)
    assert calls == dict(encoder=2, generator=2)  # two iterations
    for model, logs in ((typed, logs_typed), (generic, logs_generic)):
        for key, value in reference.state_dict().items():
            assert torch.equal(value, model.state_dict()[key]), key
        for log, log_ref in zip(logs, logs_ref):
            for key in ('loss_encoder', 'loss_generator', 'loss_ae', 'kl_real'):
                assert torch.equal(log[key], log_ref[key]), key
    assert typed.beta == 0.7 and not hasattr(typed, 'm')


def test_vae_objective_is_the_negative_elbo(at_iter):
    """L_E = L_REG(E(x)) + beta * L_AE, L_G = beta * L_AE, each network its own gradient."""
    model = build('VAE', beta=0.3)
    wrappers = OptimWrapperDict(
        encoder=OptimWrapper(torch.optim.SGD(model.encoder.parameters(), lr=1.0)),
        generator=OptimWrapper(torch.optim.SGD(model.generator.parameters(), lr=1.0)))
    import copy
    ref = copy.deepcopy(model)
    batch, x = make_batch()
    at_iter(0)
    torch.manual_seed(7)
    log = model.train_step(batch, wrappers)
    torch.manual_seed(7)
    mu, logvar = ref.encoder(x)
    x_r = ref.generator(reparameterize(mu, logvar))
    kl, ae = kl_divergence(mu, logvar).mean(), reconstruction_error(x_r, x).mean()
    assert log['loss_encoder'].item() == pytest.approx((kl + 0.3 * ae).item(), rel=1e-6)
    assert log['loss_generator'].item() == pytest.approx((0.3 * ae).item(), rel=1e-6)
    (kl + 0.3 * ae).backward()  # one backward of the negative ELBO: both networks' gradients
    for net in ('encoder', 'generator'):
        for (name, p), p_ref in zip(getattr(model, net).named_parameters(),
                                    getattr(ref, net).parameters()):
            assert torch.allclose(p_ref - p_ref.grad, p, rtol=1e-4, atol=1e-6), (net, name)


# ------------------------------------------------------------------ bad configs
def test_unknown_objective_type_is_named_with_the_registered_ones():
    with pytest.raises(ValueError, match=r"model\.objective\.type='HingeVAE'.*IntroVAEObjective.*"
                                         r"SoftIntroVAEObjective.*VAEObjective"):
        build('IntrospectiveVAE', objective=dict(type='HingeVAE'))


def test_unknown_objective_key_is_named_with_the_accepted_ones():
    with pytest.raises(ValueError, match=r"model\.objective: IntroVAEObjective has no argument "
                                         r"'margin'; it accepts m, alpha"):
        build('IntrospectiveVAE', objective=dict(type='IntroVAEObjective', margin=10.0))
    with pytest.raises(ValueError, match="no argument 'beta'.*beta_rec"):
        build('IntrospectiveVAE', objective=dict(type='SoftIntroVAEObjective', beta=1.0))


@pytest.mark.parametrize('objective', [None, 'IntroVAEObjective', dict(m=1.0)])
def test_missing_or_malformed_objective_is_an_error_naming_model_objective(objective):
    with pytest.raises(ValueError, match=r'model\.objective'):
        build('IntrospectiveVAE', objective=objective)


def test_bad_hyper_parameter_is_named_before_any_network_is_built():
    with pytest.raises(ValueError, match='update_mode'):
        build('IntrospectiveVAE', objective=dict(type='IntroVAEObjective', update_mode='joint'),
              architecture=dict(ARCH, image_size=33))  # the networks would fail differently


# ------------------------------------------------------------------ settings and checkpoints
def test_objective_settings_read_and_write_through_the_model():
    model = build('IntroVAE', m=50.0)
    assert model.m == model.objective.m == 50.0
    model.m = 20.0  # one copy of each setting: the objective's
    assert model.objective.m == 20.0 and 'm' not in model.__dict__
    assert model.introspective_weights(0) == (0.25, 0.5) and model.ae_weight(0) == 0.05
    assert 'model.m' in model.divergence_advice
    soft = build('SoftIntroVAE')
    assert 'model.beta_neg' in soft.divergence_advice
    with pytest.raises(AttributeError):
        soft.alpha_generator
    assert 'SoftIntroVAEObjective(beta_rec=1.0' in repr(soft.objective)
    assert soft.update_mode == 'alternating'  # as before the seam; and it is no setting:
    with pytest.raises(AttributeError):
        soft.update_mode = 'simultaneous'


def test_objectives_hold_no_state(at_iter):
    """The state dict is the networks' only: the same keys for every objective."""
    keys = {name: list(build(name, **kw).state_dict()) for name, kw in (
        ('IntroVAE', {}), ('SoftIntroVAE', {}), ('VAE', {}),
        ('IntrospectiveVAE', dict(objective=dict(type='VAEObjective'))))}
    assert len({tuple(k) for k in keys.values()}) == 1
    assert all(k.startswith(('encoder.', 'generator.', 'data_preprocessor.'))
               for k in keys['IntroVAE'])


def write_config(path, model):
    path.write_text(textwrap.dedent(f"""\
        _base_ = [{osp.join(REPO, 'configs', 'introvae_fashionmnist32.py')!r}]
        model = dict(_delete_=True, **{model!r})
        """))
    return str(path)


def test_checkpoint_of_IntroVAE_loads_into_the_generic_model(tmp_path, at_iter):
    """A checkpoint the recipes' IntroVAE saved (a trained one, BatchNorm statistics moved)
    loads strictly into IntrospectiveVAE built from a config, and gives the same outputs."""
    from mmintrovae.apis import init_model
    arch = dict(image_size=32, channels=(8, 16, 16), latent_dim=8, image_channels=1)
    common = dict(encoder=dict(type='IntroVAEEncoder'), generator=dict(type='IntroVAEGenerator'),
                  architecture=arch,
                  data_preprocessor=dict(type='DataPreprocessor', mean=[0.0], std=[255.0]))
    old_cfg = write_config(tmp_path / 'old.py', dict(type='IntroVAE', m=30.0, **common))
    new_cfg = write_config(tmp_path / 'new.py', dict(
        type='IntrospectiveVAE', objective=dict(type='IntroVAEObjective', m=30.0), **common))
    old = init_model(old_cfg).train()
    wrappers = OptimWrapperDict(
        encoder=OptimWrapper(torch.optim.Adam(old.encoder.parameters(), lr=1e-3)),
        generator=OptimWrapper(torch.optim.Adam(old.generator.parameters(), lr=1e-3)))
    at_iter(0)
    old.train_step(make_batch(channels=1)[0], wrappers)
    ckpt = tmp_path / 'iter_1.pth'
    torch.save({'meta': {'iter': 1}, 'state_dict': old.state_dict()}, ckpt)

    new = init_model(new_cfg, str(ckpt))  # strict: a missing or extra key would raise
    assert type(new) is IntrospectiveVAE
    old.eval()
    _, x = make_batch(channels=1, seed=3)
    torch.manual_seed(0)
    noise = torch.randn(4, 8)
    assert torch.equal(new.reconstruct(x), old.reconstruct(x))
    assert torch.equal(new.generator(noise), old.generator(noise))
    # and back: the generic model's checkpoint loads into the recipes' type
    torch.save({'state_dict': new.state_dict()}, tmp_path / 'new.pth')
    again = init_model(old_cfg, str(tmp_path / 'new.pth'))
    assert torch.equal(again.reconstruct(x), old.reconstruct(x))


# ------------------------------------------------------------------ plugging an objective
def test_a_registered_objective_plugs_in_and_the_loop_steps_its_phases_in_order(at_iter):
    """A new objective is a registered class with two phases; the model's loop steps the
    encoder on the first phase's loss before the second phase runs (so the generator phase
    sees the updated encoder), and each network only by its own phase's loss."""
    events = []

    @OBJECTIVES.register_module(name='_RecordingObjective', force=True)
    class Recording(IntrospectiveObjective):
        hyper_parameters = ('weight',)

        def __init__(self, weight=1.0):
            self.weight = weight

        def encoder_phase(self, encoder, generator, x, curr_iter):
            mu, logvar = encoder(x)
            x_r = generator(mu)
            # the generator's weights are in this graph, but only the encoder may move
            loss = kl_divergence(mu, logvar).mean() + reconstruction_error(x_r, x).mean()
            events.append(('encoder_phase', snapshot(encoder)))
            return PhaseLoss(loss, dict(loss_encoder=loss)), dict(x=x)

        def generator_phase(self, encoder, generator, state, curr_iter):
            events.append(('generator_phase', snapshot(encoder)))
            x_p = generator(torch.zeros(state['x'].shape[0], 8))
            loss = self.weight * x_p.pow(2).mean()
            return PhaseLoss(loss, dict(loss_generator=loss))

    def snapshot(net):
        return [p.detach().clone() for p in net.parameters()]

    model = build('IntrospectiveVAE', objective=dict(type='_RecordingObjective', weight=2.0))
    assert model.weight == 2.0
    gen_before = snapshot(model.generator)
    log = train(model, at_iter, iters=1)[0]
    assert set(log) == {'loss_encoder', 'loss_generator'}
    (_, enc_at_encoder_phase), (_, enc_at_generator_phase) = events
    # the encoder step happened between the phases ...
    assert not all(torch.equal(a, b) for a, b in zip(enc_at_encoder_phase, enc_at_generator_phase))
    # ... and the generator phase did not move it again
    assert all(torch.equal(a, b) for a, b in zip(enc_at_generator_phase,
                                                  snapshot(model.encoder)))
    assert not all(torch.equal(a, b) for a, b in zip(gen_before, snapshot(model.generator)))


def test_recipes_keep_their_model_types():
    """The recipes are unchanged: IntroVAE (also for the plain VAE) and SoftIntroVAE."""
    from mmengine.config import Config
    for config, model_type in (('introvae_fashionmnist32.py', IntroVAE),
                               ('vae_fashionmnist32.py', IntroVAE),
                               ('softintrovae_fashionmnist32.py', SoftIntroVAE)):
        cfg = Config.fromfile(osp.join(REPO, 'configs', config))
        model = MODELS.build(cfg.model)
        assert type(model) is model_type, config
    assert issubclass(VAE, IntrospectiveVAE) and VAEObjective().beta == 1.0


# ------------------------------------------------------------------ resuming a recipe's run
def shrunk_recipe(folder, data_root):
    """The Fashion-MNIST IntroVAE recipe, tiny: 4 iterations, a checkpoint every 2, a cheap
    validation at the end, no sample grids."""
    path = osp.join(folder, 'recipe.py')
    with open(path, 'w') as f:
        f.write(textwrap.dedent(f"""\
            _base_ = [{osp.join(REPO, 'configs', 'introvae_fashionmnist32.py')!r}]
            model = dict(architecture=dict(channels=(8, 16, 16), latent_dim=8),
                         vae_warmup_iters=1,
                         ema_config=dict(type='ExponentialMovingAverage', momentum=0.5))
            train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                                    dataset=dict(data_root={str(data_root)!r}))
            val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                                  dataset=dict(data_root={str(data_root)!r}, max_images=4))
            test_dataloader = val_dataloader
            val_evaluator = dict(type='Evaluator', metrics=[dict(type='MSE', prefix='rec')])
            test_evaluator = val_evaluator
            train_cfg = dict(max_iters=4, val_interval=1000)
            default_hooks = dict(logger=dict(interval=1),
                                 checkpoint=dict(interval=2, max_keep_ckpts=-1, save_best=None))
            visualizer = dict(vis_backends=[dict(type='VisBackend')])
            custom_hooks = [dict(type='RNGStateHook')]
            """))
    return path


@pytest.mark.slow
def test_run_of_the_IntroVAE_recipe_resumes_exactly_as_the_generic_model(tmp_path):
    """tools/train.py: an IntroVAE recipe's run, interrupted at iteration 2, resumed with the
    same recipe rewritten as IntrospectiveVAE + IntroVAEObjective, ends with the very
    weights and optimizer states of the uninterrupted IntroVAE run."""
    import subprocess
    import sys

    from mmengine.config import Config

    from _images import write_image_folder
    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    data = write_image_folder(tmp_path / 'images', 10, 32, mode='L')
    old = shrunk_recipe(tmp_path, data)
    model = Config.fromfile(old).model.to_dict()
    objective = dict(type='IntroVAEObjective', **{k: model.pop(k) for k in (
        'm', 'alpha', 'beta', 'alpha_generator', 'vae_warmup_iters', 'vae_warmup_loss',
        'update_mode') if k in model})
    new = tmp_path / 'generic.py'
    generic = dict(model, type='IntrospectiveVAE', objective=objective)
    new.write_text(f'_base_ = [{old!r}]\nmodel = dict(_delete_=True, **{generic!r})\n')
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONPATH=osp.pathsep.join([REPO, osp.join(REPO, 'tests')]))

    def train(config, work_dir, *extra):
        result = subprocess.run([sys.executable, osp.join(REPO, 'tools/train.py'), str(config),
                                 '--work-dir', str(work_dir), *extra], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout + result.stderr

    train(old, tmp_path / 'ref')
    log = train(new, tmp_path / 'resumed', '--resume', str(tmp_path / 'ref' / 'iter_2.pth'))
    assert 'resumed epoch: 0, iter: 2' in log
    ref = load_checkpoint_safely(str(tmp_path / 'ref' / 'iter_4.pth'))
    resumed = load_checkpoint_safely(str(tmp_path / 'resumed' / 'iter_4.pth'))
    assert "type='IntrospectiveVAE'" in resumed['meta']['cfg']  # the generic model trained on
    assert list(ref['state_dict']) == list(resumed['state_dict'])
    for key, value in ref['state_dict'].items():
        assert torch.equal(value, resumed['state_dict'][key]), key
    for net in ('encoder', 'generator'):
        states = [ckpt['optimizer'][net]['state'] for ckpt in (ref, resumed)]
        assert states[0].keys() == states[1].keys() and states[0]
        for index, state in states[0].items():
            for name, value in state.items():
                assert torch.equal(value, states[1][index][name]), (net, index, name)
