"""IntroVAE generator (decoder) G: z -> image."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmagic.registry import MODELS
from torch import Tensor

from ._checks import check_architecture
from .residual_block import ResidualBlock, has_projection

_UPSAMPLE_MODES = ('nearest', 'bilinear')


def _upsample(mode: str) -> nn.Module:
    # align_corners=False: the upsampled grid keeps the pixel centres of the input.
    if mode == 'nearest':
        return nn.Upsample(scale_factor=2, mode='nearest')
    return nn.Upsample(scale_factor=2, mode=mode, align_corners=False)


_OUTPUT_ACTIVATIONS = {'none': nn.Identity, 'sigmoid': nn.Sigmoid, 'tanh': nn.Tanh}


@MODELS.register_module()
class IntroVAEGenerator(nn.Module):
    """The IntroVAE generator, mirroring :class:`IntroVAEEncoder`.

    Linear(latent_dim -> c * 4 * 4) + ReLU, then for every entry of
    ``channels`` (low to high resolution) a residual block and a nearest x2
    upsampling, one more residual block, and a 5x5 conv to image channels.

    Args:
        image_size (int): Output resolution, a power of two in [32, 1024].
        channels (Sequence[int]): The encoder's channel list (high to low
            resolution); the generator walks it in reverse.
        latent_dim (int): Size of z. Defaults to 512.
        image_channels (int): 1 or 3.
        norm_type (str): 'BN' (official) or 'none'.
        output_activation (str): 'none' (official), 'sigmoid' or 'tanh'.
        upsample_mode (str): ``'nearest'`` (official) or ``'bilinear'``. Nearest
            upsampling copies each pixel into a 2x2 block, and what the following
            convolutions cannot smooth away shows as a periodic grid (cross-hatch)
            texture in samples and reconstructions; bilinear upsampling removes
            it (docs/quality.md).
        shortcut (str): ``'identity'`` (default) or ``'official'``, as for
            :class:`IntroVAEEncoder`: with ``'official'`` every 512 -> 512
            block between two list entries gets a 1x1 projection (not the
            first block, from the last entry to itself, nor the last).

    Shapes:
        noise: (N, latent_dim). Returns (N, image_channels, image_size,
        image_size), unbounded unless ``output_activation`` is set; trained to
        match the preprocessed data range ([0, 1] in the recipes).
    """

    def __init__(self,
                 image_size: int,
                 channels: Sequence[int],
                 latent_dim: int = 512,
                 image_channels: int = 3,
                 norm_type: str = 'BN',
                 output_activation: str = 'none',
                 upsample_mode: str = 'nearest',
                 shortcut: str = 'identity'):
        super().__init__()
        check_architecture(image_size, channels, image_channels, latent_dim)
        if output_activation not in _OUTPUT_ACTIVATIONS:
            raise ValueError(f'output_activation must be one of {sorted(_OUTPUT_ACTIVATIONS)}, '
                             f'got {output_activation!r}')
        if upsample_mode not in _UPSAMPLE_MODES:
            raise ValueError(f'upsample_mode must be one of {_UPSAMPLE_MODES}, '
                             f'got {upsample_mode!r}')
        self.image_size = image_size
        self.latent_dim = latent_dim
        self.image_channels = image_channels
        # BaseGAN samples noise of this size.
        self.noise_size = latent_dim

        in_ch = channels[-1]
        self.fc = nn.Sequential(nn.Linear(latent_dim, in_ch * 4 * 4), nn.ReLU(inplace=True))
        self._fc_channels = in_ch
        layers = []
        # The first block goes from the last entry of `channels` to itself, each
        # further one from an entry to the one before it.
        for i, out_ch in enumerate(reversed(channels)):
            projection = has_projection(in_ch, out_ch, same_entry=i == 0, shortcut=shortcut)
            layers += [ResidualBlock(in_ch, out_ch, norm_type, projection),
                       _upsample(upsample_mode)]
            in_ch = out_ch
        # The last block: from the first entry to itself.
        projection = has_projection(in_ch, in_ch, same_entry=True, shortcut=shortcut)
        layers += [ResidualBlock(in_ch, in_ch, norm_type, projection),
                   nn.Conv2d(in_ch, image_channels, 5, padding=2)]
        self.main = nn.Sequential(*layers)
        self.output_activation = _OUTPUT_ACTIVATIONS[output_activation]()

    def forward(self,
                noise: Optional[Tensor] = None,
                num_batches: int = 0,
                return_noise: bool = False):
        """Decode ``noise`` (or ``num_batches`` draws from N(0, I)).

        Returns the images, or ``dict(fake_img=..., noise_batch=...)`` when
        ``return_noise`` is set (MMagic's generator convention).
        """
        if noise is None:
            if num_batches <= 0:
                raise ValueError('give either noise or num_batches > 0')
            noise = torch.randn(num_batches, self.latent_dim, device=self.fc[0].weight.device)
        if noise.ndim != 2 or noise.shape[1] != self.latent_dim:
            raise ValueError(f'noise must have shape (N, {self.latent_dim}), got {tuple(noise.shape)}')
        h = self.fc(noise).view(-1, self._fc_channels, 4, 4)
        img = self.output_activation(self.main(h))
        if return_noise:
            return dict(fake_img=img, noise_batch=noise)
        return img
