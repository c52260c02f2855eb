"""tools/train.py runs each CelebA-HQ recipe end to end on a tiny generated folder."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from _images import write_image_folder

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LOSS_KEYS = ['loss_encoder', 'loss_generator', 'loss_ae', 'kl_real', 'kl_rec', 'kl_fake',
             'kl_rec_g', 'kl_fake_g']


def train(config, work_dir, data_root, size, iters=2, batch=2, extra=None):
    options = [
        f'train_cfg.max_iters={iters}',
        f'train_dataloader.batch_size={batch}', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
        f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1',
        'model.vae_warmup_iters=1',  # iteration 1 is a VAE step, iteration 2 introspective
        *(extra or ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']),
    ]
    cmd = [sys.executable, osp.join(REPO, 'tools/train.py'), osp.join(REPO, config),
           '--work-dir', str(work_dir), '--cfg-options', *options]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)


def logged_scalars(work_dir):
    rows = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


@pytest.mark.slow
@pytest.mark.parametrize('config,size', [
    ('configs/introvae_celebahq1024.py', 1024),
    ('configs/introvae_celebahq256.py', 256),
    ('configs/introvae_celebahq128.py', 128),
])
def test_celebahq_recipe_trains_and_checkpoints(tmp_path, config, size):
    data = write_image_folder(tmp_path / 'images', 4, size)
    work = tmp_path / 'work'
    result = train(config, work, data, size)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert osp.isfile(work / 'iter_2.pth')
    rows = logged_scalars(work)
    last = [r for r in rows if r.get('iter') == 2]
    assert last, rows
    for key in LOSS_KEYS:
        assert key in last[0], (key, last[0])
    assert 'eta' in result.stdout + result.stderr


@pytest.mark.slow
def test_missing_celebahq_folder_is_named(tmp_path):
    cmd = [sys.executable, osp.join(REPO, 'tools/train.py'),
           osp.join(REPO, 'configs/introvae_celebahq256.py'), '--work-dir', str(tmp_path),
           '--cfg-options', 'train_dataloader.dataset.data_root=' + str(tmp_path / 'nowhere')]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert str(tmp_path / 'nowhere') in result.stderr
    assert 'celebahq' in result.stderr.lower()


@pytest.mark.slow
def test_validation_reports_every_metric(tmp_path):
    """The recipes' evaluator end to end: reconstructions, KL balance, SWD, FID, MS-SSIM."""
    data = write_image_folder(tmp_path / 'images', 8, 32, mode='L')
    work = tmp_path / 'work'
    small = [f'val_evaluator.metrics.{i}.fake_nums=8' for i in (4, 5, 6)]
    result = train('configs/introvae_fashionmnist32.py', work, data, 32, batch=4,
                   extra=['val_dataloader.batch_size=4', *small])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    final = [r for r in logged_scalars(work) if 'FID/fid' in r]
    assert final, logged_scalars(work)
    for key in ('rec/PSNR', 'rec/SSIM', 'rec/MSE', 'kl/kl_real', 'kl/kl_rec', 'kl/kl_fake',
                'SWD/avg', 'FID/fid', 'MS-SSIM/avg'):
        assert key in final[0], key
    assert osp.isfile(work / 'best_FID_fid_iter_2.pth')


@pytest.mark.slow
def test_training_writes_sample_grids_and_tensorboard_events(tmp_path):
    data = write_image_folder(tmp_path / 'images', 4, 32, mode='L')
    work = tmp_path / 'work'
    result = train('configs/introvae_fashionmnist32.py', work, data, 32, extra=[
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
        'custom_hooks.1.interval=2',  # VisualizationHook (after RNGStateHook)
        'custom_hooks.1.vis_kwargs_list.0.n_samples=4',
        'custom_hooks.1.vis_kwargs_list.1.n_samples=4'])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    vis = glob.glob(osp.join(work, '*', 'vis_data'))[0]
    images = sorted(os.listdir(osp.join(vis, 'vis_image')))
    assert images == ['reconstructions_2.png', 'samples_2.png'], images
    from PIL import Image
    grid = Image.open(osp.join(vis, 'vis_image', 'samples_2.png'))
    low, high = grid.convert('L').getextrema()
    assert min(grid.size) >= 32 and low < high  # a picture, not a blank canvas
    assert glob.glob(osp.join(vis, 'events.out.tfevents.*'))


@pytest.mark.slow
def test_test_tool_writes_metrics_json(tmp_path):
    data = write_image_folder(tmp_path / 'images', 8, 32, mode='L')
    work = tmp_path / 'work'
    assert train('configs/introvae_fashionmnist32.py', work, data, 32).returncode == 0
    small = [f'val_evaluator.metrics.{i}.fake_nums=8' for i in (4, 5, 6)]
    small += [f'test_evaluator.metrics.{i}.fake_nums=8' for i in (4, 5, 6)]
    out = tmp_path / 'metrics.json'
    cmd = [sys.executable, osp.join(REPO, 'tools/test.py'),
           osp.join(REPO, 'configs/introvae_fashionmnist32.py'), str(work / 'iter_2.pth'),
           '--work-dir', str(tmp_path / 'test'), '--out', str(out), '--cfg-options',
           f'test_dataloader.dataset.data_root={data}', 'test_dataloader.batch_size=4',
           'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False', *small]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(out.read_text())
    for key in ('rec/PSNR', 'kl/kl_fake_minus_real', 'SWD/avg', 'FID/fid', 'MS-SSIM/avg'):
        assert key in metrics, metrics
