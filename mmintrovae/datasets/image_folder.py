"""A flat folder of images for unconditional training, with errors that say what to do."""
import logging
import os.path as osp
from typing import List, Optional

import cv2
import numpy as np
from mmagic.datasets import BasicImageDataset
from mmagic.registry import DATASETS
from mmengine.logging import print_log

# After this many unreadable files in a row (with on_bad_image='skip') the dataset gives up:
# a whole run of bad files is more likely a broken copy of the data than a few bad files.
MAX_CONSECUTIVE_BAD_IMAGES = 50
_JPEG_EXTENSIONS = ('.jpg', '.jpeg', '.jpe', '.jfif')
# PIL modes of files without colour (their pixels are loaded as 3 equal channels)
_GREY_MODES = ('1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')


class UnreadableImageError(OSError):
    """An image file of the dataset cannot be decoded (missing, empty, truncated, corrupt)."""

    def __init__(self, path: str, reason: Optional[str] = None):
        self.path, self.reason = path, reason
        if reason is None:  # one message argument (how DataLoader workers re-raise)
            super().__init__(path)
            return
        super().__init__(f'Cannot use image file {path}: {reason}. Remove or replace it, or set '
                         "on_bad_image='skip' in the dataset config to train without it.")


@DATASETS.register_module()
class IntroVAEImageFolder(BasicImageDataset):
    """BasicImageDataset over one folder of images (``data_prefix=dict(gt='')``).

    Without an explicit ``pipeline`` it builds the official preprocessing:
    load, bicubic resize to ``image_size`` x ``image_size``, random horizontal
    flip (``flip``), pack; so a recipe only states the size.

    Args:
        image_size (int, optional): Side of the square training images.
        flip (bool): Random horizontal flips. Defaults to True.
        color_type (str): 'color' (3 channels) or 'grayscale' (1 channel).
        hint (str): What to do when the folder is missing, e.g.
            ``'run: python tools/prepare_data.py emoji'``. Added to the error.
        max_images (int, optional): Keep only the first N files in sorted order.
        on_bad_image (str): What to do with a file that cannot be decoded (missing
            since the listing, unreadable, empty, truncated or corrupt; a JPEG that
            ends before its end-of-image marker counts as truncated even though
            OpenCV would decode its first part): ``'skip'`` (default) logs a warning
            naming the file, once per process, and uses the next file of the sorted
            list instead (deterministic: no random draw, so exact resume holds);
            ``'error'`` raises :class:`UnreadableImageError` naming the file.
            Errors of the pipeline itself (the file decodes fine) are never hidden.
        Other arguments: see ``BasicImageDataset``.

    Grey files in a recipe that loads colour (``color_type='color'``, the default)
    are converted to three equal channels by OpenCV; the first one found is
    logged (once per process).
    """

    METAINFO = dict(dataset_type='introvae_image_folder', task_name='generation')

    def __init__(self,
                 *args,
                 image_size: Optional[int] = None,
                 flip: bool = True,
                 color_type: str = 'color',
                 hint: str = '',
                 max_images: Optional[int] = None,
                 on_bad_image: str = 'skip',
                 **kwargs):
        if on_bad_image not in ('skip', 'error'):
            raise ValueError(f"on_bad_image must be 'skip' or 'error', got {on_bad_image!r}")
        # Set before super().__init__, which calls load_data_list().
        self.hint = hint
        self.max_images = max_images
        self.on_bad_image = on_bad_image
        self._warned_bad = set()  # files already reported (per process)
        self._grey_logged = False
        kwargs.setdefault('data_prefix', dict(gt=''))
        if kwargs.get('pipeline') is None and image_size is not None:
            kwargs['pipeline'] = default_pipeline(image_size, flip, color_type)
        super().__init__(*args, **kwargs)

    def load_data_list(self):
        # data_prefix is already joined with data_root here.
        folder = osp.abspath(self.data_prefix[self.search_key] or self.data_root or '.')
        if not osp.isdir(folder):
            hint = f' ({self.hint})' if self.hint else ''
            raise FileNotFoundError(f'Image folder {folder} does not exist{hint}')
        # The folder listing comes in os.scandir order: sort so runs and max_images repeat.
        data_list = sorted(super().load_data_list(), key=lambda d: d['key'])
        if self.max_images is not None:
            data_list = data_list[:self.max_images]
        if not data_list:
            raise ValueError(f'No image files in {folder}')
        # MMagic names its cached FID statistics after the dataset's metainfo:
        # a subset (max_images) must not reuse the statistics of another.
        self._metainfo['num_images'] = len(data_list)
        return data_list

    # ------------------------------------------------------------ bad and grey files
    def prepare_data(self, idx):
        """The pipeline's output for ``idx``; an undecodable file raises (``'error'``)
        or is replaced by the next readable one (``'skip'``), see the class docstring."""
        n = len(self)
        first_bad = None
        for step in range(min(n, MAX_CONSECUTIVE_BAD_IMAGES)):
            j = (idx + step) % n
            path = self._path(j)
            reason = self._truncated_jpeg(path)
            if reason is None:
                try:
                    data = super().prepare_data(j)
                except Exception as e:  # noqa: BLE001  (classified below, else re-raised)
                    reason = self._unreadable_reason(path, e)
                    if reason is None:
                        raise  # the file is fine: a problem of the pipeline, not the data
                    if self.on_bad_image == 'error':
                        raise UnreadableImageError(path, reason) from e
                else:
                    self._log_grey(path)
                    return data
            if self.on_bad_image == 'error':
                raise UnreadableImageError(path, reason)
            first_bad = first_bad or (path, reason)
            if path not in self._warned_bad:
                self._warned_bad.add(path)
                print_log(f'Skipping unreadable image file {path} ({reason}); using the next '
                          'file instead. Remove or replace it (on_bad_image=\'error\' makes '
                          'this an error).', logger='current', level=logging.WARNING)
        tried = min(n, MAX_CONSECUTIVE_BAD_IMAGES)
        others = (f'none of the {n} files of the dataset can be used' if tried == n else
                  f'nor can the {tried - 1} files after it in sorted order (up to {path})')
        raise UnreadableImageError(first_bad[0], f'{first_bad[1]}; {others}: is the folder '
                                   'damaged?')

    def _path(self, idx) -> str:
        return str(self.get_data_info(idx)[f'{self.search_key}_path'])

    @staticmethod
    def _is_local(path: str) -> bool:
        return '://' not in path

    def _truncated_jpeg(self, path: str) -> Optional[str]:
        """OpenCV decodes the first part of a truncated JPEG without an error (the rest
        is grey): a JPEG whose last bytes hold no end-of-image marker is checked with
        Pillow, which refuses truncated data. Costs one small read per JPEG."""
        if not (self._is_local(path) and path.lower().endswith(_JPEG_EXTENSIONS)):
            return None
        try:
            with open(path, 'rb') as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 1024))
                tail = f.read()
        except OSError:
            return None  # the loader reports it
        if b'\xff\xd9' in tail or size == 0:
            return None
        from PIL import Image  # trailing data after the marker is legal: decode fully
        try:
            with Image.open(path) as im:
                im.load()
        except OSError as e:  # 'image file is truncated (n bytes not processed)'
            return f'truncated JPEG ({size} bytes, no end-of-image marker; Pillow: {e})'
        except Exception:  # noqa: BLE001  (Pillow cannot judge it; leave it to OpenCV)
            return None
        return None

    def _unreadable_reason(self, path: str, error: Exception) -> Optional[str]:
        """Why ``path`` cannot be decoded, or None if it can (then ``error`` came from the
        pipeline, not from the file)."""
        if not self._is_local(path):  # another storage backend: trust the loader's error
            return f'{type(error).__name__}: {error}'
        if not osp.exists(path):
            return 'the file no longer exists'
        try:
            with open(path, 'rb') as f:
                data = f.read()
        except OSError as e:
            return f'cannot be read ({e.strerror or e})'
        if not data:
            return 'empty file (0 bytes)'
        try:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            img = None
        if img is None or img.size == 0:
            return f'not a decodable image ({len(data)} bytes: truncated or corrupt)'
        return None

    def _load_color_type(self) -> Optional[str]:
        for t in getattr(self.pipeline, 'transforms', []):
            if type(t).__name__ == 'LoadImageFromFile':
                return getattr(t, 'color_type', None)
        return None

    def _log_grey(self, path: str) -> None:
        """Log the first grey file a colour recipe loads (Pillow reads only the header);
        checked until one is found, then never again in this process."""
        if self._grey_logged or not self._is_local(path):
            return
        if self._load_color_type() != 'color':
            self._grey_logged = True  # a grey recipe, or a loader we do not know
            return
        from PIL import Image
        try:
            with Image.open(path) as im:
                mode = im.mode
        except Exception:  # noqa: BLE001  (a format Pillow does not know)
            return
        if mode in _GREY_MODES:
            self._grey_logged = True
            print_log(f'Found greyscale image files (first: {path}, mode {mode}) in a '
                      "dataset loaded with color_type='color': they are converted to 3 equal "
                      'channels. Logged once; set color_type=\'grayscale\' (and '
                      'model.architecture.image_channels=1) to train on grey images.',
                      logger='current', level=logging.INFO)


def default_pipeline(image_size: int, flip: bool = True, color_type: str = 'color') -> List[dict]:
    """Load -> bicubic resize -> (random horizontal flip) -> pack, as the official code."""
    if color_type not in ('color', 'grayscale'):
        raise ValueError(f"color_type must be 'color' or 'grayscale', got {color_type!r}")
    pipeline = [
        dict(type='LoadImageFromFile', key='gt', color_type=color_type),
        dict(type='Resize', keys='gt', scale=(image_size, image_size), keep_ratio=False,
             interpolation='bicubic'),
    ]
    if flip:
        pipeline.append(dict(type='Flip', keys='gt', flip_ratio=0.5, direction='horizontal'))
    pipeline.append(dict(type='PackInputs'))
    return pipeline
