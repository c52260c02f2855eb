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


def param_count(channels, latent_dim=512, image_channels=3, projection=None):
    """Parameters of the encoder and generator, counted from the layer shapes.

    projection(cin, cout) says whether a block has the 1x1 shortcut conv; by default
    when the channels differ (the 'identity' layout)."""
    projection = projection or (lambda cin, cout: cin != cout)

    def block(cin, cout):  # two bias-free 3x3 convs, two BNs (weight, bias), 1x1 projection
        return projection(cin, cout) * cin * cout + 9 * cin * cout + 9 * cout * cout + 4 * cout

    enc = image_channels * channels[0] * 25 + 2 * channels[0]  # conv5x5, BN
    c = channels[0]
    for out in channels[1:]:
        enc, c = enc + block(c, out), out
    enc += block(c, c) + c * 16 * 2 * latent_dim + 2 * latent_dim  # last block, fc
    c = channels[-1]
    dec = latent_dim * c * 16 + c * 16  # fc
    for out in reversed(channels):
        dec, c = dec + block(c, out), out
    dec += block(c, c) + c * image_channels * 25 + image_channels  # last block, conv5x5
    return enc, dec


def official_param_count(channels_arg, latent_dim=512):
    """The official networks' counts, by running the official code's own logic: main.py
    parses --channels with int(), networks.py adds the 1x1 conv when `inc is not outc`
    (an identity test: CPython shares int objects only up to 256)."""
    channels = [int(c) for c in channels_arg.split(',')]
    return param_count(channels, latent_dim, projection=lambda cin, cout: cin is not cout)


# The official scripts' --channels; 128 has no official script (the same quirk would apply).
OFFICIAL_ARGS = {1024: '16,32,64,128,256,512,512,512', 256: '32,64,128,256,512,512',
                 128: '64,128,256,512,512'}
# (encoder, generator) parameters, pinned: official layout, and the identity layout.
OFFICIAL_COUNTS = {1024: (27_969_616, 21_428_147), 256: (22_973_600, 16_452_963),
                   128: (22_918_464, 16_480_963)}
IDENTITY_COUNTS = {1024: (27_445_328, 20_903_859), 256: (22_711_456, 16_190_819),
                   128: (22_656_320, 16_218_819)}


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
    assert (n_params(enc), n_params(gen)) == param_count(CHANNELS[size])


def test_hand_counts_of_the_official_networks():
    for size, arg in OFFICIAL_ARGS.items():
        assert official_param_count(arg) == OFFICIAL_COUNTS[size], size
        assert param_count(CHANNELS[size]) == IDENTITY_COUNTS[size], size
    # a 1x1 512 -> 512 conv has 262,144 weights: one more per network at 256, two at 1024
    for size, extra in ((1024, 2), (256, 1), (128, 1)):
        assert all(o - i == extra * 512 * 512
                   for o, i in zip(OFFICIAL_COUNTS[size], IDENTITY_COUNTS[size])), size
    assert 39.4e6 < sum(OFFICIAL_COUNTS[256]) < 39.5e6  # "about 39 M"
    assert 49.3e6 < sum(OFFICIAL_COUNTS[1024]) < 49.5e6  # "about 49 M"


@pytest.mark.parametrize('size', sorted(OFFICIAL_COUNTS))
def test_official_shortcuts_give_the_official_parameter_counts(size):
    # 1024 is big (49 M parameters): build on the meta device, no memory or init cost
    with torch.device('meta'):
        enc = IntroVAEEncoder(size, CHANNELS[size], shortcut='official')
        gen = IntroVAEGenerator(size, CHANNELS[size], shortcut='official')
    assert (n_params(enc), n_params(gen)) == OFFICIAL_COUNTS[size]


def projections(module):
    """(in, out) channels of every residual block with a 1x1 projection, in order."""
    return [(m.conv1.in_channels, m.conv1.out_channels) for m in module.modules()
            if hasattr(m, 'shortcut') and isinstance(m.shortcut, torch.nn.Conv2d)]


def test_projection_only_when_channels_change():
    enc = IntroVAEEncoder(256, CHANNELS[256])
    shortcuts = [m.shortcut for m in enc.modules() if hasattr(m, 'shortcut')]
    # 32->64, 64->128, 128->256, 256->512 change channels; 512->512 and the 4x4 block do not.
    assert len(shortcuts) == 6
    assert projections(enc) == [(32, 64), (64, 128), (128, 256), (256, 512)]


def test_official_shortcuts_are_on_the_blocks_between_two_512_entries():
    with torch.device('meta'):
        enc = IntroVAEEncoder(1024, CHANNELS[1024], shortcut='official')
        gen = IntroVAEGenerator(1024, CHANNELS[1024], shortcut='official')
    # encoder: every block between entries; not the last (the last entry to itself)
    assert projections(enc) == [(16, 32), (32, 64), (64, 128), (128, 256), (256, 512),
                                (512, 512), (512, 512)]
    blocks = [m for m in enc.modules() if hasattr(m, 'shortcut')]
    assert len(blocks) == 8 and isinstance(blocks[-1].shortcut, torch.nn.Identity)
    # generator: not the first (the last entry to itself) nor the last (16 to itself)
    assert projections(gen) == [(512, 512), (512, 512), (512, 256), (256, 128), (128, 64),
                                (64, 32), (32, 16)]
    blocks = [m for m in gen.modules() if hasattr(m, 'shortcut')]
    assert isinstance(blocks[0].shortcut, torch.nn.Identity) and blocks[0].conv1.in_channels == 512


def test_official_shortcuts_leave_equal_entries_up_to_256_alone():
    """CPython shares ints up to 256, so the official code sees 16 is 16."""
    enc = IntroVAEEncoder(32, (8, 16, 16), latent_dim=4, shortcut='official')
    gen = IntroVAEGenerator(32, (8, 16, 16), latent_dim=4, shortcut='official')
    assert projections(enc) == [(8, 16)] and projections(gen) == [(16, 8)]
    assert n_params(enc) == n_params(IntroVAEEncoder(32, (8, 16, 16), latent_dim=4))


def test_identity_checkpoints_load_in_the_identity_layout_only():
    identity = IntroVAEEncoder(128, CHANNELS[128], latent_dim=8)
    state = identity.state_dict()
    IntroVAEEncoder(128, CHANNELS[128], latent_dim=8).load_state_dict(state)  # the default
    official = IntroVAEEncoder(128, CHANNELS[128], latent_dim=8, shortcut='official')
    with pytest.raises(RuntimeError, match=r'Missing key.*features\.\d+\.shortcut\.weight'):
        official.load_state_dict(state)


def test_a_block_that_changes_channels_cannot_drop_its_projection():
    from mmintrovae.models import ResidualBlock
    assert isinstance(ResidualBlock(16, 16, projection=True).shortcut, torch.nn.Conv2d)
    with pytest.raises(ValueError, match='from 16 to 32 channels needs a projection'):
        ResidualBlock(16, 32, projection=False)


def test_invalid_shortcut_names_the_key():
    for net in (IntroVAEEncoder, IntroVAEGenerator):
        with pytest.raises(ValueError, match="shortcut must be one of.*'official'.*'none'"):
            net(32, CHANNELS[32], shortcut='none')


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


@pytest.mark.parametrize('config, size', [('introvae_celebahq1024.py', 1024),
                                          ('introvae_celebahq256.py', 256),
                                          ('introvae_celebahq128.py', 128)])
def test_celebahq_recipes_build_the_official_networks(config, size):
    import os.path as osp

    from mmengine import Config
    arch = dict(Config.fromfile(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                                         'configs', config)).model.architecture)
    assert arch['shortcut'] == 'official'
    with torch.device('meta'):
        enc = IntroVAEEncoder(**arch)
        gen = IntroVAEGenerator(**arch)
    assert (n_params(enc), n_params(gen)) == OFFICIAL_COUNTS[size]


def test_soft_introvae_celebahq_recipe_keeps_the_identity_layout():
    import os.path as osp

    from mmengine import Config
    cfg = Config.fromfile(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                                   'configs', 'softintrovae_celebahq256.py'))
    assert cfg.model.architecture.shortcut == 'identity'


def test_bilinear_upsampling_replaces_every_nearest_upsampling():
    """upsample_mode='bilinear' (the cure for the nearest-neighbour grid texture) changes
    only the upsampling: same parameters, other images; a bad mode names the key."""
    torch.manual_seed(0)
    nearest = IntroVAEGenerator(32, CHANNELS[32], latent_dim=8)
    bilinear = IntroVAEGenerator(32, CHANNELS[32], latent_dim=8, upsample_mode='bilinear')
    bilinear.load_state_dict(nearest.state_dict())  # no new parameters or buffers
    modes = [m.mode for m in bilinear.modules() if isinstance(m, torch.nn.Upsample)]
    assert modes == ['bilinear'] * len(CHANNELS[32])
    assert {m.mode for m in nearest.modules() if isinstance(m, torch.nn.Upsample)} == {'nearest'}
    z = torch.randn(2, 8)
    nearest.eval(), bilinear.eval()
    with torch.no_grad():
        a, b = nearest(z), bilinear(z)
    assert a.shape == b.shape and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="upsample_mode must be one of"):
        IntroVAEGenerator(32, CHANNELS[32], upsample_mode='bicubic-ish')


def test_generator_only_architecture_keys_do_not_reach_the_encoder():
    from mmintrovae.models import IntroVAE
    model = IntroVAE(encoder=dict(type='IntroVAEEncoder'), generator=dict(type='IntroVAEGenerator'),
                     architecture=dict(image_size=32, channels=CHANNELS[32], latent_dim=8,
                                       upsample_mode='bilinear', output_activation='sigmoid'),
                     data_preprocessor=dict(type='DataPreprocessor', mean=[0.0] * 3,
                                            std=[255.0] * 3))
    assert {m.mode for m in model.generator.modules()
            if isinstance(m, torch.nn.Upsample)} == {'bilinear'}
