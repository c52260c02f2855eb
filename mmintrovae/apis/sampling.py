"""Prior samples x = G(z): z = truncation * eps (the standard prior) or mean + L (truncation * eps)
(a model trained with ``latent_prior='aggregate'``), eps ~ N(0, I)."""
import inspect
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from .images import to_uint8


def generator_of(model: nn.Module, sample_model: Optional[str] = None) -> nn.Module:
    """``model.generator_ema`` for 'ema', ``model.generator`` for 'orig'; None: EMA if present."""
    has_ema = bool(getattr(model, 'with_ema_gen', False))
    if sample_model is None:
        sample_model = 'ema' if has_ema else 'orig'
    if sample_model == 'ema':
        if not has_ema:
            raise ValueError("sample_model='ema' but the model has no EMA generator")
        return model.generator_ema
    if sample_model != 'orig':
        raise ValueError(f"sample_model must be 'orig', 'ema' or None, got {sample_model!r}")
    return model.generator


def latent_dim(model: nn.Module) -> int:
    """The latent size: the generator's ``noise_size`` (MMagic's generator contract)."""
    from ..models.network_contract import latent_size_of
    return latent_size_of(model)


def prior_noise(model: nn.Module, num: int, seed: Optional[int] = None,
                truncation: float = 1.0, prior: Optional[str] = None) -> Tensor:
    """Latents from the model's prior: float (num, latent_dim) on the CPU.

    eps ~ N(0, I) is drawn on the CPU from a generator seeded with ``seed`` (the
    global torch RNG when None), so a seed gives the same latents on every
    device, and the first k of ``num`` latents do not depend on ``num``. The
    model maps it (``model.prior_latents``): truncation * eps for the standard
    prior, mean + L (truncation * eps) for the aggregate one. ``prior``:
    'standard', 'aggregate' or None (the model's ``latent_prior``). These are
    latents for :func:`decode`; ``model(noise)`` and MMagic's inferencer take eps
    and map it themselves: give them ``prior_noise(model, num, seed, prior='standard')``.
    """
    if num < 1:
        raise ValueError(f'num must be >= 1, got {num}')
    if truncation < 0:
        raise ValueError(f'truncation must be >= 0, got {truncation}')
    gen = None if seed is None else torch.Generator().manual_seed(int(seed))
    eps = torch.randn(num, latent_dim(model), generator=gen)
    if not hasattr(model, 'prior_latents'):  # a bare generator pairing: N(0, I)
        if prior not in (None, 'standard'):
            raise ValueError(f'prior={prior!r} needs an IntrospectiveVAE model')
        return eps * float(truncation)
    device = next(model.parameters()).device
    with torch.no_grad():
        return model.prior_latents(eps.to(device), float(truncation), prior).cpu()


def decode_kwargs(generator: nn.Module) -> dict:
    """Keyword arguments the inference tools decode with.

    Generators that inject fresh noise maps on every call and can be told not
    to (a ``randomize_noise`` argument: MMagic's StyleGAN1 and StyleGAN2) decode
    with their stored noise maps instead, so a seed (or an image) always gives
    the same picture, whatever the batch it is decoded in. Training and the
    validation metrics keep the fresh noise.
    """
    module = getattr(generator, 'module', generator)  # EMA and DDP wrappers
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return {}
    return dict(randomize_noise=False) if 'randomize_noise' in params else {}


@torch.no_grad()
def decode(model: nn.Module, z: Tensor, sample_model: Optional[str] = None,
           batch_size: int = 64) -> Tensor:
    """G(z) for z (N, latent_dim), in batches -> float (N, C, H, W), model range, on the CPU.

    Deterministic also for generators with injected noise (see :func:`decode_kwargs`).
    """
    generator = generator_of(model, sample_model)
    kwargs = decode_kwargs(generator)
    device = next(model.parameters()).device
    return torch.cat([generator(chunk.to(device), **kwargs).cpu()
                      for chunk in z.split(batch_size)])


def sample(model: nn.Module, num: int, seed: Optional[int] = None, truncation: float = 1.0,
           batch_size: int = 64, sample_model: Optional[str] = None,
           return_tensor: bool = False, prior: Optional[str] = None
           ) -> Union[np.ndarray, Tensor]:
    """``num`` images from the prior.

    Args:
        model: An IntroVAE in eval mode (see :func:`init_model`).
        num: Number of images.
        seed: Seed of the latents; None draws from torch's global RNG.
        truncation: Scale of eps ~ N(0, I) in the latents; 0 decodes the
            prior's mean for every image.
        batch_size: Latents decoded per forward pass (does not change results).
        sample_model: 'orig', 'ema' or None (EMA if the model has one).
        return_tensor: Return the generator's float output instead.
        prior: 'standard' (N(0, I)), 'aggregate' (the Gaussian fitted to the
            training posteriors; models trained with ``latent_prior='aggregate'``)
            or None: the model's ``latent_prior``.

    Returns:
        uint8 (num, H, W, C) RGB (C=3) or grey (C=1); with ``return_tensor``,
        float (num, C, H, W) in the model's data range and channel order.
    """
    x = decode(model, prior_noise(model, num, seed, truncation, prior), sample_model, batch_size)
    return x if return_tensor else to_uint8(model, x)
