"""Latent interpolation between two images (their mu) or two seeds, and GIF/MP4 writers."""
import os
import os.path as osp
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from .images import ImageLike, prepare_images, to_model_range, to_uint8
from .sampling import decode, latent_dim, prior_noise

Endpoint = Union[int, ImageLike, Tensor]


@torch.no_grad()
def latent_of(model: nn.Module, endpoint: Endpoint, truncation: float = 1.0) -> Tensor:
    """An endpoint as a latent (latent_dim,) on the CPU.

    int: the seed's prior draw, ``prior_noise(model, 1, seed, truncation)[0]``
    (the latent of ``sample(model, 1, seed=seed)``); path or uint8 array: the
    encoder's mu of the image; Tensor: taken as the latent itself.
    """
    if isinstance(endpoint, Tensor):
        z = endpoint.detach().float().cpu().reshape(-1)
        if z.numel() != latent_dim(model):
            raise ValueError(f'a latent must have {latent_dim(model)} values, got {z.numel()}')
        return z
    if isinstance(endpoint, (int, np.integer)) and not isinstance(endpoint, bool):
        return prior_noise(model, 1, int(endpoint), truncation)[0]
    mu, _ = model.encoder(to_model_range(model, prepare_images(model, [endpoint])))
    return mu[0].cpu()


def lerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """(1 - t) z0 + t z1 for t (K,) -> (K, D)."""
    t = t[:, None]
    return (1 - t) * z0 + t * z1


def slerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation along the great circle between z0 and z1 (norms interpolated
    linearly), for t (K,) -> (K, D); linear where the two directions (nearly) coincide."""
    n0, n1 = z0.norm(), z1.norm()
    if n0 == 0 or n1 == 0:
        return lerp(z0, z1, t)
    u0, u1 = z0 / n0, z1 / n1
    omega = torch.arccos((u0 @ u1).clamp(-1, 1))
    if omega.abs() < 1e-4:
        return lerp(z0, z1, t)
    t = t[:, None]
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return direction * ((1 - t) * n0 + t * n1)


def interpolate(model: nn.Module, start: Endpoint, end: Endpoint, steps: int = 8,
                mode: str = 'linear', truncation: float = 1.0,
                sample_model: Optional[str] = None, batch_size: int = 64,
                return_latents: bool = False):
    """Decode ``steps`` latents from ``start``'s to ``end``'s.

    Args:
        start, end: Seeds (int), images (path or uint8 array, encoded to their
            mu) or latents (Tensor); see :func:`latent_of`.
        steps: Number of frames, >= 2, endpoints included.
        mode: 'linear' or 'slerp'.
        truncation: Latent std for seed endpoints.

    Returns:
        uint8 (steps, H, W, C) frames, RGB or grey; the first and last are the
        decoded endpoints exactly (their latents are copied, not computed).
        With ``return_latents`` also the float (steps, latent_dim) latents.
    """
    if steps < 2:
        raise ValueError(f'steps must be >= 2, got {steps}')
    paths = {'linear': lerp, 'slerp': slerp}
    if mode not in paths:
        raise ValueError(f"mode must be 'linear' or 'slerp', got {mode!r}")
    z0, z1 = latent_of(model, start, truncation), latent_of(model, end, truncation)
    latents = paths[mode](z0, z1, torch.linspace(0, 1, steps))
    latents[0], latents[-1] = z0, z1
    frames = to_uint8(model, decode(model, latents, sample_model, batch_size))
    return (frames, latents) if return_latents else frames


def save_gif(frames: np.ndarray, path: Union[str, os.PathLike], fps: float = 10,
             loop: int = 0, boomerang: bool = False) -> str:
    """Write uint8 (K, H, W, C) frames as an animated GIF (Pillow; 256 colours per frame).

    ``boomerang`` appends the frames backwards (a seamless loop). Pillow merges
    identical consecutive frames into one longer frame.
    """
    frames = list(frames) + (list(frames[-2:0:-1]) if boomerang else [])
    images = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    path = os.fspath(path)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:],
                   duration=int(round(1000 / fps)), loop=loop)
    return path


def video_supported() -> bool:
    """Whether MP4 writing is available (needs the optional imageio-ffmpeg package)."""
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def save_video(frames: Sequence[np.ndarray], path: Union[str, os.PathLike], fps: float = 10
               ) -> str:
    """Write uint8 (K, H, W, C) frames as an MP4 (imageio + imageio-ffmpeg)."""
    if not video_supported():
        raise RuntimeError('MP4 output needs imageio-ffmpeg (pip install imageio-ffmpeg); '
                           'the GIF writer needs nothing extra')
    import imageio.v2 as imageio
    path = os.fspath(path)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    frames = np.asarray(frames)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    # macro_block_size=1: keep small sizes (32, 64) instead of padding them to 16.
    imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1)
    return path
