"""The residual block shared by the IntroVAE encoder and generator.

Which blocks get a 1x1 projection on the shortcut (``shortcut`` of the
encoder and generator):

* ``'identity'``: only blocks that change the channel count.
* ``'official'``: the layout the official networks really have. networks.py
  adds the projection when ``inc is not outc``, an *identity* test on the two
  channel ints, and main.py builds the channel list with ``int()`` from the
  command line. CPython shares one int object per value only in [-5, 256];
  ``int('512')`` makes a new object each time. So besides every block that
  changes channels, a block between two *different* entries of the list with
  the same value above 256 (512 -> 512) gets a projection too; a block whose
  input and output are the *same* entry (the encoder's last block, the
  generator's first and last) does not. Official 256 recipe (32..512, 512):
  one extra projection per network; 1024 (..., 512, 512, 512): two.
"""
from typing import Optional

import torch.nn as nn
from torch import Tensor

SHORTCUTS = ('identity', 'official')
#: The largest int CPython keeps a single shared object for (the small-int cache).
CPYTHON_SHARED_INT_MAX = 256


def has_projection(in_channels: int, out_channels: int, same_entry: bool,
                   shortcut: str = 'identity') -> bool:
    """Whether a residual block gets a 1x1 projection on its shortcut.

    Args:
        in_channels, out_channels: The block's channels.
        same_entry: Both come from the same entry of the channel list (the
            official code then passes the same int object twice).
        shortcut: ``'identity'`` or ``'official'`` (see the module docstring).
    """
    if shortcut not in SHORTCUTS:
        raise ValueError(f'shortcut must be one of {SHORTCUTS}, got {shortcut!r}')
    if in_channels != out_channels:
        return True
    # official: `inc is not outc` on ints parsed by int(), i.e. distinct objects
    # unless they are one entry or a value CPython shares.
    return shortcut == 'official' and not same_entry and in_channels > CPYTHON_SHARED_INT_MAX


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
    shortcut is a bias-free 1x1 convolution when the channel count changes.
    The official networks also have one on some 512 -> 512 blocks (see
    :func:`has_projection`); ``projection`` lets the encoder and generator
    reproduce that.

    Args:
        in_channels (int): Channels of the input feature map.
        out_channels (int): Channels of the output feature map.
        norm_type (str): 'BN' (official) or 'none'.
        projection (bool, optional): Force the 1x1 projection on (True) or
            leave it to the channel counts (None: projection iff they differ).
            False with different channel counts is an error.

    Shapes:
        (N, in_channels, H, W) -> (N, out_channels, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, norm_type: str = 'BN',
                 projection: Optional[bool] = None):
        super().__init__()
        if projection is None:
            projection = in_channels != out_channels
        elif not projection and in_channels != out_channels:
            raise ValueError(f'a block from {in_channels} to {out_channels} channels needs '
                             'a projection on its shortcut')
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1, bias=False)
                         if projection else nn.Identity())
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
