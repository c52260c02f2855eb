"""IntroVAE encoder E: image -> (mu, logvar) of q(z|x)."""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from mmagic.registry import MODELS
from torch import Tensor

from ._checks import check_architecture
from .residual_block import ResidualBlock, has_projection, make_norm


@MODELS.register_module()
class IntroVAEEncoder(nn.Module):
    """The IntroVAE inference network (Huang et al., 2018, official layout).

    conv5x5 -> norm -> LReLU -> avgpool, then for every further entry of
    ``channels`` a residual block and an avgpool, one more residual block at
    4x4, and a linear layer to ``2 * latent_dim`` split into mu and logvar.

    Args:
        image_size (int): Input resolution, a power of two in [32, 1024].
        channels (Sequence[int]): Feature channels from high to low
            resolution; ``4 * 2 ** len(channels) == image_size``.
        latent_dim (int): Size of z. Defaults to 512 (official).
        image_channels (int): 1 (grey) or 3 (RGB).
        norm_type (str): 'BN' (official) or 'none'.
        logvar_range (tuple[float, float]): logvar is clamped to this range
            so exp(logvar) can neither overflow nor underflow; the official
            code leaves it free and its runs can go NaN.
        shortcut (str): Which residual blocks get a 1x1 projection on the
            shortcut. ``'identity'`` (default): those that change channels.
            ``'official'``: also those between two list entries of the same
            value above 256 (every 512 -> 512 block but the last), as the
            official networks do through an ``is not`` test on parsed ints;
            see :mod:`.residual_block`. The two layouts have different
            state dicts: a checkpoint loads only into the layout it was
            trained with.

    Shapes:
        x: (N, image_channels, image_size, image_size), images in the range
        set by the data preprocessor ([0, 1] in the recipes).
        Returns mu, logvar: (N, latent_dim) each.
    """

    def __init__(self,
                 image_size: int,
                 channels: Sequence[int],
                 latent_dim: int = 512,
                 image_channels: int = 3,
                 norm_type: str = 'BN',
                 logvar_range: Tuple[float, float] = (-30.0, 20.0),
                 shortcut: str = 'identity'):
        super().__init__()
        check_architecture(image_size, channels, image_channels, latent_dim)
        self.image_size = image_size
        self.latent_dim = latent_dim
        self.image_channels = image_channels
        self.logvar_range = tuple(logvar_range)

        layers = [
            nn.Conv2d(image_channels, channels[0], 5, padding=2, bias=False),
            make_norm(norm_type, channels[0]),
            nn.LeakyReLU(0.2, inplace=True),
            nn.AvgPool2d(2),
        ]
        in_ch = channels[0]
        # Each block goes from one entry of `channels` to the next ...
        for out_ch in channels[1:]:
            projection = has_projection(in_ch, out_ch, same_entry=False, shortcut=shortcut)
            layers += [ResidualBlock(in_ch, out_ch, norm_type, projection), nn.AvgPool2d(2)]
            in_ch = out_ch
        # ... except the last, from the last entry to itself.
        projection = has_projection(in_ch, in_ch, same_entry=True, shortcut=shortcut)
        layers.append(ResidualBlock(in_ch, in_ch, norm_type, projection))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(in_ch * 4 * 4, 2 * latent_dim)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f'{type(self).__name__} was built for {self.image_size}x'
                             f'{self.image_size} images, got shape {tuple(x.shape)}')
        h = self.features(x).flatten(1)
        mu, logvar = self.fc(h).chunk(2, dim=1)
        return mu, logvar.clamp(*self.logvar_range)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = mu + eps * sigma, eps ~ N(0, I); differentiable in mu and logvar."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
