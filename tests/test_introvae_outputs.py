"""What val_step/test_step hand to MMagic's metrics and visualisers."""
import torch

from conftest import make_batch


def test_val_step_gives_samples_reconstructions_and_kl(tiny_introvae):
    model, _ = tiny_introvae()
    batch, _ = make_batch(n=3)
    model.eval()
    out = model.val_step(batch)
    assert len(out) == 3
    for sample in out:
        assert sample.fake_img.shape == sample.pred_img.shape == (3, 32, 32)
        assert torch.equal(sample.output.pred_img, sample.pred_img)
        assert 0 <= sample.fake_img.min() and sample.fake_img.max() <= 255
        for key in ('kl_real', 'kl_rec', 'kl_fake'):
            assert sample.get(key).ndim == 0 and torch.isfinite(sample.get(key))
        assert sample.gt_img.shape == (3, 32, 32)


def test_noise_only_batches_give_samples(tiny_introvae):
    model, _ = tiny_introvae()
    model.eval()
    out = model.val_step(dict(inputs=dict(num_batches=5, sample_model='orig')))
    assert len(out) == 5 and all('pred_img' not in s for s in out)
    noise = torch.randn(2, 8)
    a = model(noise)
    b = model(dict(noise=noise))
    assert torch.equal(a[0].fake_img, b[0].fake_img)


def test_rgb_models_hand_out_bgr_like_gt_img(tiny_introvae):
    model, _ = tiny_introvae()
    model.data_preprocessor.output_channel_order = 'RGB'
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0  # red in the model's RGB [0, 1]
    bgr = model.to_bgr255(red)
    assert bgr[0, 2].eq(255).all() and bgr[0, :2].eq(0).all()
    model.data_preprocessor.output_channel_order = None  # trained in BGR: no flip
    assert model.to_bgr255(red)[0, 0].eq(255).all()


def test_ema_and_orig_side_by_side(tiny_introvae):
    from mmintrovae.models import IntroVAE
    model, _ = tiny_introvae()
    ema = IntroVAE(encoder=model.encoder, generator=model.generator,
                   data_preprocessor=dict(type='DataPreprocessor', mean=[0.0] * 3,
                                          std=[255.0] * 3),
                   ema_config=dict(momentum=0.999))
    ema.eval()
    out = ema.val_step(dict(inputs=dict(num_batches=2, sample_model='ema/orig')))
    assert out[0].ema.fake_img.shape == out[0].orig.fake_img.shape == (3, 32, 32)


def test_metric_sample_kwargs_truncate_the_prior(tiny_introvae):
    """MMagic's metrics hand their ``sample_kwargs`` in; ``truncation`` scales
    eps ~ N(0, I), drawn or given, before it is decoded."""
    import pytest
    model, _ = tiny_introvae()
    model.eval()

    def draw(sample_kwargs):
        torch.manual_seed(3)
        return model(dict(num_batches=4, sample_kwargs=sample_kwargs))

    plain, half = draw({}), draw(dict(truncation=0.5))
    assert torch.allclose(half[0].noise, 0.5 * plain[0].noise)
    assert torch.equal(draw(dict(truncation=0.0))[0].noise, torch.zeros_like(plain[0].noise))
    # the truncated latents are decoded: G(0.5 z), not G(z)
    expected = model.to_bgr255(model.generator(0.5 * torch.stack([s.noise for s in plain])))
    assert torch.allclose(torch.stack([s.fake_img for s in half]), expected, atol=1e-4)
    given = torch.randn(2, 8)
    assert torch.equal(model(dict(noise=given, sample_kwargs=dict(truncation=0.5)))[0].noise,
                       0.5 * given[0])
    assert torch.equal(model(dict(noise=given))[0].noise, given[0])
    with pytest.raises(ValueError, match='psi'):
        model(dict(num_batches=1, sample_kwargs=dict(psi=0.7)))
    with pytest.raises(ValueError, match='truncation must be >= 0'):
        model(dict(num_batches=1, sample_kwargs=dict(truncation=-1)))
