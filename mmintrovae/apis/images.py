"""Images in and out of an IntroVAE: files and uint8 arrays <-> the model's data range.

User-facing images are uint8 numpy arrays (N, H, W, C) with C = 3 (RGB) or 1
(grey). Inside the model images are float (N, C, H, W) in the data
preprocessor's range ([0, 1] for the recipes' mean 0, std 255) and channel
order: MMagic loads BGR and converts to ``output_channel_order`` ('RGB' in the
recipes; None keeps BGR) before normalising.
"""
import os
import os.path as osp
from typing import List, Sequence, Union

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff', '.gif')
ImageLike = Union[str, os.PathLike, np.ndarray]


# ------------------------------------------------------------------ model facts
def image_size(model: nn.Module) -> int:
    """Side of the model's square images, probed from its generator (any MMagic generator)."""
    from ..models.network_contract import image_shape_of
    _, height, width = image_shape_of(model)
    if height != width:
        raise ValueError(f'the inference tools take square images; the model makes '
                         f'{height}x{width}')
    return int(height)


def image_channels(model: nn.Module) -> int:
    """1 or 3: what the generator outputs (and the encoder takes)."""
    from ..models.network_contract import image_shape_of
    return int(image_shape_of(model)[0])


def _is_bgr(model: nn.Module) -> bool:
    return getattr(model.data_preprocessor, 'output_channel_order', None) != 'RGB'


def _norm(model: nn.Module):
    """(mean, std), each (1, C|1, 1, 1), or None when the preprocessor does not normalise."""
    dp = model.data_preprocessor
    if not getattr(dp, '_enable_normalize', False):
        return None
    return dp.mean.view(1, -1, 1, 1), dp.std.view(1, -1, 1, 1)


# ------------------------------------------------------------------ conversions
def to_model_range(model: nn.Module, images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, C) RGB/grey -> float (N, C, H, W) in the model's range, on its device.

    Same result as the data preprocessor on MMagic-loaded (BGR) images:
    channel conversion to ``output_channel_order``, then (x - mean) / std.
    """
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    if x.shape[1] == 3 and _is_bgr(model):
        x = x.flip(1)
    norm = _norm(model)
    if norm is not None:
        mean, std = (t.to(device) for t in norm)
        x = (x - mean) / std
    return x


def to_uint8(model: nn.Module, x: Tensor) -> np.ndarray:
    """float (N, C, H, W) in the model's range -> uint8 (N, H, W, C), RGB or grey.

    The inverse of :func:`to_model_range` (like ``data_preprocessor.destruct``,
    which however returns BGR), clamped to [0, 255] and rounded.
    """
    x = x.detach().float()
    norm = _norm(model)
    if norm is not None:
        mean, std = (t.to(x.device) for t in norm)
        x = x * std + mean
    if x.shape[1] == 3 and _is_bgr(model):
        x = x.flip(1)
    x = x.clamp(0, 255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


# ------------------------------------------------------------------ reading
def list_images(path: Union[str, os.PathLike]) -> List[str]:
    """``path`` itself if it is a file, else the image files in the folder, sorted by name."""
    path = os.fspath(path)
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'no such image file or folder: {path}')
    files = sorted(osp.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith(IMAGE_EXTENSIONS) and osp.isfile(osp.join(path, f)))
    if not files:
        raise ValueError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in folder {path}')
    return files


def read_image(path: Union[str, os.PathLike], channels: int = 3) -> np.ndarray:
    """uint8 (H, W, channels), RGB or grey, decoded as MMagic's LoadImageFromFile does (cv2)."""
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'image file not found: {path}')
    flag = cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE
    img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), flag)
    if img is None:  # formats this OpenCV cannot decode (e.g. GIF)
        try:
            with Image.open(path) as im:
                img = np.asarray(im.convert('RGB' if channels == 3 else 'L'))
        except OSError as e:
            raise ValueError(f'cannot read image {path}: {e}') from None
    elif channels == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img.reshape(img.shape[0], img.shape[1], channels)


def prepare_images(model: nn.Module, images: Sequence[ImageLike]) -> np.ndarray:
    """Paths or arrays -> uint8 (N, S, S, C): the model's channels, resized to its resolution.

    Arrays are uint8 RGB (H, W, 3) or grey (H, W) / (H, W, 1) (an (N, H, W, C)
    array is a sequence of those); colour is
    converted to the model's channel count. Resizing is bicubic to S x S
    without keeping the aspect ratio, as in the training pipeline.
    """
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    channels, size = image_channels(model), image_size(model)
    out = []
    for item in images:
        img = read_image(item, channels) if isinstance(item, (str, os.PathLike)) \
            else _convert_array(np.asarray(item), channels)
        if img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
            img = img.reshape(size, size, channels)
        out.append(img)
    if not out:
        raise ValueError('no images given')
    return np.stack(out)


def _convert_array(img: np.ndarray, channels: int) -> np.ndarray:
    if img.dtype != np.uint8:
        raise TypeError(f'image arrays must be uint8, got {img.dtype}')
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f'expected an (H, W[, 1|3|4]) image, got shape {img.shape}')
    img = img[..., :3]  # drop alpha, as cv2.IMREAD_COLOR does
    if img.shape[2] == channels:
        return img
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
    return np.repeat(img, 3, axis=2)


# ------------------------------------------------------------------ writing
def make_grid(images: np.ndarray, nrow: int = 8, padding: int = 2, pad_value: int = 255
              ) -> np.ndarray:
    """uint8 (N, H, W, C) -> one uint8 (rows*(H+p)+p, nrow*(W+p)+p, C) image, row-major."""
    n, h, w, c = images.shape
    nrow = max(1, min(nrow, n))
    rows = -(-n // nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c),
                   pad_value, dtype=np.uint8)
    for i, img in enumerate(images):
        y = padding + (i // nrow) * (h + padding)
        x = padding + (i % nrow) * (w + padding)
        grid[y:y + h, x:x + w] = img
    return grid


def save_image(image: np.ndarray, path: Union[str, os.PathLike]) -> str:
    """Write a uint8 (H, W, 3) RGB or (H, W[, 1]) grey image; creates parent folders."""
    path = os.fspath(path)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image).save(path)
    return path


def save_grid(images: np.ndarray, path: Union[str, os.PathLike], nrow: int = 8) -> str:
    return save_image(make_grid(images, nrow), path)
