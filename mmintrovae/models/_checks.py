"""Validation of the network hyper-parameters shared by encoder and generator."""
from typing import Sequence


def check_architecture(image_size: int, channels: Sequence[int], image_channels: int,
                       latent_dim: int) -> None:
    """Raise ValueError naming the argument at fault.

    The networks halve (or double) the resolution once per entry of
    ``channels`` and work at 4x4 at the bottom, so
    ``4 * 2 ** len(channels) == image_size``.
    """
    if not isinstance(image_size, int) or image_size < 32 or image_size > 1024 \
            or image_size & (image_size - 1):
        raise ValueError('image_size must be a power of two from 32 to 1024, '
                         f'got {image_size!r}')
    if not channels or any(int(c) <= 0 for c in channels):
        raise ValueError(f'channels must be a non-empty list of positive ints, got {channels!r}')
    if 4 * 2**len(channels) != image_size:
        needed = (image_size // 4).bit_length() - 1
        raise ValueError(
            f'channels={list(channels)} has {len(channels)} entries, which gives '
            f'{4 * 2 ** len(channels)}x{4 * 2 ** len(channels)} images; '
            f'image_size={image_size} needs {needed} entries (4 * 2**len(channels) == image_size)')
    if image_channels not in (1, 3):
        raise ValueError(f'image_channels must be 1 or 3, got {image_channels!r}')
    if latent_dim <= 0:
        raise ValueError(f'latent_dim must be positive, got {latent_dim!r}')
