"""What the plugin needs from its two networks, and how it finds out.

The generator meets MMagic's contract: a (N, noise_size) tensor in, images
(N, C, H, W) out, and a ``noise_size`` attribute. The encoder maps those images
to ``(mu, logvar)``, each (N, noise_size). Nothing else is read from the
networks: the image shape is probed by decoding one latent, so any MMagic
generator (DCGAN, StyleGAN2, ...) and any encoder can be paired.

Probes run under ``no_grad`` with every module in eval mode (BatchNorm's running
statistics stay untouched) and inside a forked RNG (generators that inject
noise, such as StyleGAN2's, do not shift the training run's random stream), and
restore each module's train/eval flag afterwards.
"""
import contextlib
from typing import Tuple

import torch
from torch import Tensor, nn


def latent_size(generator: nn.Module) -> int:
    """The generator's ``noise_size`` (MMagic's contract): the latent size of the model."""
    size = getattr(generator, 'noise_size', None)
    if not isinstance(size, int) or size <= 0:
        raise ValueError(
            f'generator {type(generator).__name__} has no positive int noise_size '
            f'(got {size!r}); MMagic generators take (N, noise_size) noise and say so in '
            'this attribute')
    return size


@contextlib.contextmanager
def probing(*modules: nn.Module):
    """no_grad, eval mode and a forked RNG for a dry run; restores each module's mode."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    devices = sorted({p.device.index for module in modules for p in module.parameters()
                      if p.device.type == 'cuda'})
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            for module in modules:
                module.eval()
            yield
    finally:
        # train() on each top module first: some networks (StyleGAN2's generator)
        # switch more than the flag in it; then any submodule that differed.
        for module in modules:
            module.train(dict(flags)[module])
        for m, flag in flags:
            m.training = flag


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device('cpu')


def probe_image_shape(generator: nn.Module) -> Tuple[int, int, int]:
    """(C, H, W) of the images the generator makes, from decoding one zero latent."""
    noise = torch.zeros(1, latent_size(generator), device=_device_of(generator))
    with probing(generator):
        img = generator(noise)
    if isinstance(img, dict):  # return_noise-style outputs
        img = img.get('fake_img')
    if not isinstance(img, Tensor) or img.ndim != 4 or img.shape[0] != 1:
        raise ValueError(f'generator {type(generator).__name__} must map (1, noise_size) '
                         f'noise to a (1, C, H, W) image tensor, got '
                         f'{getattr(img, "shape", type(img).__name__)}')
    return tuple(int(s) for s in img.shape[1:])


def check_pair(encoder: nn.Module, generator: nn.Module) -> Tuple[int, int, int]:
    """Check that E(G(z)) is a posterior over z; returns the image shape (C, H, W).

    Decodes one zero latent and encodes the image, raising ValueError that names
    the network at fault when the encoder does not take the generator's images or
    does not return (mu, logvar) of the generator's ``noise_size``.
    """
    latent = latent_size(generator)
    shape = probe_image_shape(generator)
    image = torch.zeros(1, *shape, device=_device_of(encoder))
    try:
        with probing(encoder):
            out = encoder(image)
    except Exception as e:  # noqa: BLE001  re-raised with what was being probed
        raise ValueError(f'encoder {type(encoder).__name__} fails on the images of generator '
                         f'{type(generator).__name__} (shape {(1, *shape)}): '
                         f'{type(e).__name__}: {e}') from e
    if not (isinstance(out, (tuple, list)) and len(out) == 2
            and all(isinstance(t, Tensor) for t in out)):
        raise ValueError(f'encoder {type(encoder).__name__} must return (mu, logvar), got '
                         f'{type(out).__name__}')
    for name, t in zip(('mu', 'logvar'), out):
        if tuple(t.shape) != (1, latent):
            raise ValueError(
                f'encoder {type(encoder).__name__} returns {name} of shape {tuple(t.shape)} '
                f'for one image; generator {type(generator).__name__} has noise_size={latent}, '
                f'so it must be (1, {latent}) (set the encoder\'s latent_dim)')
    return shape


def image_shape_of(model: nn.Module) -> Tuple[int, int, int]:
    """(C, H, W) of a model's images: probed when it was built, or now."""
    shape = getattr(model, 'image_shape', None)
    if shape is None:
        shape = probe_image_shape(model.generator)
    return tuple(shape)


def latent_size_of(model: nn.Module) -> int:
    """The latent size of a model: its generator's ``noise_size``."""
    return latent_size(model.generator)


__all__ = ['latent_size', 'probing', 'probe_image_shape', 'check_pair', 'image_shape_of',
           'latent_size_of']
