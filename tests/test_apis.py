"""Inference API (mmintrovae.apis) and tools/{sample,reconstruct,interpolate}.py.

A real grey checkpoint comes from tools/train.py (Fashion-MNIST recipe, 2
iterations on a generated folder); a tiny RGB model is built from the emoji
recipe in-process, to cover channel order.
"""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from _images import write_image_folder

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
GREY_CONFIG = osp.join(REPO, 'configs/introvae_fashionmnist32.py')
RGB_CONFIG = osp.join(REPO, 'configs/introvae_emoji64.py')
TINY_RGB = {'model.architecture.image_size': 32, 'model.architecture.channels': (8, 16, 16),
            'model.architecture.latent_dim': 8}

pytestmark = pytest.mark.slow


def tool_cmd(name, *args):
    return [sys.executable, osp.join(REPO, 'tools', name), *map(str, args)]


def run_tool(name, *args, check=True):
    result = subprocess.run(tool_cmd(name, *args), cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope='module')
def grey(tmp_path_factory):
    """(config, checkpoint, image folder) of a Fashion-MNIST-recipe model trained 2 iterations."""
    root = tmp_path_factory.mktemp('grey')
    data = write_image_folder(str(root / 'images'), 4, 32, mode='L')
    work = root / 'work'
    options = [
        'train_cfg.max_iters=2', 'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        f'train_dataloader.dataset.data_root={data}',
        f'val_dataloader.dataset.data_root={data}', f'test_dataloader.dataset.data_root={data}',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
        'default_hooks.checkpoint.interval=2', 'model.vae_warmup_iters=1',
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',  # no FID here
    ]
    result = run_tool('train.py', GREY_CONFIG, '--work-dir', work, '--cfg-options', *options,
                      check=False)
    ckpt = work / 'iter_2.pth'
    assert result.returncode == 0 and ckpt.is_file(), result.stderr[-3000:]
    return GREY_CONFIG, str(ckpt), data


@pytest.fixture(scope='module')
def grey_model(grey):
    from mmintrovae.apis import init_model
    return init_model(grey[0], grey[1])


@pytest.fixture(scope='module')
def rgb(tmp_path_factory):
    """(model, checkpoint) of a tiny RGB model after one training step."""
    from mmengine import MessageHub
    from mmengine.optim import OptimWrapper, OptimWrapperDict

    from conftest import make_batch
    from mmintrovae.apis import init_model
    torch.manual_seed(0)
    model = init_model(RGB_CONFIG, cfg_options=TINY_RGB).train()
    wrappers = OptimWrapperDict(
        encoder=OptimWrapper(torch.optim.Adam(model.encoder.parameters(), lr=1e-3)),
        generator=OptimWrapper(torch.optim.Adam(model.generator.parameters(), lr=1e-3)))
    MessageHub.get_current_instance().update_info('iter', 1000)  # past the VAE warm-up
    batch = make_batch(n=4, size=32)
    model.train_step(batch[0] if isinstance(batch, tuple) else batch, wrappers)
    MessageHub.get_current_instance().update_info('iter', 0)
    ckpt = str(tmp_path_factory.mktemp('rgb') / 'rgb.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    return model.eval(), ckpt


def distinct(a):
    return len({x.tobytes() for x in a})


# ------------------------------------------------------------------ loading
def test_init_model_loads_the_checkpoint_in_eval_mode(grey, grey_model):
    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    state = load_checkpoint_safely(grey[1])['state_dict']
    assert not grey_model.training
    for k, v in grey_model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_init_model_errors(grey, tmp_path):
    from mmintrovae.apis import init_model
    with pytest.raises(FileNotFoundError, match='config file not found'):
        init_model(str(tmp_path / 'nope.py'))
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        init_model(GREY_CONFIG, str(tmp_path / 'nope.pth'))
    with pytest.raises(RuntimeError, match='does not fit'):
        init_model(RGB_CONFIG, grey[1], cfg_options=TINY_RGB)


def test_rgb_checkpoint_round_trip(rgb):
    from mmintrovae.apis import init_model, sample
    model, ckpt = rgb
    loaded = init_model(RGB_CONFIG, ckpt, cfg_options=TINY_RGB)
    assert np.array_equal(sample(loaded, 3, seed=4), sample(model, 3, seed=4))


# ------------------------------------------------------------------ images
def test_conversions_match_the_data_preprocessor(rgb):
    from mmintrovae.apis.images import to_model_range, to_uint8
    model = rgb[0]
    rgb_imgs = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    x = to_model_range(model, rgb_imgs)
    # MMagic hands the preprocessor BGR images (cv2 decoding)
    bgr = [torch.from_numpy(i[..., ::-1].copy()).permute(2, 0, 1).float() for i in rgb_imgs]
    expected = model.data_preprocessor(dict(inputs=bgr), False)['inputs']
    assert torch.allclose(x, expected)
    assert 0 <= x.min() and x.max() <= 1  # the recipes' [0, 1]
    assert np.array_equal(to_uint8(model, x), rgb_imgs)


@pytest.mark.parametrize('which', ['grey', 'rgb'])
def test_prepare_images_matches_the_training_pipeline(which, grey_model, rgb, tmp_path):
    from mmintrovae.apis import prepare_images
    from mmintrovae.datasets.image_folder import IntroVAEImageFolder
    model = grey_model if which == 'grey' else rgb[0]
    folder = write_image_folder(str(tmp_path), 2, 48, mode='L' if which == 'grey' else 'RGB')
    dataset = IntroVAEImageFolder(data_root=folder, image_size=32, flip=False,
                                  color_type='grayscale' if which == 'grey' else 'color')
    ours = prepare_images(model, [osp.join(folder, 'img_001.png')])[0]
    theirs = dataset[1]['data_samples'].gt_img.permute(1, 2, 0).numpy()  # BGR (H, W, C)
    assert np.array_equal(ours, theirs[..., ::-1] if which == 'rgb' else theirs)


# ------------------------------------------------------------------ sampling
@pytest.mark.parametrize('which', ['grey', 'rgb'])
def test_sample(which, grey_model, rgb):
    from mmintrovae.apis import sample
    model = grey_model if which == 'grey' else rgb[0]
    channels = 1 if which == 'grey' else 3
    imgs = sample(model, 6, seed=3)
    assert imgs.shape == (6, 32, 32, channels) and imgs.dtype == np.uint8
    assert imgs.min() < imgs.max()
    assert distinct(imgs) == 6
    # Neither the batch size nor num changes the latents; the pictures only up to
    # rounding, since oneDNN may pick another convolution algorithm for another batch
    assert np.abs(imgs.astype(int) - sample(model, 6, seed=3, batch_size=4)).max() <= 1
    assert np.abs(imgs[:2].astype(int) - sample(model, 2, seed=3)).max() <= 1
    assert not np.array_equal(imgs, sample(model, 6, seed=4))
    assert distinct(np.concatenate([sample(model, 2, seed=s, truncation=0.0)
                                    for s in (1, 2)])) == 1
    x = sample(model, 2, seed=3, return_tensor=True)
    assert x.shape == (2, channels, 32, 32) and x.dtype == torch.float32


# ------------------------------------------------------------------ reconstruction
def test_reconstruct_images(rgb, tmp_path):
    from mmintrovae.apis import reconstruct_images
    from mmintrovae.apis.images import to_model_range, to_uint8
    model = rgb[0]
    folder = write_image_folder(str(tmp_path / 'imgs'), 3, 48)  # resized to 32
    files = sorted(os.listdir(folder))
    inputs, recs = reconstruct_images(model, [osp.join(folder, f) for f in files],
                                      batch_size=2, return_inputs=True)
    assert inputs.shape == recs.shape == (3, 32, 32, 3) and recs.dtype == np.uint8
    with torch.no_grad():
        direct = model.reconstruct(to_model_range(model, inputs))
    assert np.array_equal(recs, to_uint8(model, direct))
    grey_arr = np.asarray(Image.open(osp.join(folder, files[0])).convert('L'))
    assert reconstruct_images(model, [grey_arr]).shape == (1, 32, 32, 3)


def test_reconstruct_folder_refuses_to_overwrite_inputs(grey_model, grey):
    from mmintrovae.apis import reconstruct_folder
    with pytest.raises(ValueError, match='overwrite'):
        reconstruct_folder(grey_model, grey[2], grey[2])


# ------------------------------------------------------------------ interpolation
@pytest.mark.parametrize('mode', ['linear', 'slerp'])
def test_interpolate_seeds_ends_on_the_decoded_endpoints(rgb, mode):
    from mmintrovae.apis import interpolate, sample
    model = rgb[0]
    frames, latents = interpolate(model, 5, 9, steps=6, mode=mode, return_latents=True)
    assert frames.shape == (6, 32, 32, 3) and latents.shape == (6, 8)
    assert np.array_equal(frames[0], sample(model, 1, seed=5)[0])
    assert np.array_equal(frames[-1], sample(model, 1, seed=9)[0])
    assert distinct(frames) > 2


def test_interpolate_images_ends_on_their_reconstructions(grey_model, grey):
    from mmintrovae.apis import interpolate, list_images, reconstruct_images
    a, b = list_images(grey[2])[:2]
    frames = interpolate(grey_model, a, b, steps=4)
    recs = reconstruct_images(grey_model, [a, b])
    assert np.array_equal(frames[0], recs[0]) and np.array_equal(frames[-1], recs[1])


def test_save_gif(rgb, tmp_path):
    from mmintrovae.apis import interpolate, save_gif
    frames = interpolate(rgb[0], 0, 1, steps=5)
    path = save_gif(frames, tmp_path / 'a.gif', boomerang=True)
    with Image.open(path) as gif:
        assert gif.n_frames == 8 and gif.size == (32, 32)


# ------------------------------------------------------------------ tools
@pytest.fixture(scope='module', autouse=True)
def tool_runs(grey, tmp_path_factory):
    """The three tools on the grey checkpoint, started together as soon as it exists.

    Their imports (MMagic) dominate; running them beside each other and beside the
    in-process tests roughly halves this module's time on 2 cores.
    """
    config, ckpt, data = grey
    out = tmp_path_factory.mktemp('tools')
    cmds = dict(
        sample=tool_cmd('sample.py', config, ckpt, '--num', 5, '--seed', 7, '--truncation', 0.8,
                        '--out', out / 'samples', '--grid', 'grid.png'),
        reconstruct=tool_cmd('reconstruct.py', config, ckpt, '--input', data,
                             '--out', out / 'recons', '--grid'),
        interpolate=tool_cmd('interpolate.py', config, ckpt, '--seeds', 1, 2, '--steps', 6,
                             '--out', out / 'interp'))
    procs = {k: subprocess.Popen(c, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for k, c in cmds.items()}

    def result(name):
        proc = procs[name]
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
        return stdout, out
    yield result
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sample_tool(tool_runs, grey_model):
    from mmintrovae.apis import sample
    stdout, out = tool_runs('sample')
    out = out / 'samples'
    names = sorted(os.listdir(out))
    assert names == ['grid.png'] + [f'sample_{i:04d}.png' for i in range(5)]
    assert str(out / 'grid.png') in stdout and 'wrote 5 samples' in stdout
    written = np.stack([np.asarray(Image.open(out / n)) for n in names[1:]])[..., None]
    assert np.array_equal(written, sample(grey_model, 5, seed=7, truncation=0.8))


def test_reconstruct_tool(tool_runs, grey):
    stdout, out = tool_runs('reconstruct')
    out = out / 'recons'
    assert sorted(os.listdir(out)) == sorted(os.listdir(grey[2]) + ['grid.png'])
    assert Image.open(out / 'img_000.png').size == (32, 32)
    assert Image.open(out / 'grid.png').size == (8 * 34 + 2, 34 + 2)  # 4 pairs in a row
    assert 'wrote 4 reconstructions' in stdout


def test_interpolate_tool(tool_runs):
    stdout, out = tool_runs('interpolate')
    out = out / 'interp'
    frames = [np.asarray(Image.open(out / f'frame_{i:03d}.png')) for i in range(6)]
    assert {'grid.png', 'interpolation.gif'} <= set(os.listdir(out))
    assert 'interpolation.gif' in stdout
    merged = sum(np.array_equal(f, g) for f, g in zip(frames, frames[1:]))  # Pillow merges
    with Image.open(out / 'interpolation.gif') as gif:
        assert gif.n_frames == 6 - merged


def test_tools_name_missing_files(grey, tmp_path):
    missing = str(tmp_path / 'missing.pth')
    for tool, extra in [('sample.py', ['--out', tmp_path]),
                        ('reconstruct.py', ['--input', grey[2], '--out', tmp_path]),
                        ('interpolate.py', ['--seeds', 1, 2, '--out', tmp_path])]:
        result = run_tool(tool, grey[0], missing, *extra, check=False)
        assert result.returncode != 0 and f'checkpoint file not found: {missing}' in result.stderr
    result = run_tool('interpolate.py', grey[0], grey[1], '--images', missing, missing,
                      '--out', tmp_path, check=False)
    assert result.returncode != 0 and 'image file not found' in result.stderr


# ------------------------------------------------------------------ MMagic's inferencer
def _unconditional_inferencer():
    """MMagic's UnconditionalInferencer class, imported for real.

    ``mmagic.apis`` (and so ``mmagic.apis.inferencers``) imports every inferencer, and the
    ControlNet-animation one needs controlnet_aux (timm, scikit-image: about 80 MB), which the
    set-up does not install because nothing in the plugin uses it. Only when that package is
    what is missing, the unconditional inferencer's own module is loaded without the two
    packages' ``__init__``: the class under test is the same. Any other import failure is an
    error of the environment and fails the test (no skip).
    """
    try:
        from mmagic.apis.inferencers.unconditional_inferencer import UnconditionalInferencer
        return UnconditionalInferencer
    except ModuleNotFoundError as e:
        if e.name != 'controlnet_aux':
            raise
    import importlib
    import types

    import mmagic
    for name in [m for m in sys.modules if m.startswith('mmagic.apis')]:
        del sys.modules[name]  # a half-imported package from the failed attempt
    apis_dir = osp.join(osp.dirname(mmagic.__file__), 'apis')
    for name, path in (('mmagic.apis', apis_dir),
                       ('mmagic.apis.inferencers', osp.join(apis_dir, 'inferencers'))):
        stub = types.ModuleType(name)
        stub.__path__ = [path]
        sys.modules[name] = stub
    try:
        return importlib.import_module(
            'mmagic.apis.inferencers.unconditional_inferencer').UnconditionalInferencer
    finally:
        for name in [m for m in sys.modules if m.startswith('mmagic.apis')]:
            del sys.modules[name]


def test_mmagic_unconditional_inferencer(rgb, tmp_path):
    from mmengine.config import Config

    from mmintrovae.apis import prior_noise, sample
    cls = _unconditional_inferencer()
    model, ckpt = rgb
    cfg = Config.fromfile(RGB_CONFIG)
    cfg.merge_from_dict(TINY_RGB)
    # MMagic's noise is eps ~ N(0, I), which the model maps through its own prior
    # (the recipe's aggregate posterior): the standard prior's draw is that eps
    noise = prior_noise(model, 3, seed=11, prior='standard')
    inferencer = cls(cfg, ckpt, device='cpu',
                     extra_parameters=dict(num_batches=3, noise=noise, sample_model='orig'))
    out = inferencer(result_out_dir=str(tmp_path / 'inferencer.png'))
    imgs = out[1]  # (N, 3, H, W) RGB in [0, 1], as the inferencer saves them
    assert tuple(imgs.shape) == (3, 3, 32, 32) and osp.isfile(tmp_path / 'inferencer.png')
    ours = torch.from_numpy(sample(model, 3, seed=11)).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(imgs, ours, atol=1 / 255 + 1e-6)  # same colours, not R/B swapped
