"""Encoder and generator: shapes at every resolution, official parameter counts, errors."""
import pytest
import torch

from mmintrovae.models import IntroVAEEncoder, IntroVAEGenerator

# The channel lists of the recipes; 256 and 1024 are the official scripts'.
CHANNELS = {
    32: (32, 64, 128),
    64: (32, 64, 128, 256),
    128: (64, 128, 256, 512, 512),
    256: (32, 64, 128, 256, 512, 512),
    512: (16, 32, 64, 128, 256, 512, 512),
    1024: (16, 32, 64, 128, 256, 512, 512, 512),
}


def official_param_count(channels, latent_dim=512, image_channels=3):
    """Parameters implied by the official layout, counted from its description."""

    def block(cin, cout):  # two bias-free 3x3 convs, two BNs, 1x1 projection if cin != cout
        return (cin != cout) * cin * cout + 9 * cin * cout + 9 * cout * cout + 4 * cout

    enc = image_channels * channels[0] * 25 + 2 * channels[0]
    c = channels[0]
    for out in channels[1:]:
        enc, c = enc + block(c, out), out
    enc += block(c, c) + c * 16 * 2 * latent_dim + 2 * latent_dim
    c = channels[-1]
    dec = latent_dim * c * 16 + c * 16
    for out in reversed(channels):
        dec, c = dec + block(c, out), out
    dec += block(c, c) + c * image_channels * 25 + image_channels
    return enc, dec


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('size', sorted(CHANNELS))
def test_shapes_and_parameter_counts(size):
    enc = IntroVAEEncoder(size, CHANNELS[size])
    gen = IntroVAEGenerator(size, CHANNELS[size])
    with torch.no_grad():
        mu, logvar = enc(torch.rand(2, 3, size, size))
        img = gen(torch.randn(2, 512))
    assert mu.shape == logvar.shape == (2, 512)
    assert img.shape == (2, 3, size, size)
    assert (n_params(enc), n_params(gen)) == official_param_count(CHANNELS[size])


def test_official_model_sizes():
    assert 38.5e6 < sum(official_param_count(CHANNELS[256])) < 39.5e6
    assert 48.0e6 < sum(official_param_count(CHANNELS[1024])) < 50.0e6


def test_projection_only_when_channels_change():
    enc = IntroVAEEncoder(256, CHANNELS[256])
    shortcuts = [m.shortcut for m in enc.modules() if hasattr(m, 'shortcut')]
    projections = [s for s in shortcuts if isinstance(s, torch.nn.Conv2d)]
    # 32->64, 64->128, 128->256, 256->512 change channels; 512->512 and the 4x4 block do not.
    assert len(shortcuts) == 6 and len(projections) == 4


def test_grey_images_and_small_latent():
    enc = IntroVAEEncoder(32, CHANNELS[32], latent_dim=16, image_channels=1)
    gen = IntroVAEGenerator(32, CHANNELS[32], latent_dim=16, image_channels=1,
                            output_activation='sigmoid')
    mu, _ = enc(torch.rand(3, 1, 32, 32))
    out = gen(mu)
    assert out.shape == (3, 1, 32, 32) and 0 <= out.min() and out.max() <= 1


def test_logvar_is_kept_finite():
    enc = IntroVAEEncoder(32, CHANNELS[32], latent_dim=4)
    with torch.no_grad():
        enc.fc.bias.fill_(1e4)
    mu, logvar = enc(torch.rand(2, 3, 32, 32))
    assert torch.isfinite(logvar.exp()).all()


@pytest.mark.parametrize('size,channels,match', [
    (256, (32, 64, 128), r'256 needs 6 entries'),
    (100, (32, 64), r'power of two'),
    (2048, CHANNELS[1024], r'power of two'),
])
def test_channel_list_that_does_not_fit_is_rejected(size, channels, match):
    with pytest.raises(ValueError, match=match):
        IntroVAEEncoder(size, channels)
    with pytest.raises(ValueError, match=match):
        IntroVAEGenerator(size, channels)


def test_wrong_input_size_names_the_expected_size():
    enc = IntroVAEEncoder(32, CHANNELS[32])
    with pytest.raises(ValueError, match='32x32'):
        enc(torch.rand(1, 3, 64, 64))
