"""Small image folders for tests: smooth random colour images, written as PNG."""
import os

import numpy as np
from PIL import Image


def write_image_folder(folder, n, size, mode='RGB', seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = 3 if mode == 'RGB' else 1
    for i in range(n):
        coarse = rng.integers(0, 256, (4, 4, channels), dtype=np.uint8)
        img = Image.fromarray(coarse.squeeze(-1) if channels == 1 else coarse, mode)
        img.resize((size, size), Image.BICUBIC).save(os.path.join(folder, f'img_{i:03d}.png'))
    return folder
