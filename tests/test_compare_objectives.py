"""tools/compare_objectives.py: the options it gives each run, its table and its picture."""
import os.path as osp
import sys

import numpy as np
import pytest
from mmengine.config import Config

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools'))
import compare_objectives as cmp  # noqa: E402


def cfg(name):
    return Config.fromfile(osp.join(REPO, 'configs', name))


def test_the_three_fashionmnist_recipes_train_equally_long():
    cfgs = [cfg(osp.basename(config)) for _, _, config in cmp.MODELS]
    assert [c.model.type for c in cfgs] == ['IntroVAE', 'IntroVAE', 'SoftIntroVAE']
    assert cfgs[0].model.alpha == 0 and cfgs[0].model.alpha_generator == 0
    assert len({c.train_cfg.max_iters for c in cfgs}) == 1
    assert len({c.train_dataloader.batch_size for c in cfgs}) == 1


def test_train_options_scale_the_warmup_and_skip_validation():
    intro = cfg('introvae_fashionmnist32.py')  # 200 of 800 iterations as a VAE
    opts = cmp.train_options(intro, 4)
    assert opts['train_cfg.max_iters'] == 4 and opts['default_hooks.checkpoint.interval'] == 4
    assert opts['model.vae_warmup_iters'] == 1
    assert opts['val_cfg'] is None and opts['val_evaluator'] is None
    assert 'model.vae_warmup_iters' not in cmp.train_options(intro, intro.train_cfg.max_iters)
    assert 'model.vae_warmup_iters' not in cmp.train_options(cfg('softintrovae_fashionmnist32.py'), 4)


def test_test_options_shrink_every_sample_metric():
    c = cfg('softintrovae_fashionmnist32.py')
    opts = cmp.test_options(c, 16, 32)
    assert opts['test_dataloader.dataset.max_images'] == 32
    sample_metrics = {i for i, m in enumerate(c.test_evaluator.metrics) if 'fake_nums' in m}
    assert len(sample_metrics) == 3  # SWD, FID, MS-SSIM
    assert {int(k.split('.')[2]) for k in opts if 'fake_nums' in k} == sample_metrics
    assert cmp.test_options(c, None, None) == {}


def test_table_and_picture(tmp_path):
    settings = dict(iters=4, fake_nums=16, test_images=16, batch_size=64, machine='2 CPU cores')
    metrics = {key: 1.0 for key, _, _ in cmp.COLUMNS}
    metrics['kl/kl_fake_minus_real'] = -0.01
    rows = [dict(label=label, config=config, iters=4, train_seconds=60.0, eval_seconds=30.0,
                 metrics=metrics) for _, label, config in cmp.MODELS]
    text = open(cmp.write_table(rows, settings, tmp_path / 'table.md')).read()
    lines = [line for line in text.splitlines() if line.startswith('| ')]
    assert len(lines) == 4 and 'FID' in lines[0] and 'train wall time' in lines[0]
    assert lines[3].startswith('| Soft-IntroVAE |') and '1.0 min' in lines[3]
    assert '-0.0' not in text and '4 iterations per model' in text

    from PIL import Image
    grids = [np.full((274, 274, 1), v, np.uint8) for v in (0, 128, 255)]
    path = cmp.side_by_side(grids, ['VAE', 'IntroVAE', 'Soft-IntroVAE'], tmp_path / 's.png')
    img = Image.open(path)
    assert img.width >= 3 * 2 * 274 and img.height > 2 * 274  # zoomed x2, with a label row


@pytest.mark.parametrize('argv', [['--iters', '0'], ['--fake-nums', '3']])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit):
        cmp.parse_args(argv)
