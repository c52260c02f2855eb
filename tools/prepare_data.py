#!/usr/bin/env python
"""Build the image folders the mmintrovae configs train on, from Debian packages.

    python tools/prepare_data.py fashion_mnist   # data/fashion_mnist/{train,test}: 32x32 grey PNGs
    python tools/prepare_data.py emoji           # data/emoji/{train,test}: 64x64 colour PNGs

The sources are Debian packages: fonts-noto-color-emoji (NotoColorEmoji.ttf, 10 MB download) and
dataset-fashion-mnist (the idx .gz files, 31 MB). When the file a dataset needs is missing, the
script installs its package with apt-get (as root, or through sudo; `apt-get update` only if the
first attempt fails), printing each command; where it cannot (no apt-get, no root or sudo, offline,
--no-install) it stops and names the package and the command to run. --source uses your own copy.

Only numpy, Pillow and the standard library are used, so it runs before MMagic is installed.
"""
import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

REPO = Path(__file__).resolve().parents[1]
FMNIST_DIR = Path('/usr/share/datasets/fashion-mnist')
FMNIST_FILES = ('train-images-idx3-ubyte.gz', 't10k-images-idx3-ubyte.gz')
FMNIST_PKG = 'dataset-fashion-mnist'  # 31 MB download
FONT_DIR = Path('/usr/share/fonts')
FONT_NAME = 'NotoColorEmoji.ttf'
FONT_PKG = 'fonts-noto-color-emoji'  # 10 MB download; puts the font in FONT_DIR/truetype/noto
FONT_PX = 109  # the only size the CBDT bitmap strike has: glyphs come out 136x128
APT_LOCK_WAIT = 300  # s apt-get waits for another apt/dpkg (unattended upgrades, a parallel run)

# Face-like emoji: emoticons, newer smileys, people. Hands and objects in these ranges are skipped.
EMOJI_RANGES = [(0x1F600, 0x1F64F), (0x1F910, 0x1F92F), (0x1F970, 0x1F97A), (0x1F9D0, 0x1F9DF),
                (0x1F466, 0x1F487), (0x1FAE0, 0x1FAE8), (0x1FAC3, 0x1FAC5)]
EMOJI_EXTRA = [0x263A, 0x2639, 0x1F385, 0x1F575, 0x1F930, 0x1F934, 0x1F935, 0x1F936, 0x1F937,
               0x1F9B8, 0x1F9B9, 0x1F9CF]
EMOJI_SKIP = {*range(0x1F918, 0x1F920), 0x1F64C, 0x1F64F, 0x1F484, 0x1F485}
SKIN_TONES = [''] + [chr(c) for c in range(0x1F3FB, 0x1F400)]
GENDERS = ['\u200d\u2640\ufe0f', '\u200d\u2642\ufe0f']
HAIR = ['\u200d' + chr(c) for c in range(0x1F9B0, 0x1F9B4)]  # red, curly, white hair, bald
HAIR_BASES = {0x1F468, 0x1F469, 0x1F9D1}


def fail(msg):
    sys.exit(f'prepare_data: error: {msg}')


def say(msg):
    print(f'prepare_data: {msg}', flush=True)


def how_to_install(package):
    return (f'Install it as root with: apt-get install {package}  (or: sudo apt-get install '
            f'{package}), or pass --source with your own copy.')


def apt_prefix():
    """What goes before `apt-get` to run it as root: ([], None), (['sudo', ...], None) when not
    root, or (None, why not)."""
    if not shutil.which('apt-get'):
        return None, 'apt-get is not available on this machine'
    if not hasattr(os, 'geteuid') or os.geteuid() == 0:
        return [], None
    if not shutil.which('sudo'):
        return None, 'not running as root and sudo is not available'
    # sudo may ask for a password on a terminal; without one it must fail instead of hanging.
    # sudo drops the environment, hence `env` for debconf's non-interactive mode.
    batch = [] if sys.stdin is not None and sys.stdin.isatty() else ['-n']
    return ['sudo', *batch, 'env', 'DEBIAN_FRONTEND=noninteractive'], None


def run_cmd(cmd):
    """Run one install command, its output shown; True on success."""
    print('+ ' + ' '.join(cmd), flush=True)
    try:
        return subprocess.run(cmd, env=dict(os.environ, DEBIAN_FRONTEND='noninteractive')
                              ).returncode == 0
    except OSError as e:
        print(f'{cmd[0]}: {e}', file=sys.stderr)
        return False


def apt_install(package):
    """Install Debian `package` with apt-get; (True, None) or (False, why it did not)."""
    prefix, why = apt_prefix()
    if prefix is None:
        return False, why
    apt = prefix + ['apt-get', '-o', f'DPkg::Lock::Timeout={APT_LOCK_WAIT}']
    install = apt + ['install', '-y', '--no-install-recommends', package]
    if run_cmd(install):
        return True, None
    # Unknown package or stale lists (a fresh container has none): refresh them once, retry.
    say(f'installing {package} failed; refreshing the package lists (apt-get update) and retrying')
    if run_cmd(apt + ['update']) and run_cmd(install):
        return True, None
    return False, ('apt-get failed (see its output above: offline, the package not in the '
                   'configured sources, or the dpkg lock held)')


def ensure_installed(find, what, package, args):
    """Return `find()` (the needed file, or None); install `package` when it is missing.

    `what` names the file(s) for messages. The check is on the files themselves, never on a
    folder: /usr/share/fonts exists on almost every machine without the emoji font in it.
    """
    found = find()
    if found is not None:
        return found
    if args.no_install:
        fail(f'{what} not found (Debian package {package}); --no-install forbids installing it. '
             + how_to_install(package))
    say(f'{what} not found: installing the Debian package {package} with apt-get')
    t0 = time.time()
    ok, why = apt_install(package)
    if not ok:
        fail(f'{what} not found and the Debian package {package} could not be installed: {why}. '
             + how_to_install(package))
    found = find()
    if found is None:
        fail(f'the Debian package {package} is installed but {what} is still missing. '
             f'Reinstall it (sudo apt-get install --reinstall {package}) or pass --source.')
    say(f'installed {package} in {time.time() - t0:.0f} s')
    return found


# ---------------------------------------------------------------- fashion_mnist
def read_idx_images(path):
    """Read a gzipped idx3 file (magic 0x803, big-endian uint32 dims) as (N, H, W) uint8."""
    with gzip.open(path, 'rb') as f:
        data = f.read()
    magic, n, h, w = np.frombuffer(data, '>u4', 4)
    if magic != 0x803 or len(data) != 16 + n * h * w:
        fail(f'{path} is not an idx3 image file (magic {magic:#x}, {len(data)} bytes).')
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, h, w)


def fashion_mnist_source(args):
    """The folder with FMNIST_FILES: --source, else the Debian package's (installed if missing)."""
    if args.source:
        src = Path(args.source)
        lacking = [f for f in FMNIST_FILES if not (src / f).is_file()]
        if lacking:
            fail(f'{" and ".join(lacking)} not found in {src} (--source). The Debian package '
                 f'{FMNIST_PKG} puts them in {FMNIST_DIR}.')
        return src

    def find():
        return FMNIST_DIR if all((FMNIST_DIR / f).is_file() for f in FMNIST_FILES) else None
    return ensure_installed(find, f'{FMNIST_DIR}/{{{",".join(FMNIST_FILES)}}}', FMNIST_PKG, args)


def build_fashion_mnist(tmp, args):
    src = fashion_mnist_source(args)
    counts = {}
    for split, stem in (('train', 'train'), ('test', 't10k')):
        imgs = read_idx_images(src / f'{stem}-images-idx3-ubyte.gz')[:args.limit]
        imgs = np.pad(imgs, ((0, 0), (2, 2), (2, 2)))  # 28 -> 32 with zeros, as usual for MNIST
        (tmp / split).mkdir()
        for i, img in enumerate(imgs):
            Image.fromarray(img, 'L').save(tmp / split / f'{i:05d}.png')
        counts[split] = len(imgs)
    return counts, dict(size=32, mode='L', source=str(src))


# ---------------------------------------------------------------- emoji
def find_font(args):
    """The emoji font: --source (the file or a folder above it), else the Debian package's."""
    if args.source:
        src = Path(args.source)
        found = [src] if src.is_file() else sorted(src.rglob(FONT_NAME)) if src.is_dir() else []
        if not found:
            fail(f'{FONT_NAME} not found at {src} (--source). The Debian package {FONT_PKG} '
                 f'puts it under {FONT_DIR}.')
        return found[0]

    def find():
        deb = FONT_DIR / 'truetype' / 'noto' / FONT_NAME
        if deb.is_file():
            return deb
        found = sorted(FONT_DIR.rglob(FONT_NAME)) if FONT_DIR.is_dir() else []
        return found[0] if found else None
    return ensure_installed(find, f'{FONT_NAME} under {FONT_DIR}', FONT_PKG, args)


def emoji_sequences(font):
    """Face/person emoji plus the skin-tone, gender and hair variants the font has one glyph for.

    A sequence the font does not ligate is laid out as several glyphs, so its advance is a
    multiple of one glyph's: that is the test for "the font has this sequence".
    """
    width = font.getlength('\U0001F600')
    single = lambda s: abs(font.getlength(s) - width) < 1  # noqa: E731
    base = sorted(({c for a, b in EMOJI_RANGES for c in range(a, b + 1)} | set(EMOJI_EXTRA))
                  - EMOJI_SKIP)
    seqs = []
    for c in base:
        for tone in SKIN_TONES:
            s = chr(c) + tone
            if not single(s):
                continue
            seqs.append(s)
            suffixes = GENDERS + (HAIR if c in HAIR_BASES else [])
            seqs += [s + x for x in suffixes if single(s + x)]
    return seqs


def render_emoji(font, text):
    """Glyph as 136x128 RGBA; colour bitmaps need embedded_color=True."""
    im = Image.new('RGBA', (136, 128), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((0, 0), text, font=font, embedded_color=True)
    return im


def build_emoji(tmp, args):
    font_path = find_font(args)
    if not features.check('raqm'):  # without libraqm no sequence ligates: base glyphs only
        print('warning: Pillow has no libraqm; skin-tone/gender variants will be missing')
    font = ImageFont.truetype(str(font_path), FONT_PX)
    notdef = np.asarray(render_emoji(font, '\U0001FAFF'))  # unassigned code point
    seqs = emoji_sequences(font)[:args.limit]
    for split in ('train', 'test'):
        (tmp / split).mkdir()
    counts, blank = {'train': 0, 'test': 0}, 0
    for s in seqs:
        im = render_emoji(font, s)
        box = im.getchannel('A').getbbox()
        if box is None or np.array_equal(np.asarray(im), notdef):
            blank += 1
            continue
        # Paste the glyph centred on a white square so faces keep their aspect ratio.
        white = Image.new('RGBA', im.size, (255, 255, 255, 255))
        glyph = Image.alpha_composite(white, im).convert('RGB').crop(box)
        side = max(glyph.size)
        rgb = Image.new('RGB', (side, side), (255, 255, 255))
        rgb.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
        rgb = rgb.resize((args.size, args.size), Image.LANCZOS)
        name = 'u' + '_'.join(f'{ord(c):x}' for c in s)
        # Split by a hash of the stable name: same split on every run and machine.
        split = 'test' if zlib.crc32(name.encode()) % 10 == 0 else 'train'
        rgb.save(tmp / split / f'{name}.png')
        counts[split] += 1
    if blank:
        print(f'skipped {blank} sequences that rendered blank')
    return counts, dict(size=args.size, mode='RGB', source=str(font_path))


# ---------------------------------------------------------------- common
def is_complete(dest, want):
    """The folder is complete if its meta.json matches the request and the counts are on disk."""
    try:
        meta = json.loads((dest / 'meta.json').read_text())
    except (OSError, ValueError):
        return None
    if any(meta.get(k) != v for k, v in want.items()):
        return None
    for split, n in meta['counts'].items():
        if sum(1 for _ in (dest / split).glob('*.png')) != n:
            return None
    return meta


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('dataset', choices=['fashion_mnist', 'emoji'])
    p.add_argument('--out', default=str(REPO / 'data'), help='output root (default: <repo>/data)')
    p.add_argument('--source', help='folder with the idx .gz files / folder or file of the font '
                   '(default: where the Debian package puts them)')
    p.add_argument('--size', type=int, default=64, help='emoji image size (default 64)')
    p.add_argument('--limit', type=int, help='fashion_mnist: first N of each split; '
                   'emoji: first N sequences (for tests)')
    p.add_argument('--force', action='store_true', help='rebuild even if the folder is complete')
    p.add_argument('--no-install', action='store_true',
                   help='never run apt-get: fail if the Debian package is missing')
    args = p.parse_args(argv)

    dest = Path(args.out).resolve() / args.dataset
    want = dict(dataset=args.dataset, limit=args.limit)
    if args.dataset == 'emoji':
        want['size'] = args.size
    meta = None if args.force else is_complete(dest, want)
    if meta:
        print(f'{dest}: already complete ({meta["counts"]}), nothing to do (--force rebuilds)')
        return
    if dest.exists() and not (dest / 'meta.json').exists() and not args.force:
        fail(f'{dest} exists but was not made by this tool; move it away or pass --force.')

    t0 = time.time()
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f'.{args.dataset}.tmp-*'):
        if not pid_alive(int(stale.name.split('-')[1])):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
    # Build in a hidden sibling and rename at the end: an interrupted run never leaves a
    # half-filled folder under the final name.
    tmp = dest.parent / f'.{args.dataset}.tmp-{os.getpid()}'
    tmp.mkdir()
    try:
        build = build_fashion_mnist if args.dataset == 'fashion_mnist' else build_emoji
        counts, info = build(tmp, args)
        (tmp / 'meta.json').write_text(json.dumps(dict(want, counts=counts, **info), indent=1))
        if dest.exists():
            old = dest.parent / f'.{args.dataset}.tmp-{os.getpid()}-old'
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old)
        else:
            tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mb = sum(f.stat().st_size for f in dest.rglob('*')) / 2**20
    s = info['size']
    print(f'{args.dataset}: {sum(counts.values())} images ({counts["train"]} train / '
          f'{counts["test"]} test, {s}x{s} {info["mode"]}) in {dest}, {mb:.1f} MB, '
          f'{time.time() - t0:.1f} s')


if __name__ == '__main__':
    main()
