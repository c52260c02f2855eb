"""Any image backbone in MMagic's registry as the encoder q(z|x)."""
import warnings
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmagic.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor
from torch.nn.utils.parametrizations import spectral_norm as spectral_norm_

from .network_contract import probing

#: Layers removed by default from known backbones (see :class:`BackboneEncoder`).
DEFAULT_REMOVED_LAYERS = {
    # StyleGAN2's discriminator ends in EqualLinear(512 * 4 * 4 -> 512) + LReLU and a
    # 512 -> 1 realness score; a 1-wide feature cannot carry a posterior, so the
    # encoder reads the 512 features before the score.
    'StyleGAN2Discriminator': ('final_linear.1', ),
    'ADAStyleGAN2Discriminator': ('final_linear.1', ),
}


@MODELS.register_module()
class BackboneEncoder(BaseModule):
    """q(z|x) from any image backbone: backbone -> flatten -> Linear -> (mu, logvar).

    The backbone is built from ``backbone`` in MMagic's MODELS registry (a
    discriminator such as ``DCGANDiscriminator`` or ``StyleGAN2Discriminator``,
    or any module mapping images to features); its output (a tensor, or the
    last of a tuple) is flattened and a linear head maps it to
    ``2 * latent_dim`` values, split into mu and logvar. Its width is probed
    once by running the backbone on one zero image of ``image_shape``.

    Two things a GAN discriminator does that an encoder must not:

    - Minibatch standard deviation (StyleGAN2's ``ModMBStddevLayer``, PGGAN's
      and StyleGAN1's ``MiniBatchStddevLayer``) appends a statistic of the
      *other* images in the batch, so an image's posterior would depend on its
      batch mates (and the KL of a batch of reconstructions would see the real
      images' statistics). Every such layer is set to ``group_size=1`` (the
      appended channel is then a constant) with a warning when the config
      asked for more; ``mbstd_cfg=dict(group_size=1)`` avoids the warning
      (StyleGAN2's ``mbstd_cfg=None`` crashes in MMagic).
    - A realness score is one number per image. For known backbones the
      scoring layer is removed by default (``DEFAULT_REMOVED_LAYERS``: for
      StyleGAN2's discriminator ``final_linear.1``, so the head reads its
      512 features); ``remove_layers`` names others (dotted module names,
      replaced by ``nn.Identity``). A backbone whose output is narrower than
      ``latent_dim`` gets a warning.

    Args:
        backbone (dict): Config of the backbone, built in MMagic's MODELS.
        latent_dim (int): Size of z, the generator's ``noise_size``.
        image_size (int | tuple[int, int]): Input resolution (H, W).
        image_channels (int): Input channels.
        remove_layers (Sequence[str], optional): Submodules of the backbone
            replaced by identities; None: the default for its type (above),
            () keeps every layer.
        logvar_range (tuple[float, float]): logvar is clamped to this range,
            as in :class:`IntroVAEEncoder`, so exp(logvar) neither overflows
            nor underflows.
        spectral_norm (bool): Spectral normalisation (Miyato et al., ICLR 2018)
            on every convolution and linear layer of the backbone (not the
            head): each layer 1-Lipschitz. Measured on Fashion-MNIST it did not
            remove IntroVAE's sample speckle (docs/quality.md). Added after
            the backbone's own ``init_weights``, which then runs at
            construction, so that init still reaches the weights.
        init_cfg (dict, optional): MMEngine init config of the whole encoder;
            the backbone's own ``init_weights`` runs as part of it.

    Shapes:
        x: (N, image_channels, H, W) in the data preprocessor's range.
        Returns mu, logvar: (N, latent_dim) each, logvar clamped.
    """

    def __init__(self,
                 backbone: dict,
                 latent_dim: int,
                 image_size: Union[int, Tuple[int, int]],
                 image_channels: int = 3,
                 remove_layers: Optional[Sequence[str]] = None,
                 logvar_range: Tuple[float, float] = (-30.0, 20.0),
                 spectral_norm: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(backbone, dict) or 'type' not in backbone:
            raise ValueError(f'backbone must be a config dict with a type, got {backbone!r}')
        if not isinstance(latent_dim, int) or latent_dim <= 0:
            raise ValueError(f'latent_dim must be a positive int, got {latent_dim!r}')
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or any(not isinstance(s, int) or s <= 0 for s in size):
            raise ValueError(f'image_size must be an int or (H, W), got {image_size!r}')
        self.latent_dim = latent_dim
        self.image_shape = (int(image_channels), *size)
        self.logvar_range = tuple(logvar_range)

        self.backbone = MODELS.build(backbone)
        backbone_type = backbone['type'] if isinstance(backbone['type'], str) \
            else backbone['type'].__name__
        if remove_layers is None:
            remove_layers = DEFAULT_REMOVED_LAYERS.get(backbone_type.split('.')[-1], ())
        self.removed_layers = tuple(remove_layers)
        for name in self.removed_layers:
            self._replace(name, nn.Identity())
        self.neutralised_mbstd = neutralise_minibatch_stddev(self.backbone)
        # The parametrisation is structural (its own state-dict keys), so it exists from
        # construction on. A backbone's init writes into module.weight, which under it is
        # a computed tensor (the write would be lost), and MMEngine's init_weights cannot
        # meet modules created during it: the backbone initialises here, before the
        # parametrisation, and init_weights later skips it (is_init).
        self.spectral_norm = bool(spectral_norm)
        self.spectral_normed = ()
        if self.spectral_norm:
            if hasattr(self.backbone, 'init_weights'):
                self.backbone.init_weights()
            self.spectral_normed = self._spectral_normalise()

        self.feature_dim = self._probe_width()
        if self.feature_dim < latent_dim:
            warnings.warn(f'BackboneEncoder: backbone {backbone_type} gives {self.feature_dim} '
                          f'features per image, fewer than latent_dim={latent_dim}; remove its '
                          'scoring layer (remove_layers) or widen its output')
        self.head = nn.Linear(self.feature_dim, 2 * latent_dim)

    def _spectral_normalise(self) -> Tuple[str, ...]:
        names = []
        for name, m in self.backbone.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                spectral_norm_(m)
                names.append(name)
        if not names:
            raise ValueError(f'spectral_norm=True: the backbone {type(self.backbone).__name__} '
                             'has no Conv2d or Linear layer to normalise')
        return tuple(names)

    def _replace(self, name: str, module: nn.Module) -> None:
        parent_name, _, child = name.rpartition('.')
        try:
            parent = self.backbone.get_submodule(parent_name) if parent_name else self.backbone
            getattr(parent, child)
        except AttributeError:
            raise ValueError(f'remove_layers: the backbone {type(self.backbone).__name__} has no '
                             f'submodule {name!r}') from None
        setattr(parent, child, module)

    def _probe_width(self) -> int:
        with probing(self.backbone):
            feats = self.features(torch.zeros(1, *self.image_shape))
        return int(feats.shape[1])

    def features(self, x: Tensor) -> Tensor:
        """The backbone's output, flattened: (N, feature_dim)."""
        out = self.backbone(x)
        if isinstance(out, (tuple, list)):
            out = out[-1]
        if not isinstance(out, Tensor):
            raise TypeError(f'backbone {type(self.backbone).__name__} returned '
                            f'{type(out).__name__}, not a tensor')
        return out.flatten(1)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f'{type(self).__name__} was built for images of shape '
                             f'{self.image_shape}, got {tuple(x.shape)}')
        mu, logvar = self.head(self.features(x)).chunk(2, dim=1)
        return mu, logvar.clamp(*self.logvar_range)


def neutralise_minibatch_stddev(module: nn.Module) -> int:
    """Set every minibatch-stddev layer in ``module`` to one image per group.

    Returns how many were changed (each with a warning). Recognised by class
    name (``*MBStddevLayer``, ``MiniBatchStddevLayer``) and a ``group_size``.
    """
    changed = 0
    for name, m in module.named_modules():
        cls = type(m).__name__
        if not (cls.endswith('MBStddevLayer') or cls.endswith('MiniBatchStddevLayer')):
            continue
        if getattr(m, 'group_size', 1) != 1 or getattr(m, 'sync_std', False):
            warnings.warn(f'BackboneEncoder: {cls} {name!r} had group_size='
                          f'{getattr(m, "group_size", None)}: it mixes other images\' statistics '
                          'into each posterior; set to 1 (configure mbstd_cfg=dict(group_size=1) '
                          'to silence this)')
            m.group_size = 1
            if hasattr(m, 'sync_std'):
                m.sync_std = False
            if hasattr(m, 'sync_groups'):
                m.sync_groups = 1
            changed += 1
    return changed


__all__ = ['BackboneEncoder', 'neutralise_minibatch_stddev', 'DEFAULT_REMOVED_LAYERS']
