"""IntroVAEImageFolder: clear errors for missing/empty folders, max_images, real loading."""
import os.path as osp
import re

import pytest

from _images import write_image_folder
from mmengine.registry import init_default_scope

import mmintrovae.datasets  # noqa: F401  (registers IntroVAEImageFolder)
from mmagic.registry import DATASETS

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


# ---------------------------------------------------------------- bad and grey files
def _break(folder, kind, name='img_001'):
    """Replace folder/name.png by a bad file of the given kind; returns its path."""
    import io

    from PIL import Image
    good = folder / f'{name}.png'
    if kind == 'truncated_jpg':
        buf = io.BytesIO()
        Image.open(good).convert('RGB').save(buf, format='JPEG')
        good.unlink()
        bad, data = folder / f'{name}.jpg', buf.getvalue()
        data = data[:len(data) // 2]  # OpenCV decodes this without complaint
    else:
        bad, data = good, good.read_bytes()
        data = {'garbage': b'this is not an image' * 10, 'empty': b'',
                'truncated_png': data[:len(data) // 2]}[kind]
    bad.write_bytes(data)
    return str(bad)


@pytest.fixture
def logs(monkeypatch):
    import mmintrovae.datasets.image_folder as mod
    records = []
    monkeypatch.setattr(mod, 'print_log',
                        lambda msg, logger=None, level=None: records.append((level, msg)))
    return records


BAD_KINDS = ['garbage', 'empty', 'truncated_png', 'truncated_jpg']


@pytest.mark.parametrize('kind', BAD_KINDS)
def test_bad_image_is_skipped_with_one_warning(tmp_path, logs, kind):
    import logging
    write_image_folder(tmp_path / 'imgs', 4, 16)
    bad = _break(tmp_path / 'imgs', kind)
    ds = build(tmp_path / 'imgs', image_size=16, flip=False)  # on_bad_image='skip' default
    for _ in range(2):
        item = ds[1]  # the bad file: the next one instead
        assert osp.basename(item['data_samples'].gt_path) == 'img_002.png'
    assert ds[0]['data_samples'].gt_img.shape == (3, 16, 16)
    warnings = [m for level, m in logs if level == logging.WARNING]
    assert len(warnings) == 1 and bad in warnings[0], logs


@pytest.mark.parametrize('kind', BAD_KINDS)
def test_bad_image_raises_naming_the_file(tmp_path, kind):
    from mmintrovae.datasets.image_folder import UnreadableImageError
    write_image_folder(tmp_path / 'imgs', 3, 16)
    bad = _break(tmp_path / 'imgs', kind)
    ds = build(tmp_path / 'imgs', image_size=16, on_bad_image='error')
    assert ds[0]['data_samples'].gt_img.shape == (3, 16, 16)
    with pytest.raises(UnreadableImageError, match=re.escape(bad)) as e:
        ds[1]
    assert e.value.path == bad and 'on_bad_image' in str(e.value)


def test_last_bad_image_wraps_to_the_first(tmp_path, logs):
    write_image_folder(tmp_path / 'imgs', 3, 16)
    _break(tmp_path / 'imgs', 'garbage', name='img_002')
    item = build(tmp_path / 'imgs', image_size=16)[2]
    assert osp.basename(item['data_samples'].gt_path) == 'img_000.png'


def test_no_readable_image_at_all(tmp_path, logs):
    from mmintrovae.datasets.image_folder import UnreadableImageError
    write_image_folder(tmp_path / 'imgs', 2, 16)
    for name in ('img_000', 'img_001'):
        _break(tmp_path / 'imgs', 'garbage', name=name)
    with pytest.raises(UnreadableImageError, match='none of the 2 files'):
        build(tmp_path / 'imgs', image_size=16)[0]


def test_pipeline_errors_are_not_taken_for_bad_images(tmp_path, logs):
    write_image_folder(tmp_path / 'imgs', 2, 16)
    pipeline = [dict(type='LoadImageFromFile', key='gt'),
                dict(type='Flip', keys='no_such_key', flip_ratio=1.0), dict(type='PackInputs')]
    with pytest.raises(KeyError):
        build(tmp_path / 'imgs', pipeline=pipeline)[0]
    assert not logs


def test_on_bad_image_is_checked(tmp_path):
    write_image_folder(tmp_path / 'imgs', 1, 16)
    with pytest.raises(ValueError, match='on_bad_image'):
        build(tmp_path / 'imgs', on_bad_image='ignore')


def test_grey_files_in_a_colour_recipe_become_3_channels_and_are_logged_once(tmp_path, logs):
    import logging
    write_image_folder(tmp_path / 'grey', 3, 16, mode='L')
    ds = build(tmp_path / 'grey', image_size=16, flip=False)  # color_type='color'
    imgs = [ds[i]['data_samples'].gt_img for i in range(3)]
    for img in imgs:
        assert img.shape == (3, 16, 16)
        assert torch_equal_channels(img) and img.float().std() > 0
    infos = [m for level, m in logs if level == logging.INFO]
    assert len(infos) == 1 and 'img_000.png' in infos[0] and 'grey' in infos[0], logs

    write_image_folder(tmp_path / 'rgb', 2, 16)
    ds_rgb = build(tmp_path / 'rgb', image_size=16)
    ds_grey = build(tmp_path / 'grey', image_size=16, color_type='grayscale')
    ds_rgb[0], ds_rgb[1], ds_grey[0]
    assert len(logs) == 1  # nothing for colour files, nor for a grey recipe


def torch_equal_channels(img):
    return bool((img[0] == img[1]).all() and (img[1] == img[2]).all())


def test_jpeg_with_data_after_its_end_marker_is_fine(tmp_path, logs):
    from PIL import Image
    write_image_folder(tmp_path / 'imgs', 1, 16)
    png = tmp_path / 'imgs' / 'img_000.png'
    Image.open(png).save(tmp_path / 'imgs' / 'img_000.jpg')
    png.unlink()
    with open(tmp_path / 'imgs' / 'img_000.jpg', 'ab') as f:
        f.write(b'\0trailer' * 500)  # no end-of-image marker in the last bytes
    assert build(tmp_path / 'imgs', image_size=16)[0]['data_samples'].gt_img.shape == (3, 16, 16)
    assert not logs


def test_image_count_is_part_of_metainfo(tmp_path):
    """MMagic hashes metainfo into the FID statistics cache name: subsets must differ."""
    write_image_folder(tmp_path / 'imgs', 4, 16)
    assert build(tmp_path / 'imgs', pipeline=PIPELINE).metainfo['num_images'] == 4
    assert build(tmp_path / 'imgs', pipeline=PIPELINE, max_images=2).metainfo['num_images'] == 2
