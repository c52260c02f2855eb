"""The residual block shared by the IntroVAE encoder and generator."""
import torch.nn as nn
from torch import Tensor

_NORM_LAYERS = {
    'BN': nn.BatchNorm2d,
    # SyncBN is swapped in by MMEngine's `sync_bn` switch; 'none' is for ablations.
    'none': None,
}


def make_norm(norm_type: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer by name ('BN' or 'none')."""
    if norm_type not in _NORM_LAYERS:
        raise ValueError(f'norm_type must be one of {sorted(_NORM_LAYERS)}, '
                         f'got {norm_type!r}')
    layer = _NORM_LAYERS[norm_type]
    return nn.Identity() if layer is None else layer(channels)


class ResidualBlock(nn.Module):
    """conv3x3 -> norm -> LReLU -> conv3x3 -> (+ shortcut) -> norm -> LReLU.

    As in the official IntroVAE networks: convolutions have no bias, and the
    shortcut gets a 1x1 projection only when the channel count changes (the
    official code's ``inc is not outc`` test compared int identities and could
    add projections to 512 -> 512 blocks too).

    Args:
        in_channels (int): Channels of the input feature map.
        out_channels (int): Channels of the output feature map.
        norm_type (str): 'BN' (official) or 'none'.

    Shapes:
        (N, in_channels, H, W) -> (N, out_channels, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, norm_type: str = 'BN'):
        super().__init__()
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, bias=False)
            if in_channels != out_channels else nn.Identity())
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = make_norm(norm_type, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm_type, out_channels)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        identity = self.shortcut(x)
        out = self.act(self.norm1(self.conv1(x)))
        out = self.conv2(out)
        # Official order: the normalisation comes after the addition.
        return self.act(self.norm2(out + identity))
