"""The aggregate-posterior prior: its running moments, sampling from it, and the model's use."""
import pytest
import torch

from conftest import make_batch
from mmintrovae.models.latent_prior import AggregatePosterior, build_latent_prior


def _batches(num, n=16, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([3.0, 1.0, 0.5, 0.1])[:d]
    return [(torch.randn(n, d, generator=g) * scale + torch.arange(d).float(),
             torch.randn(n, d, generator=g) * 0.3 - 1.0) for _ in range(num)]


def test_moments_average_the_batches_then_follow_the_newest():
    batches = _batches(5)
    prior = AggregatePosterior(4, momentum=0.01)
    for mu, logvar in batches:
        prior.update(mu, logvar)
    # 5 batches < 1 / momentum: the plain average of all of them, as over one set
    mu = torch.cat([b[0] for b in batches]).double()
    var = torch.cat([b[1] for b in batches]).double().exp()
    expected = torch.cov(mu.T, correction=0) + torch.diag(var.mean(0))
    assert int(prior.num_batches) == 5
    assert torch.allclose(prior.mean.double(), mu.mean(0), atol=1e-5)
    assert torch.allclose(prior.covariance(), expected, atol=1e-4)
    # with momentum 1 only the newest batch counts
    newest = AggregatePosterior(4, momentum=1.0)
    for mu_b, logvar_b in batches:
        newest.update(mu_b, logvar_b)
    assert torch.allclose(newest.mean, batches[-1][0].mean(0), atol=1e-6)


def test_samples_have_the_fitted_moments_and_start_standard():
    prior = AggregatePosterior(4)
    eps = torch.randn(100000, 4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(prior(eps), eps, atol=1e-5)  # no update yet: N(0, I)
    for mu, logvar in _batches(20, n=64):
        prior.update(mu, logvar)
    z = prior(eps).double()
    assert torch.allclose(z.mean(0), prior.mean.double(), atol=0.03)
    assert torch.allclose(torch.cov(z.T), prior.covariance(), rtol=0.03, atol=0.05)
    # truncation scales around the mean; 0 gives the mean itself
    assert torch.allclose(prior(eps[:3], 0.0), prior.mean.expand(3, 4), atol=1e-6)
    half = prior(eps[:3], 0.5) - prior.mean
    assert torch.allclose(half, 0.5 * (prior(eps[:3]) - prior.mean), atol=1e-5)


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match='momentum'):
        AggregatePosterior(4, momentum=0.0)
    with pytest.raises(ValueError, match="type must be one of"):
        build_latent_prior('gmm', 4)
    with pytest.raises(ValueError, match='unknown option'):
        build_latent_prior(dict(type='aggregate', decay=0.1), 4)
    with pytest.raises(ValueError, match=r'\(N, 4\)'):
        AggregatePosterior(4).update(torch.zeros(2, 3), torch.zeros(2, 3))


@pytest.mark.parametrize('model_type', ['IntroVAE', 'SoftIntroVAE', 'VAE'])
def test_training_tracks_the_posterior_and_sampling_uses_it(tiny_introvae, model_type):
    from mmintrovae.models import IntroVAE, SoftIntroVAE, VAE
    base, wrappers = tiny_introvae(lr=1e-3)
    cls = dict(IntroVAE=IntroVAE, SoftIntroVAE=SoftIntroVAE, VAE=VAE)[model_type]
    model = cls(encoder=base.encoder, generator=base.generator,
                data_preprocessor=dict(type='DataPreprocessor', mean=[0.0] * 3, std=[255.0] * 3),
                latent_prior=dict(type='aggregate', momentum=0.5))
    assert {'aggregate_posterior.mean', 'aggregate_posterior.second_moment',
            'aggregate_posterior.variance'} <= set(model.state_dict())
    batch, x = make_batch(n=4)
    model.train_step(batch, wrappers)
    model.train_step(batch, wrappers)
    assert int(model.aggregate_posterior.num_batches) == 2
    assert model.aggregate_posterior.mean.abs().sum() > 0
    model.eval()
    eps = torch.randn(3, 8)
    z = model.aggregate_posterior(eps)
    out = model(dict(noise=eps))
    assert torch.allclose(out[0].noise, z[0])
    assert torch.allclose(torch.stack([o.fake_img for o in out]),
                          model.to_bgr255(model.generator(z)), atol=1e-4)
    # a metric may ask for the standard prior instead
    standard = model(dict(noise=eps, sample_kwargs=dict(prior='standard')))
    assert torch.equal(standard[0].noise, eps[0])
    # the moments are part of the checkpoint
    clone = cls(encoder=base.encoder, generator=base.generator, latent_prior='aggregate',
                data_preprocessor=dict(type='DataPreprocessor', mean=[0.0] * 3, std=[255.0] * 3))
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.aggregate_posterior.mean, model.aggregate_posterior.mean)


def test_the_standard_model_keeps_its_state_dict_and_refuses_aggregate(tiny_introvae):
    model, _ = tiny_introvae()
    assert not any(k.startswith('aggregate_posterior') for k in model.state_dict())
    with pytest.raises(ValueError, match="latent_prior='aggregate'"):
        model(dict(num_batches=2, sample_kwargs=dict(prior='aggregate')))
    from mmintrovae.apis import sample
    model.eval()
    with pytest.raises(ValueError, match="latent_prior='aggregate'"):
        sample(model, 2, seed=0, prior='aggregate')


def test_sample_api_draws_from_the_models_prior(tiny_introvae):
    from mmintrovae.apis.sampling import prior_noise
    base, _ = tiny_introvae()
    from mmintrovae.models import IntroVAE
    model = IntroVAE(encoder=base.encoder, generator=base.generator, latent_prior='aggregate',
                     data_preprocessor=dict(type='DataPreprocessor', mean=[0.0] * 3,
                                            std=[255.0] * 3))
    for mu, logvar in _batches(3, d=4):
        model.aggregate_posterior.update(torch.cat([mu, mu], 1), torch.cat([logvar, logvar], 1))
    eps = torch.randn(5, 8, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(prior_noise(model, 5, seed=7), model.aggregate_posterior(eps))
    assert torch.allclose(prior_noise(model, 5, seed=7, prior='standard'), eps)


def test_an_objective_without_the_posterior_is_named(tiny_introvae):
    from mmintrovae.models import IntrospectiveVAE
    from mmintrovae.models.objective import PhaseLoss
    from mmintrovae.models.vae import VAEObjective

    class Silent(VAEObjective):
        def encoder_phase(self, *args):
            loss, state = super().encoder_phase(*args)
            state.pop('posterior')
            return loss, state

    base, wrappers = tiny_introvae(lr=1e-3)
    model = IntrospectiveVAE(encoder=base.encoder, generator=base.generator, objective=Silent(),
                             latent_prior='aggregate',
                             data_preprocessor=dict(type='DataPreprocessor', mean=[0.0] * 3,
                                                    std=[255.0] * 3))
    assert PhaseLoss  # the contract's type, imported for the reader
    with pytest.raises(ValueError, match="Silent.encoder_phase does not return it"):
        model.train_step(make_batch(n=2)[0], wrappers)


@pytest.mark.parametrize('model_type', ['IntroVAE', 'SoftIntroVAE'])
@pytest.mark.parametrize('train_samples', [False, True])
def test_train_samples_decode_the_fitted_prior(tiny_introvae, model_type, train_samples):
    """With train_samples=True the objective's x_p = G(z_p) draw z_p from the fitted
    Gaussian (here centred at 5), otherwise from N(0, I)."""
    from mmintrovae.models import IntroVAE, SoftIntroVAE
    base, wrappers = tiny_introvae(lr=1e-3)
    cls = dict(IntroVAE=IntroVAE, SoftIntroVAE=SoftIntroVAE)[model_type]
    model = cls(encoder=base.encoder, generator=base.generator,
                data_preprocessor=dict(type='DataPreprocessor', mean=[0.0] * 3, std=[255.0] * 3),
                latent_prior=dict(type='aggregate', train_samples=train_samples))
    prior = model.aggregate_posterior
    prior.mean.fill_(5.0)
    prior.second_moment.copy_(torch.outer(prior.mean, prior.mean) + 0.01 * torch.eye(8))
    decoded = []
    hook = model.generator.register_forward_pre_hook(lambda m, args: decoded.append(args[0]))
    batch, _ = make_batch(n=4)
    model.train_step(batch, wrappers)
    hook.remove()
    # The first decode is G(z_p) (both objectives draw z_p before eps)
    z_p = decoded[0].detach()
    if train_samples:
        assert torch.allclose(z_p.mean(), torch.tensor(5.0), atol=0.5)
        assert z_p.std() < 0.5
    else:
        assert z_p.mean().abs() < 1.0 and 0.5 < z_p.std() < 1.5


def test_train_samples_needs_an_objective_with_samples(tiny_introvae):
    from mmintrovae.models import VAE
    base, _ = tiny_introvae()
    with pytest.raises(ValueError, match='train_samples.*VAEObjective trains on no prior'):
        VAE(encoder=base.encoder, generator=base.generator,
            latent_prior=dict(type='aggregate', train_samples=True))
