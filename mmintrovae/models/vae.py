"""A plain VAE (Kingma & Welling, 2014) on the introspective model's networks.

The baseline IntroVAE and Soft-IntroVAE are measured against, with IntroVAE's
names and reductions (:mod:`.losses`): sums over latent dimensions and pixels,
a batch mean. Its negative ELBO, weighting L_AE by beta, is split into what
each network's parameters can change:

    L_E = L_REG(E(x)) + beta * L_AE,      L_AE = ||x - G(z)||^2,  z ~ q(z | x)
    L_G = beta * L_AE                     (L_REG does not depend on G)

One encoder and one generator pass per iteration, no prior sample. The
gradients are those of one backward of L_REG + beta * L_AE stepping both
optimizers; it is IntroVAE with alpha = alpha_generator = 0 and no warm-up
(``configs/vae_*.py`` write it that way), step for step.

This file holds the objective, :class:`VAEObjective`, and the ``VAE`` model
type: :class:`IntrospectiveVAE` with that objective built from ``beta``.
"""
from typing import Optional, Tuple, Union

from mmagic.registry import MODELS
from torch import Tensor, nn

from .encoder import reparameterize
from .introspective_model import IntrospectiveVAE
from .losses import kl_divergence, reconstruction_error
from .objective import OBJECTIVES, IntrospectiveObjective, PhaseLoss


@OBJECTIVES.register_module()
class VAEObjective(IntrospectiveObjective):
    """The plain VAE's L_E and L_G above.

    Args:
        beta (float): Weight of L_AE against L_REG; 1 is the ELBO of a
            Gaussian decoder with variance 1/2 (SSE without the 1/2).
    """

    hyper_parameters = ('beta',)
    divergence_advice = 'lowering the learning rates or model.beta'

    def __init__(self, beta: float = 1.0):
        if beta < 0:
            raise ValueError(f'beta must be >= 0, got {beta}')
        self.beta = float(beta)

    def encoder_phase(self, encoder: nn.Module, generator: nn.Module, x: Tensor,
                      curr_iter: int) -> Tuple[PhaseLoss, dict]:
        """L_E: one encoder and one generator pass."""
        mu, logvar = encoder(x)
        z = reparameterize(mu, logvar)
        # Not detached: L_AE trains the encoder through the generator.
        x_r = generator(z)
        l_reg_real = kl_divergence(mu, logvar).mean()
        l_ae = reconstruction_error(x_r, x).mean()
        loss_encoder = l_reg_real + self.beta * l_ae
        log = dict(loss_encoder=loss_encoder, loss_ae=l_ae, kl_real=l_reg_real)
        # L_G reuses L_AE's graph through G(z) (kept by the encoder's backward).
        return PhaseLoss(loss_encoder, log), dict(l_ae=l_ae, posterior=(mu, logvar))

    def generator_phase(self, encoder: nn.Module, generator: nn.Module, state: dict,
                        curr_iter: int) -> PhaseLoss:
        """L_G: no new pass; the generator's gradient of beta * L_AE."""
        loss_generator = self.beta * state['l_ae']
        return PhaseLoss(loss_generator, dict(loss_generator=loss_generator))


@MODELS.register_module()
class VAE(IntrospectiveVAE):
    """:class:`IntrospectiveVAE` with :class:`VAEObjective`:
    ``model=dict(type='VAE', beta=1.0, ...)``.

    Args:
        encoder, generator, architecture, data_preprocessor, ema_config,
            max_bad_iterations, channels_last, latent_prior: As for
            :class:`IntrospectiveVAE`.
        beta (float): As for :class:`VAEObjective` (``model.beta``).
    """

    def __init__(self,
                 encoder: Union[dict, nn.Module],
                 generator: Union[dict, nn.Module],
                 architecture: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 beta: float = 1.0,
                 ema_config: Optional[dict] = None,
                 max_bad_iterations: int = 10,
                 channels_last: bool = False,
                 latent_prior: Union[str, dict] = 'standard'):
        super().__init__(encoder=encoder, generator=generator,
                         objective=VAEObjective(beta=beta), architecture=architecture,
                         data_preprocessor=data_preprocessor, ema_config=ema_config,
                         max_bad_iterations=max_bad_iterations, channels_last=channels_last,
                         latent_prior=latent_prior)


__all__ = ['VAEObjective', 'VAE']
