"""tools/prepare_data.py as a user runs it: real outputs from the Debian packages (installed by
the tool itself when missing, as on a fresh machine), idempotence, the install decision, and
clear failures."""
import gzip
import importlib.util
import io
import json
import os.path as osp
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

TOOL = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'prepare_data.py')
FMNIST_FILES = ('train-images-idx3-ubyte.gz', 't10k-images-idx3-ubyte.gz')
INSTALL = ['-o', 'DPkg::Lock::Timeout=300', 'install', '-y', '--no-install-recommends']
UPDATE = ['-o', 'DPkg::Lock::Timeout=300', 'update']


def run(*args, env=None):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env)


def pngs(folder):
    return sorted(Path(folder).glob('*.png'))


def write_idx(path, n, seed):
    """A small idx3 file like the Debian package's (gzip, big-endian header); its images."""
    imgs = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    header = np.array([0x803, n, 28, 28], '>u4').tobytes()
    with gzip.open(path, 'wb') as f:
        f.write(header + imgs.tobytes())
    return imgs


def read_idx(path, n):
    with gzip.open(path, 'rb') as f:
        return np.frombuffer(f.read(16 + n * 28 * 28), np.uint8, offset=16).reshape(n, 28, 28)


# ------------------------------------------- the real data step (installs the packages)
# These run the tool exactly as `make demo` / `make data` do: no --source, no --no-install.
# Where a package is missing, the tool installs it with apt-get (root or sudo), as CI does;
# where it cannot, the test fails with the tool's message naming the package.
def test_fashion_mnist_from_the_debian_package(tmp_path):
    r = run('fashion_mnist', '--limit', 20, '--out', tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert '40 images' in r.stdout
    meta = json.loads((tmp_path / 'fashion_mnist' / 'meta.json').read_text())
    src = Path(meta['source'])
    assert src == Path('/usr/share/datasets/fashion-mnist')
    for split, stem in (('train', 'train'), ('test', 't10k')):
        files = pngs(tmp_path / 'fashion_mnist' / split)
        assert [f.name for f in files] == [f'{i:05d}.png' for i in range(20)]
        raw = read_idx(src / f'{stem}-images-idx3-ubyte.gz', 20)
        for f, want in zip(files, raw):
            im = Image.open(f)
            assert (im.size, im.mode) == ((32, 32), 'L')
            a = np.asarray(im)
            # The package's image, with 2 px of zero padding on every side (28 -> 32).
            np.testing.assert_array_equal(a[2:-2, 2:-2], want)
            assert not a[:2].any() and not a[-2:].any()
            assert not a[:, :2].any() and not a[:, -2:].any()
        assert raw.mean() > 40 and raw.max() == 255  # real clothes, not blank files
    assert not list(tmp_path.glob('.fashion_mnist.tmp-*'))  # temporary folder renamed away

    mtime = (tmp_path / 'fashion_mnist' / 'train' / '00000.png').stat().st_mtime_ns
    r = run('fashion_mnist', '--limit', 20, '--out', tmp_path)
    assert r.returncode == 0 and 'already complete' in r.stdout
    assert 'apt-get' not in r.stdout  # installed now: nothing to install
    assert (tmp_path / 'fashion_mnist' / 'train' / '00000.png').stat().st_mtime_ns == mtime

    # A different request (another --limit) rebuilds instead of keeping the old folder.
    r = run('fashion_mnist', '--limit', 5, '--out', tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(pngs(tmp_path / 'fashion_mnist' / 'test')) == 5


def test_emoji_from_the_debian_package(tmp_path):
    r = run('emoji', '--size', 64, '--out', tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    meta = json.loads((tmp_path / 'emoji' / 'meta.json').read_text())
    assert meta['source'] == '/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf'
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

    r = run('emoji', '--size', 64, '--out', tmp_path)
    assert r.returncode == 0 and 'already complete' in r.stdout


def test_emoji_limit_force_and_source_file(tmp_path):
    r = run('emoji', '--limit', 12, '--size', 32, '--out', tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    files = pngs(tmp_path / 'emoji' / 'train') + pngs(tmp_path / 'emoji' / 'test')
    assert len(files) == 12 and Image.open(files[0]).size == (32, 32)
    font = json.loads((tmp_path / 'emoji' / 'meta.json').read_text())['source']
    r = run('emoji', '--limit', 12, '--size', 32, '--out', tmp_path, '--source', font, '--force')
    assert r.returncode == 0 and '12 images' in r.stdout
    assert [f.read_bytes() for f in files] == [  # the same font file gives the same images
        f.read_bytes() for f in pngs(tmp_path / 'emoji' / 'train') + pngs(tmp_path / 'emoji' / 'test')]


@pytest.mark.parametrize('dataset,names', [
    ('fashion_mnist', ['train-images-idx3-ubyte.gz', 'dataset-fashion-mnist']),
    ('emoji', ['NotoColorEmoji.ttf', 'fonts-noto-color-emoji']),
])
def test_missing_source(tmp_path, dataset, names):
    """--source is the user's own copy: a wrong one is an error, never an install."""
    empty = tmp_path / 'empty'
    empty.mkdir()
    r = run(dataset, '--out', tmp_path / 'out', '--source', empty)
    assert r.returncode != 0
    for name in names + [str(empty)]:
        assert name in r.stderr
    assert 'apt-get' not in r.stdout
    assert not (tmp_path / 'out' / dataset).exists()
    assert not list((tmp_path / 'out').glob('.*'))  # no temporary folder left behind


# ------------------------------------------------ the install decision (fake apt-get)
FAKE_APT = '''\
    #!{python}
    """apt-get stand-in: logs its arguments, 'installs' by writing the files a package holds."""
    import json, os, shutil, sys
    args = sys.argv[1:]
    with open(os.environ['FAKE_APT_LOG'], 'a') as f:
        f.write(json.dumps([args, os.environ.get('DEBIAN_FRONTEND')]) + '\\n')
    mode = os.environ.get('FAKE_APT_MODE', 'ok')
    updated = os.path.exists(os.environ['FAKE_APT_LOG'] + '.updated')
    if 'update' in args:
        if mode == 'offline':
            sys.exit('E: Failed to fetch (offline)')
        open(os.environ['FAKE_APT_LOG'] + '.updated', 'w').close()
        sys.exit(0)
    if mode == 'offline' or (mode == 'needs-update' and not updated):
        sys.exit('E: Unable to locate package ' + args[-1])
    if mode != 'empty':
        for src, dst in json.loads(os.environ['FAKE_APT_FILES'])[args[-1]]:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(src, dst)
'''
FAKE_SUDO = '''\
    #!{python}
    """sudo stand-in: logs its arguments and runs the command."""
    import json, os, sys
    with open(os.environ['FAKE_APT_LOG'] + '.sudo', 'a') as f:
        f.write(json.dumps(sys.argv[1:]) + '\\n')
    args = [a for a in sys.argv[1:] if a != '-n']
    os.execvp(args[0], args)
'''


@pytest.fixture
def tool(tmp_path, monkeypatch):
    """prepare_data imported in-process, its system folders moved under tmp_path, PATH holding
    only a folder of stand-ins (empty at first: no apt-get, no sudo)."""
    spec = importlib.util.spec_from_file_location('prepare_data_under_test', TOOL)
    pd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pd)
    root = tmp_path / 'system'
    monkeypatch.setattr(pd, 'FONT_DIR', root / 'usr/share/fonts')
    monkeypatch.setattr(pd, 'FMNIST_DIR', root / 'usr/share/datasets/fashion-mnist')
    (root / 'usr/share/fonts/truetype/dejavu').mkdir(parents=True)  # other fonts live there
    (root / 'usr/share/fonts/truetype/dejavu/DejaVuSans.ttf').write_bytes(b'other font')
    bin_dir, debs = tmp_path / 'bin', tmp_path / 'debs'
    bin_dir.mkdir()
    debs.mkdir()
    monkeypatch.setenv('PATH', str(bin_dir))
    monkeypatch.setattr(pd.os, 'geteuid', lambda: 0)  # root, as in CI, unless a test says not
    log = tmp_path / 'apt.log'
    monkeypatch.setenv('FAKE_APT_LOG', str(log))
    # What each package "contains": a font file; two small idx files.
    (debs / 'font.ttf').write_bytes(b'emoji font')
    images = {f: write_idx(debs / f, 6, seed) for seed, f in enumerate(FMNIST_FILES)}
    monkeypatch.setenv('FAKE_APT_FILES', json.dumps({
        'fonts-noto-color-emoji': [[str(debs / 'font.ttf'),
                                    str(pd.FONT_DIR / 'truetype/noto/NotoColorEmoji.ttf')]],
        'dataset-fashion-mnist': [[str(debs / f), str(pd.FMNIST_DIR / f)] for f in FMNIST_FILES],
    }))

    def add(name, text):
        path = bin_dir / name
        path.write_text(textwrap.dedent(text).format(python=sys.executable))
        path.chmod(0o755)

    def calls():
        """[(apt-get arguments, DEBIAN_FRONTEND it saw)] in order."""
        if not log.exists():
            return []
        return [tuple(json.loads(line)) for line in log.read_text().splitlines()]

    return SimpleNamespace(pd=pd, add_apt=lambda: add('apt-get', FAKE_APT),
                           add_sudo=lambda: add('sudo', FAKE_SUDO), bin=bin_dir, log=log,
                           calls=calls, images=images, args=SimpleNamespace(source=None,
                                                                            no_install=False))


def error_of(call):
    with pytest.raises(SystemExit) as e:
        call()
    return str(e.value.code)


def test_present_files_install_nothing(tool):
    tool.add_apt()
    font = tool.pd.FONT_DIR / 'truetype/noto/NotoColorEmoji.ttf'
    font.parent.mkdir(parents=True)
    font.write_bytes(b'font')
    tool.pd.FMNIST_DIR.mkdir(parents=True)
    for f in FMNIST_FILES:
        (tool.pd.FMNIST_DIR / f).write_bytes(b'idx')
    assert tool.pd.find_font(tool.args) == font
    assert tool.pd.fashion_mnist_source(tool.args) == tool.pd.FMNIST_DIR
    assert tool.calls() == []


def test_font_missing_from_an_existing_font_folder_is_installed(tool, capsys):
    """The fresh-machine bug: /usr/share/fonts exists (other fonts), the emoji font does not."""
    tool.add_apt()
    font = tool.pd.find_font(tool.args)
    assert font == tool.pd.FONT_DIR / 'truetype/noto/NotoColorEmoji.ttf'
    assert font.read_bytes() == b'emoji font'
    assert tool.calls() == [(INSTALL + ['fonts-noto-color-emoji'], 'noninteractive')]
    out = capsys.readouterr().out
    assert 'installing the Debian package fonts-noto-color-emoji' in out
    assert '+ apt-get ' + ' '.join(INSTALL) + ' fonts-noto-color-emoji' in out


def test_one_missing_idx_file_installs_fashion_mnist_and_builds(tool, tmp_path):
    """The folder exists with one of the two files: the package is installed, then the data
    step runs to the end on the installed files."""
    tool.add_apt()
    tool.pd.FMNIST_DIR.mkdir(parents=True)
    write_idx(tool.pd.FMNIST_DIR / FMNIST_FILES[0], 3, 9)
    tool.pd.main(['fashion_mnist', '--out', str(tmp_path / 'data')])
    assert tool.calls() == [(INSTALL + ['dataset-fashion-mnist'], 'noninteractive')]
    for split, f in (('train', FMNIST_FILES[0]), ('test', FMNIST_FILES[1])):
        files = pngs(tmp_path / 'data/fashion_mnist' / split)
        assert len(files) == 6  # the package's file replaced the partial folder's
        np.testing.assert_array_equal(np.asarray(Image.open(files[-1]))[2:-2, 2:-2],
                                      tool.images[f][-1])


def test_unknown_package_updates_the_lists_and_retries(tool, monkeypatch):
    tool.add_apt()
    monkeypatch.setenv('FAKE_APT_MODE', 'needs-update')  # no lists yet, as in a fresh container
    assert tool.pd.fashion_mnist_source(tool.args) == tool.pd.FMNIST_DIR
    pkg = 'dataset-fashion-mnist'
    assert [c[0] for c in tool.calls()] == [INSTALL + [pkg], UPDATE, INSTALL + [pkg]]


def test_offline_apt_names_the_package_and_the_command(tool, monkeypatch):
    tool.add_apt()
    monkeypatch.setenv('FAKE_APT_MODE', 'offline')
    msg = error_of(lambda: tool.pd.find_font(tool.args))
    assert 'fonts-noto-color-emoji could not be installed' in msg and 'apt-get failed' in msg
    assert 'sudo apt-get install fonts-noto-color-emoji' in msg
    assert [c[0] for c in tool.calls()] == [INSTALL + ['fonts-noto-color-emoji'], UPDATE]


def test_no_apt_get_names_the_package_and_the_command(tool):
    msg = error_of(lambda: tool.pd.fashion_mnist_source(tool.args))
    assert 'apt-get is not available' in msg
    assert 'dataset-fashion-mnist' in msg and 'sudo apt-get install dataset-fashion-mnist' in msg
    assert 'train-images-idx3-ubyte.gz' in msg  # and the file that was looked for


def test_not_root_without_sudo_runs_nothing(tool, monkeypatch):
    tool.add_apt()
    monkeypatch.setattr(tool.pd.os, 'geteuid', lambda: 1000)
    msg = error_of(lambda: tool.pd.find_font(tool.args))
    assert 'not running as root and sudo is not available' in msg
    assert 'sudo apt-get install fonts-noto-color-emoji' in msg
    assert tool.calls() == []


def test_not_root_installs_through_sudo(tool, monkeypatch):
    tool.add_apt()
    tool.add_sudo()
    (tool.bin / 'env').symlink_to('/usr/bin/env')
    monkeypatch.setattr(tool.pd.os, 'geteuid', lambda: 1000)
    monkeypatch.setattr(tool.pd.sys, 'stdin', io.StringIO())  # no terminal: sudo must not prompt
    assert tool.pd.find_font(tool.args).is_file()
    sudo = [json.loads(line) for line in Path(str(tool.log) + '.sudo').read_text().splitlines()]
    assert sudo == [['-n', 'env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', *INSTALL,
                     'fonts-noto-color-emoji']]
    assert tool.calls() == [(INSTALL + ['fonts-noto-color-emoji'], 'noninteractive')]


def test_no_install_flag_names_the_package_and_runs_nothing(tool):
    tool.add_apt()
    tool.args.no_install = True
    msg = error_of(lambda: tool.pd.find_font(tool.args))
    assert '--no-install' in msg and 'sudo apt-get install fonts-noto-color-emoji' in msg
    assert 'NotoColorEmoji.ttf' in msg
    assert tool.calls() == []


def test_package_without_the_file_is_an_error(tool, monkeypatch):
    tool.add_apt()
    monkeypatch.setenv('FAKE_APT_MODE', 'empty')
    msg = error_of(lambda: tool.pd.find_font(tool.args))
    assert 'fonts-noto-color-emoji is installed but NotoColorEmoji.ttf' in msg
    assert 'apt-get install --reinstall fonts-noto-color-emoji' in msg
