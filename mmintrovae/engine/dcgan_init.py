"""A working ``init_weights`` for MMagic 1.2.0's DCGAN networks.

MMagic 1.2.0's ``DCGANDiscriminator.init_weights`` walks ``self.modules()`` and
records an ``init_info`` string that it sets only for convolutions and
BatchNorms; the first module of the walk is the discriminator itself, so every
call ends in ``UnboundLocalError: ... 'init_info'``, and building MMagic's own
DCGAN configs (``Runner`` calls ``model.init_weights()``) fails before training.
``DCGANGenerator.init_weights`` calls MMEngine's ``update_init_info`` on every
module, which asserts the bookkeeping that only a parent ``BaseModule`` sets up,
so calling it on the generator alone fails with an AssertionError.

:func:`patch_dcgan_init_weights` (run on ``import mmintrovae``) replaces both
methods, on these two classes only, with :func:`dcgan_init_weights`: the
initialisation of the DCGAN paper (Radford et al. 2016, "all weights were
initialized from a zero-centered Normal distribution with standard deviation
0.02") that MMagic's code means to apply: convolutions and transposed
convolutions N(0, 0.02) with zero bias, BatchNorm scales around one
(N(1, 0.02), the DCGAN reference implementations' choice; MMagic's own log
message says "unit mean", while its code draws N(0, 1), which makes half of the
scales negative) and zero BatchNorm shifts. A
``Pretrained`` init_cfg is still handed to ``BaseModule.init_weights``, as
MMagic does. Nothing in site-packages is edited.
"""
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import update_init_info
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

#: Normal distributions (mean, std) of the DCGAN initialisation.
CONV_WEIGHT = (0.0, 0.02)
BN_WEIGHT = (1.0, 0.02)
INIT_INFO = ('DCGAN initialisation (mmintrovae.engine.dcgan_init): conv weights '
             f'N{CONV_WEIGHT}, BatchNorm weights N{BN_WEIGHT}, biases 0')

_PATCHED_ATTR = '_mmintrovae_dcgan_init'


def dcgan_init_weights(self: nn.Module) -> None:
    """Initialise a DCGAN generator or discriminator in place (see the module doc).

    Works on the network alone or as part of a model whose ``init_weights``
    (MMEngine's ``BaseModule``) calls it; in the latter case the parameters'
    init info reads :data:`INIT_INFO`.
    """
    init_cfg = getattr(self, 'init_cfg', None)
    if init_cfg is not None and init_cfg.get('type') == 'Pretrained':
        BaseModule.init_weights(self)
        return
    for m in self.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, *CONV_WEIGHT)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _BatchNorm):
            if m.weight is not None:
                nn.init.normal_(m.weight, *BN_WEIGHT)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    # MMEngine's init bookkeeping exists only while a parent BaseModule initialises.
    if hasattr(self, '_params_init_info'):
        update_init_info(self, INIT_INFO)


def patch_dcgan_init_weights() -> list:
    """Replace ``init_weights`` of MMagic's DCGANGenerator and DCGANDiscriminator.

    Idempotent. Returns the classes patched (empty when MMagic has no DCGAN).
    """
    try:
        from mmagic.models.editors.dcgan import DCGANDiscriminator, DCGANGenerator
    except ImportError:  # a future MMagic without these networks: nothing to fix
        return []
    patched = []
    for cls in (DCGANGenerator, DCGANDiscriminator):
        if not getattr(cls.init_weights, _PATCHED_ATTR, False):
            def init_weights(self):
                dcgan_init_weights(self)
            init_weights.__doc__ = dcgan_init_weights.__doc__
            init_weights.__wrapped__ = cls.__dict__.get('init_weights')
            setattr(init_weights, _PATCHED_ATTR, True)
            cls.init_weights = init_weights
        patched.append(cls)
    return patched


patch_dcgan_init_weights()

__all__ = ['dcgan_init_weights', 'patch_dcgan_init_weights', 'INIT_INFO', 'CONV_WEIGHT',
           'BN_WEIGHT']
