"""Any MMagic generator and any backbone as the encoder: the network contract, the
encoder wrapper (BackboneEncoder), StyleGAN2's injected noise, and every objective
training DCGAN's and StyleGAN2's networks from tools/train.py (resume, inference tools,
two-process DDP).

The StyleGAN2 pairing is shrunk to 16x16 grey (its channels are 512 at 4..32 pixels,
fixed by MMagic): the smallest size that exercises its mapping network, noise injection,
upsampling blocks and the discriminator's residual blocks.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import mmintrovae  # noqa: F401  (registers BackboneEncoder and the models)
from _images import write_image_folder

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS = osp.join(REPO, 'tests')


# ------------------------------------------------------------------ building blocks
def dcgan_encoder(latent=8, size=32, channels=1, **kwargs):
    return dict(type='BackboneEncoder', latent_dim=latent, image_size=size,
                image_channels=channels,
                backbone=dict(type='DCGANDiscriminator', input_scale=size, output_scale=4,
                              in_channels=channels, base_channels=8, out_channels=32),
                **kwargs)


def dcgan_generator(latent=8, size=32, channels=1):
    return dict(type='DCGANGenerator', output_scale=size, out_channels=channels,
                base_channels=32, noise_size=latent, out_act_cfg=None)


def stylegan2_generator(latent=16, size=16, channels=1):
    return dict(type='StyleGAN2Generator', out_size=size, style_channels=latent,
                out_channels=channels, num_mlps=2)


def stylegan2_encoder(latent=16, size=16, channels=1, group_size=1):
    return dict(type='BackboneEncoder', latent_dim=latent, image_size=size,
                image_channels=channels,
                backbone=dict(type='StyleGAN2Discriminator', in_size=size, img_channels=channels,
                              mbstd_cfg=dict(group_size=group_size, channel_groups=1)))


def build_model(encoder, generator, model_type='IntroVAE', channels=1, **kwargs):
    from mmintrovae.models import IntroVAE, SoftIntroVAE
    cls = dict(IntroVAE=IntroVAE, SoftIntroVAE=SoftIntroVAE)[model_type]
    return cls(encoder=encoder, generator=generator,
               data_preprocessor=dict(type='DataPreprocessor', mean=[127.5] * channels,
                                      std=[127.5] * channels), **kwargs)


# ------------------------------------------------------------------ the encoder wrapper
def test_backbone_encoder_shapes_width_and_logvar_clamp():
    from mmagic.registry import MODELS
    torch.manual_seed(0)
    enc = MODELS.build(dcgan_encoder(latent=8, size=32, logvar_range=(-3.0, 2.0)))
    assert enc.feature_dim == 32  # DCGANDiscriminator's out_channels at 1x1, probed
    assert enc.head.in_features == 32 and enc.head.out_features == 16
    mu, logvar = enc(torch.randn(5, 1, 32, 32))
    assert mu.shape == logvar.shape == (5, 8)
    with torch.no_grad():
        enc.head.bias[8:] = 50.0  # logvar far above the range
    _, logvar = enc(torch.randn(2, 1, 32, 32))
    assert torch.all(logvar == 2.0)
    with torch.no_grad():
        enc.head.bias[8:] = -50.0
    assert torch.all(enc(torch.randn(2, 1, 32, 32))[1] == -3.0)
    with pytest.raises(ValueError, match=r'\(1, 32, 32\)'):
        enc(torch.randn(2, 1, 16, 16))


def test_spectral_norm_encoder_keeps_its_init_its_parameters_and_its_state_dict():
    from mmagic.registry import MODELS
    from torch.nn.utils import parametrize
    torch.manual_seed(0)
    enc = MODELS.build(dcgan_encoder(latent=8, size=32, spectral_norm=True))
    convs = {n: m for n, m in enc.backbone.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert set(enc.spectral_normed) == set(convs) and len(convs) >= 3
    # an optimizer built before init_weights (as MMEngine's runner does) must keep
    # training the weights the parametrisation reads
    originals = [m.parametrizations.weight.original for m in convs.values()]
    optimizer = torch.optim.SGD(enc.parameters(), lr=0.1)
    enc.init_weights()
    for m, original in zip(convs.values(), originals):
        assert parametrize.is_parametrized(m, 'weight')
        assert m.parametrizations.weight.original is original
        # DCGAN's N(0, 0.02) init reached the stored weights (PyTorch's default
        # would give std 0.05-0.14 for these fan-ins)
        assert abs(float(original.std()) - 0.02) < 0.004
    opt_params = {id(p) for g in optimizer.param_groups for p in g['params']}
    assert all(id(o) in opt_params for o in originals)
    # after some power iterations in train mode each effective weight has spectral norm ~1
    enc.train()
    for _ in range(30):
        enc(torch.randn(4, 1, 32, 32))
    for m in convs.values():
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert 0.9 < float(sigma) < 1.1
    # a fresh encoder loads the state dict (same keys) and computes the same posterior
    fresh = MODELS.build(dcgan_encoder(latent=8, size=32, spectral_norm=True))
    fresh.load_state_dict(enc.state_dict())
    enc.eval(), fresh.eval()
    x = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(enc(x), fresh(x))
    plain = MODELS.build(dcgan_encoder(latent=8, size=32))
    assert plain.spectral_normed == () and not any(
        parametrize.is_parametrized(m) for m in plain.modules())
    # the whole model initialises through MMEngine's top-level init_weights (as the runner
    # does), which fails on modules created during it
    model = build_model(dcgan_encoder(latent=8, size=32, spectral_norm=True), dcgan_generator())
    model.init_weights()
    assert all(parametrize.is_parametrized(model.encoder.backbone.get_submodule(n), 'weight')
               for n in model.encoder.spectral_normed)


def test_stylegan2_discriminator_as_encoder_is_per_image_and_reads_512_features():
    """Minibatch stddev with group 4 mixes batch mates into each posterior; the wrapper
    sets it to 1 (with a warning) and replaces the 1-wide realness score by its head."""
    from mmagic.registry import MODELS
    torch.manual_seed(0)
    x = torch.randn(4, 1, 16, 16)

    raw = MODELS.build(stylegan2_encoder(group_size=4)['backbone']).eval()
    with torch.no_grad():  # the unwrapped discriminator: an image's score depends on the batch
        assert not torch.allclose(raw(x)[:1], raw(x[:1]), atol=1e-4)

    with pytest.warns(UserWarning, match='group_size=4'):
        enc = MODELS.build(stylegan2_encoder(group_size=4))
    enc.eval()
    assert enc.neutralised_mbstd == 1 and enc.backbone.mbstd_layer.group_size == 1
    assert enc.removed_layers == ('final_linear.1', ) and enc.feature_dim == 512
    with torch.no_grad():
        mu_batch, logvar_batch = enc(x)
        for i in range(4):
            mu_i, logvar_i = enc(x[i:i + 1])
            torch.testing.assert_close(mu_i, mu_batch[i:i + 1], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(logvar_i, logvar_batch[i:i + 1], atol=1e-5, rtol=1e-4)

    with warnings.catch_warnings(record=True) as caught:  # group_size=1: nothing to say
        warnings.simplefilter('always')
        assert MODELS.build(stylegan2_encoder(group_size=1)).neutralised_mbstd == 0
    assert not [w for w in caught if 'BackboneEncoder' in str(w.message)]


def test_backbone_encoder_bad_config_names_the_key():
    from mmagic.registry import MODELS
    with pytest.raises(ValueError, match="no submodule 'final_layer'"):
        MODELS.build(dcgan_encoder(remove_layers=['final_layer']))
    with pytest.raises(ValueError, match='latent_dim'):
        MODELS.build(dcgan_encoder(latent=0))
    with pytest.warns(UserWarning, match='fewer than latent_dim=64'):
        MODELS.build(dcgan_encoder(latent=64))  # 32 features for a 64-d posterior


# ------------------------------------------------------------------ the network contract
def test_image_shape_and_latent_size_come_from_probes_not_residual_attributes():
    from mmintrovae.apis.images import image_channels, image_size
    from mmintrovae.apis.sampling import latent_dim
    from mmintrovae.evaluation import IntroVAESWD
    model = build_model(dcgan_encoder(latent=8, size=32), dcgan_generator(latent=8, size=32))
    for net in (model.generator, model.encoder):
        assert not hasattr(net, 'image_size') and not hasattr(net, 'image_channels')
    assert model.image_shape == (1, 32, 32)
    assert (image_size(model), image_channels(model), latent_dim(model)) == (32, 1, 8)
    swd = IntroVAESWD(fake_nums=4)
    swd.prepare(model, None)
    assert swd.image_shape == (1, 32, 32) and swd.resolutions == [32, 16]
    # a reference set smaller than fake_nums: SWD pairs equally many real and fake images,
    # so both shrink to it (MMagic's sampler refused the run after training before)
    swd = IntroVAESWD(fake_nums=10)
    swd.prepare(model, SimpleNamespace(dataset=list(range(6))))
    assert swd.fake_nums == swd.real_nums == 6
    swd = IntroVAESWD(fake_nums=4)
    swd.prepare(model, SimpleNamespace(dataset=list(range(6))))
    assert swd.fake_nums == swd.real_nums == 4


def test_probe_leaves_rng_batchnorm_statistics_and_modes_alone():
    from mmagic.registry import MODELS
    from mmintrovae.models import check_pair
    gen = MODELS.build(dcgan_generator(latent=8))
    enc = MODELS.build(dcgan_encoder(latent=8))
    enc.backbone.eval()  # a submodule in a mode of its own is kept so
    buffers = {k: v.clone() for k, v in [*gen.state_dict().items(), *enc.state_dict().items()]}
    rng = torch.get_rng_state()
    assert check_pair(enc, gen) == (1, 32, 32)
    assert torch.equal(torch.get_rng_state(), rng)
    after = {**gen.state_dict(), **enc.state_dict()}
    assert all(torch.equal(after[k], v) for k, v in buffers.items())
    assert gen.training and enc.training and not enc.backbone.training


def test_mismatched_networks_are_named():
    with pytest.raises(ValueError, match=r'noise_size=16.*\(1, 16\)'):
        build_model(dcgan_encoder(latent=8), dcgan_generator(latent=16))
    with pytest.raises(ValueError, match=r'encoder BackboneEncoder fails on the images of '
                                         r'generator DCGANGenerator \(shape \(1, 1, 64, 64\)\)'):
        build_model(dcgan_encoder(size=32), dcgan_generator(size=64))


def test_residual_networks_still_build_and_probe():
    from mmintrovae.models import IntroVAE
    model = IntroVAE(encoder=dict(type='IntroVAEEncoder'), generator=dict(type='IntroVAEGenerator'),
                     architecture=dict(image_size=32, channels=(8, 16, 16), latent_dim=8,
                                       image_channels=3))
    assert model.image_shape == (3, 32, 32) and model.noise_size == 8


# ------------------------------------------------------------------ StyleGAN2's noise
def _with_visible_noise(model):
    """StyleGAN2 starts with zero noise strengths; make the injected noise matter."""
    for name, p in model.generator.named_parameters():
        if name.endswith('noise_injector.weight'):
            p.data.fill_(1.0)
    return model


def test_stylegan2_decodes_with_fresh_noise_in_training_and_stored_noise_in_the_tools():
    """The decision (docs/notes/seam.md): training keeps StyleGAN2's fresh noise per
    decode (so Soft-IntroVAE's re-decodings are noisy, as in the authors' style-based
    code); the inference tools decode with the generator's stored noise maps, so a seed
    gives the same image in every call and every batch."""
    from mmintrovae.apis import decode_kwargs, interpolate, reconstruct_images, sample
    torch.manual_seed(0)
    model = _with_visible_noise(build_model(stylegan2_encoder(), stylegan2_generator()))
    z = torch.randn(3, 16)
    model.train()
    assert not torch.allclose(model.generator(z), model.generator(z))  # training: fresh noise
    model.eval()
    assert decode_kwargs(model.generator) == dict(randomize_noise=False)
    a = sample(model, 4, seed=3, batch_size=4)
    b = sample(model, 4, seed=3, batch_size=1)
    assert np.array_equal(a, b)
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1), dtype=np.uint8)
    assert np.array_equal(reconstruct_images(model, list(images)),
                          reconstruct_images(model, list(images)))
    frames = interpolate(model, 1, 2, steps=3)
    assert np.array_equal(frames[0], sample(model, 1, seed=1)[0])


def test_stylegan2_takes_data_in_minus_one_to_one():
    """The style recipe's preprocessor (mean = std = 127.5): [-1, 1] in, and outputs
    mapped back to [0, 255] with the same statistics."""
    from mmintrovae.models import SoftIntroVAE
    model = SoftIntroVAE(encoder=stylegan2_encoder(channels=3), generator=stylegan2_generator(
        channels=3), data_preprocessor=dict(type='DataPreprocessor', mean=[127.5] * 3,
                                            std=[127.5] * 3, output_channel_order='RGB'))
    from conftest import make_batch
    batch, _ = make_batch(n=2, size=16, channels=3)
    x = model.training_images(batch)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.5 and x.max() > 0.5
    out = model.to_bgr255(x)
    assert out.min() >= 0 and out.max() <= 255


# ------------------------------------------------------------------ tools/train.py (slow)
def env_with(**extra):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join([REPO, TESTS] + ([env['PYTHONPATH']]
                                                         if env.get('PYTHONPATH') else []))
    env.update(extra)
    return env


def run(cmd, env=None, timeout=900):
    result = subprocess.run(cmd, cwd=REPO, env=env or env_with(), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


RECIPES = {  # objective -> (DCGAN recipe, the residual recipe it inherits from)
    'introvae': 'configs/introvae_dcgan_fashionmnist32.py',
    'softintrovae': 'configs/softintrovae_dcgan_fashionmnist32.py',
    'vae': 'configs/vae_dcgan_fashionmnist32.py',
}


def write_config(folder, objective, pairing, data_root, iters=2, extra='', **model):
    """The objective's DCGAN Fashion-MNIST recipe, shrunk (batch 2, no validation, a
    checkpoint every iteration, a 1-iteration VAE warm-up); for ``pairing='stylegan2'``
    with StyleGAN2's networks at 16x16. ``model``: more model keys."""
    size = 32
    if pairing == 'stylegan2':
        size = 16
        # channels_last: StyleGAN2's discriminator view()s its features, which a
        # channels-last tensor refuses; the CPU recipes' layout is for the other networks
        model.update(encoder=dict(stylegan2_encoder(), _delete_=True),
                     generator=dict(stylegan2_generator(), _delete_=True), channels_last=False)
    if objective != 'vae':
        model.update(vae_warmup_iters=1)
    text = textwrap.dedent(f"""\
        _base_ = [{osp.join(REPO, RECIPES[objective])!r}]
        model = {model!r}
        _data = dict(data_root={str(data_root)!r}, image_size={size})
        train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                                dataset=_data)
        val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                              dataset=dict(_data, max_images=4))
        test_dataloader = val_dataloader
        val_cfg = None
        val_dataloader = None
        val_evaluator = None
        train_cfg = dict(max_iters={iters}, val_interval={iters})
        default_hooks = dict(logger=dict(interval=1),
                             checkpoint=dict(interval=1, max_keep_ckpts=-1, save_best=None))
        visualizer = dict(vis_backends=[dict(type='VisBackend')])
        custom_hooks = [dict(type='RNGStateHook')]
        """) + textwrap.dedent(extra)
    path = osp.join(folder, f'{objective}_{pairing}.py')
    with open(path, 'w') as f:
        f.write(text)
    return path


def logged(work_dir):
    rows = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def train(cfg, work, *options, resume=False, env=None):
    cmd = [sys.executable, osp.join(REPO, 'tools/train.py'), str(cfg), '--work-dir', str(work)]
    if resume:
        cmd.append('--resume')
    if options:
        cmd += ['--cfg-options', *options]
    return run(cmd, env)


@pytest.mark.slow
@pytest.mark.parametrize('pairing', ['dcgan', 'stylegan2'])
@pytest.mark.parametrize('objective', ['introvae', 'softintrovae', 'vae'])
def test_each_objective_trains_each_pairing_from_tools_train(tmp_path, objective, pairing):
    data = write_image_folder(tmp_path / 'images', 4, 32 if pairing == 'dcgan' else 16, mode='L')
    # StyleGAN2: also validate (val_step: samples, reconstructions, KLs) with cheap metrics;
    # the DCGAN pairing runs the recipe's full metrics in the resume test below.
    validation = '' if pairing == 'dcgan' else '''\
        val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                              dataset=dict(_data, max_images=4))
        val_cfg = dict(type='MultiValLoop')
        val_evaluator = dict(type='Evaluator', metrics=[dict(type='PSNR', prefix='rec'),
                                                        dict(type='IntroVAEKL')])
        '''
    cfg = write_config(tmp_path, objective, pairing, data, extra=validation)
    train(cfg, tmp_path / 'work')
    if pairing == 'stylegan2':
        val = [r for r in logged(tmp_path / 'work') if 'rec/PSNR' in r]
        assert val and np.isfinite(val[0]['rec/PSNR']) and 'kl/kl_fake' in val[0], val
    assert osp.isfile(tmp_path / 'work' / 'iter_2.pth')
    last = [r for r in logged(tmp_path / 'work') if r.get('iter') == 2]
    assert last, logged(tmp_path / 'work')
    keys = ['loss_encoder', 'loss_generator', 'kl_real']
    if objective != 'vae':  # iteration 2 is past the 1-iteration warm-up
        keys += ['kl_rec', 'kl_fake']
    for key in keys:
        assert key in last[0] and np.isfinite(last[0][key]), (key, last[0])
    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    state = load_checkpoint_safely(str(tmp_path / 'work' / 'iter_2.pth'))['state_dict']
    assert any(k.startswith('encoder.backbone.') for k in state)
    assert any(k.startswith('encoder.head.') for k in state)


@pytest.mark.slow
def test_dcgan_recipe_resumes_exactly_evaluates_and_loads_in_the_inference_tools(tmp_path):
    """4 iterations straight == 2 iterations, then --resume to 4 (weights, optimizer
    state); the recipe's metrics (FID, SWD, MS-SSIM, PSNR, KL) on the checkpoint; and
    tools/{sample,reconstruct,interpolate}.py on it."""
    data = write_image_folder(tmp_path / 'images', 8, 32, mode='L')
    cfg = write_config(tmp_path, 'softintrovae', 'dcgan', data, iters=4,
                       ema_config=dict(type='ExponentialMovingAverage', momentum=0.5))
    train(cfg, tmp_path / 'ref')
    train(cfg, tmp_path / 'part', 'train_cfg.max_iters=2')
    train(cfg, tmp_path / 'part', resume=True)
    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    ref = load_checkpoint_safely(str(tmp_path / 'ref' / 'iter_4.pth'))
    part = load_checkpoint_safely(str(tmp_path / 'part' / 'iter_4.pth'))
    assert any(k.startswith('generator_ema.') for k in ref['state_dict'])
    for k, v in ref['state_dict'].items():
        assert torch.equal(v, part['state_dict'][k]), k
    for net in ('encoder', 'generator'):
        for pid, s in ref['optimizer'][net]['state'].items():
            for name, t in s.items():
                assert torch.equal(t, part['optimizer'][net]['state'][pid][name]), (net, pid)
    first = load_checkpoint_safely(str(tmp_path / 'ref' / 'iter_2.pth'))['state_dict']
    assert not torch.equal(first['generator.noise2feat.conv.weight'],
                           ref['state_dict']['generator.noise2feat.conv.weight'])

    ckpt = tmp_path / 'ref' / 'iter_4.pth'
    metrics = tmp_path / 'metrics.json'
    small = [f'test_evaluator.metrics.{i}.fake_nums=8' for i in (4, 5, 6)]
    run([sys.executable, osp.join(REPO, 'tools/test.py'), cfg, str(ckpt), '--work-dir',
         str(tmp_path / 'test'), '--out', str(metrics), '--cfg-options',
         'test_dataloader.batch_size=4', *small])
    values = json.loads(metrics.read_text())
    for key in ('rec/PSNR', 'kl/kl_fake_minus_real', 'SWD/avg', 'FID/fid', 'MS-SSIM/avg'):
        assert key in values and np.isfinite(values[key]), values

    tool = [sys.executable, '-c', 'import runpy, sys; sys.argv = sys.argv[1:]; '
            'runpy.run_path(sys.argv[0], run_name="__main__")']
    out = tmp_path / 'out'
    run(tool + [osp.join(REPO, 'tools/sample.py'), cfg, str(ckpt), '--num', '4', '--seed', '0',
                '--out', str(out / 'samples'), '--grid'])
    run(tool + [osp.join(REPO, 'tools/reconstruct.py'), cfg, str(ckpt), '--input', str(data),
                '--out', str(out / 'recons')])
    run(tool + [osp.join(REPO, 'tools/interpolate.py'), cfg, str(ckpt), '--seeds', '1', '2',
                '--steps', '3', '--out', str(out / 'interp')])
    from PIL import Image
    assert Image.open(out / 'samples' / 'sample_0000.png').size == (32, 32)
    assert len(os.listdir(out / 'recons')) == 8
    assert {'grid.png', 'interpolation.gif'} <= set(os.listdir(out / 'interp'))


@pytest.mark.slow
def test_two_gloo_processes_train_the_dcgan_pairing_in_step(tmp_path):
    """tools/dist_train.sh with 2 CPU processes (gloo) on the Soft-IntroVAE DCGAN recipe:
    the ranks see different images, DDP averages both networks' gradients, so every
    weight ends identical on both ranks (and has moved)."""
    import socket
    data = write_image_folder(tmp_path / 'images', 8, 32, mode='L')
    cfg = write_config(tmp_path, 'softintrovae', 'dcgan', data, iters=2, extra="""\
        custom_imports = dict(imports=['mmintrovae', '_dist_probe'], allow_failed_imports=False)
        custom_hooks = [dict(type='RNGStateHook'), dict(type='RankStateDumpHook')]
        """)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    log = run(['bash', osp.join(REPO, 'tools/dist_train.sh'), cfg, '2', '--work-dir',
               str(tmp_path / 'dist')], env_with(PORT=str(port), PYTHON=sys.executable))
    assert 'gloo' in log
    load = lambda name: torch.load(tmp_path / 'dist' / name, map_location='cpu',  # noqa: E731
                                   weights_only=True)
    rank0, rank1, init = load('rank0_state.pth'), load('rank1_state.pth'), load('rank0_init.pth')
    weights = [k for k in rank0 if rank0[k].is_floating_point() and 'running' not in k
               and not k.startswith('generator_ema')]
    assert any(k.startswith('encoder.backbone.') for k in weights)
    assert [k for k in weights if not torch.equal(rank0[k], rank1[k])] == []
    assert all(not torch.equal(rank0[k], init[k]) for k in weights if k.endswith('weight')
               and 'bn' not in k)


@pytest.mark.slow
def test_style_recipe_builds_with_the_authors_style_settings():
    """configs/softintrovae_stylegan2_celebahq256.py: StyleGAN2 networks at 256, latent
    512, the style betas, [-1, 1] data, Adam betas (0, 0.99), a 10k-image EMA half-life."""
    from mmengine.config import Config

    from mmintrovae.apis import init_model
    cfg = Config.fromfile(osp.join(REPO, 'configs/softintrovae_stylegan2_celebahq256.py'))
    batch = cfg.train_dataloader.batch_size
    momentum = cfg.model.ema_config.momentum
    assert abs((1 - momentum)**(10000 / batch) - 0.5) < 1e-9  # 10k images halve the gap
    for net in ('encoder', 'generator'):
        assert tuple(cfg.optim_wrapper[net].optimizer.betas) == (0.0, 0.99)
    model = init_model(cfg)
    assert type(model).__name__ == 'SoftIntroVAE'
    assert (model.beta_kl, model.beta_rec, model.noise_size) == (0.2, 0.05, 512)
    assert model.image_shape == (3, 256, 256)
    assert type(model.generator).__name__ == 'StyleGAN2Generator'
    assert type(model.encoder.backbone).__name__ == 'StyleGAN2Discriminator'
    assert model.encoder.backbone.mbstd_layer.group_size == 1 and model.encoder.feature_dim == 512
    pre = model.data_preprocessor
    assert pre.mean.flatten().tolist() == [127.5] * 3 and pre.std.flatten().tolist() == [127.5] * 3
    assert model.with_ema_gen


@pytest.mark.slow
@pytest.mark.parametrize('pairing', ['dcgan', 'stylegan2'])
@pytest.mark.parametrize('objective', ['introvae', 'softintrovae'])
def test_pairings_train_with_amp_and_the_collapse_monitor(tmp_path, objective, pairing):
    """What the residual networks have, with MMagic's networks: --amp (bf16 autocast on
    CPU) and the recipes' IntrospectionMonitorHook, which samples the generator to measure
    diversity (it once read a latent_dim only the residual generator has)."""
    from mmintrovae.engine.introspection_monitor_hook import _STATE_KEY
    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    data = write_image_folder(tmp_path / 'images', 4, 32 if pairing == 'dcgan' else 16, mode='L')
    hooks = '''\
        custom_hooks = [dict(type='RNGStateHook'),
                        dict(type='IntrospectionMonitorHook', interval=1, diversity_interval=1,
                             start_iters=0, num_samples=4)]
        optim_wrapper = dict(encoder=dict(dtype='bfloat16'), generator=dict(dtype='bfloat16'))
        '''
    cfg = write_config(tmp_path, objective, pairing, data, iters=3, extra=hooks)
    out = run([sys.executable, osp.join(REPO, 'tools/train.py'), str(cfg), '--work-dir',
               str(tmp_path / 'work'), '--amp'])
    assert 'Mixed precision on cpu: bfloat16 autocast' in out
    rows = [r for r in logged(tmp_path / 'work') if 'loss_encoder' in r]
    assert [r['iter'] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r['loss_encoder']) and np.isfinite(r['loss_generator']) for r in rows)
    meta = load_checkpoint_safely(str(tmp_path / 'work' / 'iter_3.pth'))['meta']
    monitor = meta[_STATE_KEY]
    assert monitor['diversity_reference'] is not None and monitor['diversity_reference'] > 0
