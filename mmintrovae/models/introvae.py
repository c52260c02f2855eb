"""IntroVAE: the introspective variational autoencoder (Huang et al., NeurIPS 2018).

The encoder E plays the VAE's inference network and the discriminator at
once: it keeps L_REG (the KL divergence to the prior) low for real images and
pushes it above a margin m for the generator's reconstructions x_r = G(E(x))
and samples x_p = G(z_p). The generator G plays the decoder and the GAN
generator: it reconstructs well and makes E give its images a low L_REG.

    L_E = L_REG(E(x)) + alpha * sum_{s in r,p} [m - L_REG(E(ng(x_s)))]^+ + beta * L_AE
    L_G = alpha_generator * sum_{s in r,p} L_REG(E(x_s)) + beta * L_AE

ng() is a stop-gradient. With the official code's reductions (see
:mod:`.losses`) its hyper-parameters map as alpha = 0.5 * weight_neg,
alpha_generator = 0.5 * weight_kl = 0.5, beta = weight_rec.

The plain-VAE warm-up (the official ``train_vae``, ``num_vae`` epochs) minimises
L_REG(E(x)) + L_AE with weight 1 on L_AE, whatever beta is, for both networks.
The paper instead describes the warm-up as its losses with alpha = 0, i.e.
L_REG(E(x)) + beta * L_AE; the two agree only when beta = 1 (see
``vae_warmup_loss``).

This file holds the objective, :class:`IntroVAEObjective` (L_E and L_G of one
iteration), and the ``IntroVAE`` model type: :class:`IntrospectiveVAE` with
that objective built from its own keyword arguments, as the recipes write it.
"""
from typing import Dict, Optional, Tuple, Union

import torch
from mmagic.registry import MODELS
from torch import Tensor, nn

from .encoder import reparameterize
from .introspective_model import IntrospectiveVAE
from .losses import kl_divergence, margin_hinge, reconstruction_error
from .objective import OBJECTIVES, IntrospectiveObjective, PhaseLoss


@OBJECTIVES.register_module()
class IntroVAEObjective(IntrospectiveObjective):
    """IntroVAE's hinge objective: L_E and L_G above.

    Args:
        m (float): The margin on L_REG of generated images.
        alpha (float): Weight of each hinge term in L_E.
        beta (float): Weight of L_AE in both losses.
        alpha_generator (float): Weight of each L_REG term in L_G. The
            official code uses 0.5 at every resolution.
        vae_warmup_iters (int): Iterations trained as a plain VAE first
            (no hinge, no adversarial L_G), as the paper suggests.
        vae_warmup_loss (str): The warm-up's loss. ``'official'`` (default,
            the official ``train_vae``): L_REG(E(x)) + L_AE, weight 1 on
            L_AE whatever beta is; the encoder gets the gradient of that sum,
            the generator that of L_AE (L_REG does not depend on it).
            ``'paper'``: the paper's L_E and L_G with alpha = 0, i.e.
            L_REG(E(x)) + beta * L_AE for the encoder and beta * L_AE for the
            generator, which keeps the balance between L_REG and L_AE that
            the introspective phase will use. They differ unless beta = 1
            (e.g. beta = 0.01 at 1024: the official warm-up weighs L_AE 100
            times more against L_REG than the paper's form).
        update_mode (str): ``'alternating'`` (default, the paper's algorithm):
            the encoder is updated first and L_G is evaluated with the updated
            encoder (5 encoder and 2 generator forward passes per iteration).
            ``'simultaneous'``: L_G is evaluated with the encoder as it was
            before its update, so the encoder passes over x_r and x_p serve
            both losses (3 encoder and 2 generator passes) and one backward
            pass through them gives both networks' gradients. Each network
            still gets exactly the gradient of its own loss; the difference to
            the paper is only which encoder L_G sees.
    """

    UPDATE_MODES = ('alternating', 'simultaneous')
    VAE_WARMUP_LOSSES = ('official', 'paper')
    draws_prior_samples = True
    hyper_parameters = ('m', 'alpha', 'beta', 'alpha_generator', 'vae_warmup_iters',
                        'vae_warmup_loss', 'update_mode')
    divergence_advice = ('lowering the margin model.m or model.beta, or lengthening the '
                         'plain-VAE warm-up model.vae_warmup_iters')

    def __init__(self,
                 m: float = 120.0,
                 alpha: float = 0.25,
                 beta: float = 0.05,
                 alpha_generator: float = 0.5,
                 vae_warmup_iters: int = 0,
                 vae_warmup_loss: str = 'official',
                 update_mode: str = 'alternating'):
        if update_mode not in self.UPDATE_MODES:
            raise ValueError(f'update_mode must be one of {self.UPDATE_MODES}, '
                             f'got {update_mode!r}')
        if vae_warmup_loss not in self.VAE_WARMUP_LOSSES:
            raise ValueError(f'vae_warmup_loss must be one of {self.VAE_WARMUP_LOSSES}, '
                             f'got {vae_warmup_loss!r}')
        if m < 0 or alpha < 0 or beta < 0 or alpha_generator < 0 or vae_warmup_iters < 0:
            raise ValueError('m, alpha, beta, alpha_generator and vae_warmup_iters must be >= 0')
        self.m = float(m)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.alpha_generator = float(alpha_generator)
        self.vae_warmup_iters = int(vae_warmup_iters)
        self.vae_warmup_loss = vae_warmup_loss
        self.update_mode = update_mode

    # ------------------------------------------------------------ the schedule
    def introspective_weights(self, curr_iter: int) -> Tuple[float, float]:
        """(alpha, alpha_generator) at iteration ``curr_iter``: zero during the VAE warm-up."""
        if curr_iter < self.vae_warmup_iters:
            return 0.0, 0.0
        return self.alpha, self.alpha_generator

    def ae_weight(self, curr_iter: int) -> float:
        """The weight of L_AE in both losses at iteration ``curr_iter``: beta, except
        in the official warm-up (``vae_warmup_loss='official'``), which uses 1."""
        if curr_iter < self.vae_warmup_iters and self.vae_warmup_loss == 'official':
            return 1.0
        return self.beta

    def schedule_log(self, curr_iter: int) -> Dict[str, Tensor]:
        return dict(alpha=torch.tensor(self.introspective_weights(curr_iter)[0]))

    # ------------------------------------------------------------ the phases
    def encoder_phase(self, encoder: nn.Module, generator: nn.Module, x: Tensor,
                      curr_iter: int) -> Tuple[PhaseLoss, dict]:
        """L_E: 3 encoder and 2 generator passes (1 and 1 during the warm-up).

        During the VAE warm-up the same code runs without the hinge: the
        encoder minimises L_REG(E(x)) + w * L_AE (w from :meth:`ae_weight`).
        That is the official ``train_vae``, which back-propagates
        L_REG(E(x)) + L_AE once and steps both optimizers: L_REG does not
        depend on the generator, so each network gets the same gradient. Two
        backwards (one per optimizer) keep each optimizer wrapper's AMP loss
        scale and gradient accumulation its own.
        """
        alpha, alpha_generator = self.introspective_weights(curr_iter)
        beta = self.ae_weight(curr_iter)  # L_AE's weight: 1 in the official warm-up
        introspective = alpha > 0 or alpha_generator > 0
        simultaneous = self.update_mode == 'simultaneous'
        log = {}
        mu, logvar = encoder(x)
        # The official order: z_p is drawn before eps, and G(z_p) decoded before
        # G(z). The generator's BatchNorm running statistics depend on the order
        # of its passes, and a seeded run's noise on the order of the draws.
        # (The official code runs E(x) after G(z_p); E and G share no state,
        # so that order changes nothing.)
        z_p = self.draw_prior(mu) if introspective else None
        z = reparameterize(mu, logvar)
        x_p = generator(z_p) if introspective else None
        # Not detached: L_AE must train the encoder through the generator.
        x_r = generator(z)
        l_reg_real = kl_divergence(mu, logvar).mean()
        l_ae = reconstruction_error(x_r, x).mean()
        # The whole encoder loss during the warm-up (the official train_vae's
        # L_REG + L_AE, or the paper's L_REG + beta * L_AE).
        loss_encoder = l_reg_real + beta * l_ae
        if introspective:
            # ng(x_r), ng(x_p): the hinge trains the encoder only. Never
            # let it reach the generator, which must *lower* these KLs.
            # In the simultaneous mode they are leaves that record
            # dL_REG/dx_s, which L_G needs (see below).
            x_r_ng = x_r.detach().requires_grad_(simultaneous)
            x_p_ng = x_p.detach().requires_grad_(simultaneous)
            l_reg_rec = kl_divergence(*encoder(x_r_ng)).mean()
            l_reg_fake = kl_divergence(*encoder(x_p_ng)).mean()
            loss_encoder = loss_encoder + alpha * (
                margin_hinge(l_reg_rec, self.m) + margin_hinge(l_reg_fake, self.m))
            log.update(kl_rec=l_reg_rec, kl_fake=l_reg_fake)
        log.update(loss_encoder=loss_encoder, loss_ae=l_ae, kl_real=l_reg_real)
        # What L_G reuses: the decoder graphs x_r = G(z) (through l_ae) and
        # x_p = G(z_p), which the encoder's backward keeps (retain_graph).
        state = dict(introspective=introspective, beta=beta, alpha_generator=alpha_generator,
                     l_ae=l_ae, x_r=x_r, x_p=x_p, posterior=(mu, logvar))
        if not (simultaneous and introspective):
            return PhaseLoss(loss_encoder, log), state

        # ------------------------------------ simultaneous: both losses from these passes
        # L_G with the encoder *before* its update: E(x_r_ng), E(x_p_ng) above
        # are the passes L_G re-encodes with, so there is no generator-phase
        # encoder pass. One backward through each of them (which frees its
        # graph) gives what both networks need from it: dL_REG/dtheta_E for the
        # encoder's hinge and dL_REG/dx_s for L_G. Both networks still get
        # exactly the gradient of their own loss. These are backward passes:
        # outside AMP's autocast, as a backward() is.
        with torch.autocast(x.device.type, enabled=False):
            # dL_E/dL_REG(E(ng(x_s))): alpha times the hinge's slope (-1 while
            # L_REG < m, else 0); this walks only the few nodes of the hinge.
            slope_rec, slope_fake = torch.autograd.grad(loss_encoder, [l_reg_rec, l_reg_fake])
            enc_params = [p for p in encoder.parameters() if p.requires_grad]
            *d_rec_d_enc, d_rec_d_x = torch.autograd.grad(l_reg_rec, enc_params + [x_r_ng])
            *d_fake_d_enc, d_fake_d_x = torch.autograd.grad(l_reg_fake, enc_params + [x_p_ng])
            # Encoder: L_E with its hinge terms entered as sum(theta * dHinge/dtheta),
            # whose gradient is that of the hinge terms; L_REG(E(x)) and beta * L_AE
            # back-propagate as usual. A single backward() for all of the encoder's
            # gradient is what DDP needs to synchronise it (autograd.grad above
            # runs no DDP hooks).
            hinge_grads = [slope_rec * g_r + slope_fake * g_p
                           for g_r, g_p in zip(d_rec_d_enc, d_fake_d_enc)]
            encoder_objective = l_reg_real + beta * l_ae + sum(
                (p * g).sum() for p, g in zip(enc_params, hinge_grads))
            # Generator: L_G's KL terms reach x_r and x_p (not detached) through the
            # input gradients above (chain rule); L_AE as in the alternating mode.
            loss_generator = beta * l_ae + alpha_generator * (l_reg_rec + l_reg_fake)
            generator_objective = beta * l_ae + alpha_generator * (
                (x_r * d_rec_d_x).sum() + (x_p * d_fake_d_x).sum())
        # value=: the divergence guard checks the losses themselves, not the
        # surrogates (same gradients, other values).
        generator_loss = PhaseLoss(generator_objective, dict(
            kl_rec_g=l_reg_rec, kl_fake_g=l_reg_fake, loss_generator=loss_generator),
            value=loss_generator)
        return PhaseLoss(encoder_objective, log, value=loss_encoder), dict(
            simultaneous=generator_loss, posterior=(mu, logvar))

    def generator_phase(self, encoder: nn.Module, generator: nn.Module, state: dict,
                        curr_iter: int) -> PhaseLoss:
        """L_G: 2 encoder passes through the updated encoder (none in the
        simultaneous mode or during the warm-up); no generator pass."""
        if 'simultaneous' in state:  # computed with L_E, from the same passes
            return state['simultaneous']
        # The whole generator loss during the warm-up: with the encoder's
        # backward, the gradients of one backward of L_REG + beta * L_AE.
        loss_generator = state['beta'] * state['l_ae']
        log = {}
        if state['introspective']:
            # Re-encode with the *updated* encoder; x_r and x_p are not
            # detached, so both reach the generator. The encoder's weights
            # get no gradient here (the loop's backward(inputs=...)), and
            # autograd never walks back into the first encoder pass, whose
            # weights the encoder step has just changed in place.
            l_reg_rec_g = kl_divergence(*encoder(state['x_r'])).mean()
            l_reg_fake_g = kl_divergence(*encoder(state['x_p'])).mean()
            loss_generator = loss_generator + state['alpha_generator'] * (
                l_reg_rec_g + l_reg_fake_g)
            log.update(kl_rec_g=l_reg_rec_g, kl_fake_g=l_reg_fake_g)
        log.update(loss_generator=loss_generator)
        return PhaseLoss(loss_generator, log)


@MODELS.register_module()
class IntroVAE(IntrospectiveVAE):
    """:class:`IntrospectiveVAE` with :class:`IntroVAEObjective` built from its
    keyword arguments: ``model=dict(type='IntroVAE', m=..., alpha=..., ...)``.

    Args:
        encoder, generator, architecture, data_preprocessor, ema_config,
            max_bad_iterations, channels_last, latent_prior: As for
            :class:`IntrospectiveVAE`.
        m, alpha, beta, alpha_generator, vae_warmup_iters, vae_warmup_loss,
            update_mode: As for :class:`IntroVAEObjective`; they read as the
            model's attributes (``model.m``, ...).
    """

    UPDATE_MODES = IntroVAEObjective.UPDATE_MODES
    VAE_WARMUP_LOSSES = IntroVAEObjective.VAE_WARMUP_LOSSES

    def __init__(self,
                 encoder: Union[dict, nn.Module],
                 generator: Union[dict, nn.Module],
                 architecture: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 m: float = 120.0,
                 alpha: float = 0.25,
                 beta: float = 0.05,
                 alpha_generator: float = 0.5,
                 vae_warmup_iters: int = 0,
                 vae_warmup_loss: str = 'official',
                 ema_config: Optional[dict] = None,
                 max_bad_iterations: int = 10,
                 update_mode: str = 'alternating',
                 channels_last: bool = False,
                 latent_prior: Union[str, dict] = 'standard'):
        objective = IntroVAEObjective(
            m=m, alpha=alpha, beta=beta, alpha_generator=alpha_generator,
            vae_warmup_iters=vae_warmup_iters, vae_warmup_loss=vae_warmup_loss,
            update_mode=update_mode)
        super().__init__(encoder=encoder, generator=generator, objective=objective,
                         architecture=architecture, data_preprocessor=data_preprocessor,
                         ema_config=ema_config, max_bad_iterations=max_bad_iterations,
                         channels_last=channels_last,
                         latent_prior=latent_prior)

    def introspective_weights(self, curr_iter: int) -> Tuple[float, float]:
        """(alpha, alpha_generator) at ``curr_iter``; see :class:`IntroVAEObjective`."""
        return self.objective.introspective_weights(curr_iter)

    def ae_weight(self, curr_iter: int) -> float:
        """L_AE's weight at ``curr_iter``; see :class:`IntroVAEObjective`."""
        return self.objective.ae_weight(curr_iter)


__all__ = ['IntroVAEObjective', 'IntroVAE']
