"""tools/prepare_data.py as a user runs it: real outputs, idempotence, clear failures."""
import gzip
import os.path as osp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TOOL = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'prepare_data.py')
FMNIST = Path('/usr/share/datasets/fashion-mnist')
FONTS = Path('/usr/share/fonts')


def run(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def pngs(folder):
    return sorted(Path(folder).glob('*.png'))


def write_idx(path, n, seed):
    """A small fake idx3 file like the Debian package's (gzip, big-endian header)."""
    imgs = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    header = np.array([0x803, n, 28, 28], '>u4').tobytes()
    with gzip.open(path, 'wb') as f:
        f.write(header + imgs.tobytes())


@pytest.fixture
def fmnist_source(tmp_path):
    """The Debian package's files when installed, else synthetic ones in the same format."""
    if (FMNIST / 'train-images-idx3-ubyte.gz').exists():
        return FMNIST
    src = tmp_path / 'fake_fmnist'
    src.mkdir()
    write_idx(src / 'train-images-idx3-ubyte.gz', 30, 0)
    write_idx(src / 't10k-images-idx3-ubyte.gz', 25, 1)
    return src


def emoji_font():
    found = sorted(FONTS.rglob('NotoColorEmoji.ttf')) if FONTS.exists() else []
    if not found:
        pytest.skip('Debian package fonts-noto-color-emoji is not installed')
    return found[0]


def test_fashion_mnist(tmp_path, fmnist_source):
    r = run('fashion_mnist', '--limit', 20, '--out', tmp_path, '--source', fmnist_source,
            '--no-install')
    assert r.returncode == 0, r.stderr
    assert '40 images' in r.stdout
    for split in ('train', 'test'):
        files = pngs(tmp_path / 'fashion_mnist' / split)
        assert [f.name for f in files] == [f'{i:05d}.png' for i in range(20)]
        for f in files[:5]:
            im = Image.open(f)
            assert (im.size, im.mode) == ((32, 32), 'L')
            a = np.asarray(im)
            assert a.min() < a.max()  # not a constant image
            # 2 px of zero padding on every side (28 -> 32).
            assert not a[:2].any() and not a[-2:].any()
            assert not a[:, :2].any() and not a[:, -2:].any()
    assert not list(tmp_path.glob('.fashion_mnist.tmp-*'))  # temporary folder renamed away

    mtime = (tmp_path / 'fashion_mnist' / 'train' / '00000.png').stat().st_mtime_ns
    r = run('fashion_mnist', '--limit', 20, '--out', tmp_path, '--source', fmnist_source,
            '--no-install')
    assert r.returncode == 0 and 'already complete' in r.stdout
    assert (tmp_path / 'fashion_mnist' / 'train' / '00000.png').stat().st_mtime_ns == mtime

    # A different request (another --limit) rebuilds instead of keeping the old folder.
    r = run('fashion_mnist', '--limit', 5, '--out', tmp_path, '--source', fmnist_source,
            '--no-install')
    assert r.returncode == 0, r.stderr
    assert len(pngs(tmp_path / 'fashion_mnist' / 'test')) == 5


def test_emoji(tmp_path):
    emoji_font()
    r = run('emoji', '--size', 64, '--out', tmp_path, '--no-install')
    assert r.returncode == 0, r.stderr
    train, test = pngs(tmp_path / 'emoji' / 'train'), pngs(tmp_path / 'emoji' / 'test')
    total = len(train) + len(test)
    assert 800 <= total <= 1300, total
    assert 0.05 <= len(test) / total <= 0.15
    names = {f.name for f in train + test}
    assert 'u1f600.png' in names and 'u1f466_1f3fb.png' in names  # stable names, skin tones
    for f in train[::100] + test[::20]:
        im = Image.open(f)
        assert (im.size, im.mode) == ((64, 64), 'RGB')
        a = np.asarray(im).astype(int)
        assert a.std() > 10  # not blank
        assert (np.abs(a[..., 0] - a[..., 2]) > 40).mean() > 0.05  # coloured, not grey boxes

    r = run('emoji', '--size', 64, '--out', tmp_path, '--no-install')
    assert r.returncode == 0 and 'already complete' in r.stdout


def test_emoji_limit_and_force(tmp_path):
    font = emoji_font()
    r = run('emoji', '--limit', 12, '--size', 32, '--out', tmp_path, '--source', font)
    assert r.returncode == 0, r.stderr
    files = pngs(tmp_path / 'emoji' / 'train') + pngs(tmp_path / 'emoji' / 'test')
    assert len(files) == 12 and Image.open(files[0]).size == (32, 32)
    r = run('emoji', '--limit', 12, '--size', 32, '--out', tmp_path, '--source', font, '--force')
    assert r.returncode == 0 and '12 images' in r.stdout


@pytest.mark.parametrize('dataset,names', [
    ('fashion_mnist', ['train-images-idx3-ubyte.gz', 'dataset-fashion-mnist']),
    ('emoji', ['NotoColorEmoji.ttf', 'fonts-noto-color-emoji']),
])
def test_missing_source(tmp_path, dataset, names):
    empty = tmp_path / 'empty'
    empty.mkdir()
    r = run(dataset, '--out', tmp_path / 'out', '--source', empty, '--no-install')
    assert r.returncode != 0
    for name in names:
        assert name in r.stderr
    assert not (tmp_path / 'out' / dataset).exists()
    assert not list((tmp_path / 'out').glob('.*'))  # no temporary folder left behind
