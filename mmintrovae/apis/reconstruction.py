"""Reconstructions G(mu(x)) of real images."""
import os
import os.path as osp
from collections import Counter
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .images import (ImageLike, list_images, prepare_images, save_grid, save_image,
                     to_model_range, to_uint8)
from .sampling import decode_kwargs, generator_of


@torch.no_grad()
def reconstruct_images(model: nn.Module, images: Sequence[ImageLike], batch_size: int = 32,
                       sample_model: Optional[str] = None, return_inputs: bool = False):
    """Deterministic reconstructions G(mu(x)) of image files or arrays.

    Args:
        model: An IntroVAE in eval mode.
        images: Paths, or uint8 arrays (H, W, 3) RGB / (H, W[, 1]) grey of any
            size; resized (bicubic) to the model's resolution and converted to
            its channel count.
        batch_size: Images per forward pass.
        sample_model: Generator to decode with: 'orig', 'ema' or None (EMA if present).
        return_inputs: Also return the resized inputs the model saw.

    Returns:
        uint8 (N, S, S, C) reconstructions, RGB (C=3) or grey (C=1); with
        ``return_inputs`` a tuple (inputs, reconstructions) of that shape.
    """
    inputs = prepare_images(model, images)
    generator = generator_of(model, sample_model)
    kwargs = decode_kwargs(generator)  # stored noise maps for noise-injecting generators
    recs = []
    for start in range(0, len(inputs), batch_size):
        mu, _ = model.encoder(to_model_range(model, inputs[start:start + batch_size]))
        recs.append(to_uint8(model, generator(mu, **kwargs)))
    recs = np.concatenate(recs)
    return (inputs, recs) if return_inputs else recs


def reconstruct_folder(model: nn.Module, input_path: Union[str, os.PathLike],
                       out_dir: Union[str, os.PathLike], grid: Optional[str] = None,
                       batch_size: int = 32, sample_model: Optional[str] = None,
                       grid_max: int = 64) -> dict:
    """Reconstruct an image file or every image in a folder, writing ``<out_dir>/<stem>.png``.

    Args:
        grid: File name (in ``out_dir``) or path of a grid with each input
            beside its reconstruction (the first ``grid_max`` images); None: no grid.

    Returns:
        dict(images=[written reconstruction paths], grid=grid path or None).
    """
    paths = list_images(input_path)
    out_dir = os.fspath(out_dir)
    names = _output_names(paths)
    outputs = [osp.join(out_dir, n) for n in names]
    inputs_abs = {osp.realpath(p) for p in paths}
    clash = [o for o in outputs if osp.realpath(o) in inputs_abs]
    if clash:
        raise ValueError(f'refusing to overwrite input images with reconstructions: {clash[:3]}')
    os.makedirs(out_dir, exist_ok=True)

    pairs = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        inputs, recs = reconstruct_images(model, chunk, batch_size, sample_model,
                                          return_inputs=True)
        for rec, out in zip(recs, outputs[start:start + batch_size]):
            save_image(rec, out)
        for inp, rec in zip(inputs, recs):
            if len(pairs) < 2 * grid_max:
                pairs += [inp, rec]
    grid_path = None
    if grid:
        grid_path = grid if osp.dirname(grid) else osp.join(out_dir, grid)
        # Input and reconstruction side by side, up to four pairs per row.
        save_grid(np.stack(pairs), grid_path, nrow=2 * min(4, len(pairs) // 2))
    return dict(images=outputs, grid=grid_path)


def _output_names(paths):
    """<stem>.png per input; inputs sharing a stem (a.jpg, a.png) keep their extension in it."""
    stems = [osp.splitext(osp.basename(p))[0] for p in paths]
    counts = Counter(stems)
    names = []
    for p, stem in zip(paths, stems):
        ext = osp.splitext(p)[1].lstrip('.').lower()
        names.append(f'{stem}_{ext}.png' if counts[stem] > 1 else f'{stem}.png')
    return names
