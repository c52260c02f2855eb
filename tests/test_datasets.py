"""IntroVAEImageFolder: clear errors for missing/empty folders, max_images, real loading."""
import os.path as osp
import re

import pytest

pytest.importorskip('mmcv.ops')  # mmagic imports compiled mmcv ops; skip until mmcv is built

from _images import write_image_folder  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import mmintrovae.datasets  # noqa: E402,F401  (registers IntroVAEImageFolder)
from mmagic.registry import DATASETS  # noqa: E402

PIPELINE = [dict(type='LoadImageFromFile', key='gt'), dict(type='PackInputs')]


def build(root, **kwargs):
    init_default_scope('mmagic')  # configs set default_scope='mmagic'; mmcv has its own Load*
    return DATASETS.build(dict(type='IntroVAEImageFolder', data_root=str(root),
                               data_prefix=dict(gt=''), **kwargs))


def test_missing_folder_names_path_and_hint(tmp_path):
    missing = tmp_path / 'data' / 'emoji' / 'train'
    hint = 'run: python tools/prepare_data.py emoji'
    with pytest.raises(FileNotFoundError) as e:
        build(missing, hint=hint)
    assert str(missing) in str(e.value) and hint in str(e.value)


def test_relative_missing_folder_is_reported_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    where = re.escape(str(tmp_path / 'data' / 'celebahq' / 'train'))
    with pytest.raises(FileNotFoundError, match=where):
        build('data/celebahq/train')


def test_empty_folder(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'readme.txt').write_text('not an image')
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / 'empty'))):
        build(tmp_path / 'empty')


def test_max_images_takes_first_sorted(tmp_path):
    write_image_folder(tmp_path / 'imgs', 7, 16)
    assert len(build(tmp_path / 'imgs')) == 7
    ds = build(tmp_path / 'imgs', max_images=3)
    assert [ds.get_data_info(i)['key'] for i in range(len(ds))] == ['img_000', 'img_001', 'img_002']


@pytest.mark.parametrize('mode', ['RGB', 'L'])
def test_item_through_pipeline(tmp_path, mode):
    write_image_folder(tmp_path / 'imgs', 2, 24, mode=mode)
    item = build(tmp_path / 'imgs', pipeline=PIPELINE)[1]
    img = item['data_samples'].gt_img
    assert tuple(img.shape) == (3, 24, 24)  # grey PNGs are loaded as 3-channel colour
    assert osp.basename(item['data_samples'].gt_path) == 'img_001.png'
    assert img.float().std() > 0


def test_default_pipeline_resizes_flips_and_keeps_grey(tmp_path):
    write_image_folder(tmp_path / 'rgb', 2, 48)
    write_image_folder(tmp_path / 'grey', 2, 40, mode='L')
    rgb = build(tmp_path / 'rgb', image_size=32)
    grey = build(tmp_path / 'grey', image_size=32, color_type='grayscale', flip=False)
    assert rgb[0]['data_samples'].gt_img.shape == (3, 32, 32)
    assert grey[0]['data_samples'].gt_img.shape == (1, 32, 32)
    assert [type(t).__name__ for t in rgb.pipeline.transforms] == \
        ['LoadImageFromFile', 'Resize', 'Flip', 'PackInputs']
    assert 'Flip' not in [type(t).__name__ for t in grey.pipeline.transforms]
