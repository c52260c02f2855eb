"""A flat folder of images for unconditional training, with errors that say what to do."""
import os.path as osp
from typing import List, Optional

from mmagic.datasets import BasicImageDataset
from mmagic.registry import DATASETS


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
        Other arguments: see ``BasicImageDataset``.
    """

    METAINFO = dict(dataset_type='introvae_image_folder', task_name='generation')

    def __init__(self,
                 *args,
                 image_size: Optional[int] = None,
                 flip: bool = True,
                 color_type: str = 'color',
                 hint: str = '',
                 max_images: Optional[int] = None,
                 **kwargs):
        # Set before super().__init__, which calls load_data_list().
        self.hint = hint
        self.max_images = max_images
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
        return data_list


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
