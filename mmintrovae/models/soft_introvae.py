"""Soft-IntroVAE (Daniel & Tamar, CVPR 2021) on IntroVAE's encoder and generator.

Soft-IntroVAE keeps IntroVAE's game (the encoder E tells real images from
generated ones by their ELBO, the decoder D = the generator G tries to make its
images look real to E) but replaces the hard margin on the KL with a smooth
exponential of the whole ELBO. With s = 1 / (C * H * W) (one over the number
of pixel values of an image), for a batch x and prior noise z_p:

    ELBO(x)   = -(beta_rec * SSE(x, D(z)) + beta_kl * KL(E(x))),  z ~ q(z | x)
    x_r = D(z)         a reconstruction        x_p = D(z_p)   a sample
    ELBO_neg(y) = -(beta_rec * SSE(y, D(z_y)) + beta_neg * KL(E(y))),  z_y ~ q(z | y)

    L_E = -s * ELBO(x)
          + 1/2 * [ 1/alpha * exp(alpha * s * ELBO_neg(ng(x_r)))
                  + 1/alpha * exp(alpha * s * ELBO_neg(ng(x_p))) ]
    L_D = s * ( beta_rec * SSE(x, D(ng(z)))
              + 1/2 * beta_kl * (KL(E(x_r)) + KL(E(x_p)))
              + gamma_r * 1/2 * beta_rec * (SSE(ng(x_r), D(ng(z_r))) + SSE(ng(x_p), D(ng(z_p'))))
              )

ng() is a stop-gradient, z_r ~ q(z | x_r) and z_p' ~ q(z | x_p) come from the
updated encoder (encoder step first, decoder step second, same batch and same
noise). The encoder lowers -ELBO of real images and, through the exponential,
raises -ELBO_neg of generated ones: an image whose ELBO is already very low
contributes almost nothing (exp of a large negative number), so, unlike
IntroVAE's hinge, there is no margin m to tune. The decoder makes the encoder
give its reconstructions and samples a low KL and, with the tiny weight gamma_r,
reconstructs its own images when they are re-encoded.

Reductions (those of the authors' code, and of :mod:`.losses`): SSE is the sum
of squared errors over C*H*W per image, KL the sum over latent dimensions per
image; the real-image terms and the decoder's terms are batch means; each
exponential is taken per image and then averaged over the batch (the mean of
exponentials, not the exponential of a mean). All losses are computed in fp32.

The authors' hyper-parameters and how they map here (``model.*`` keys):

==============  ==========  ============================================
paper / code    here        value in the authors' recipes
==============  ==========  ============================================
beta_rec        beta_rec    1.0 (CelebA-HQ 256: 1.0)
beta_kl         beta_kl     1.0 (CelebA-HQ 256: 0.5)
beta_neg        beta_neg    256 (CIFAR-10, (Fashion-)MNIST), 1024 (CelebA-HQ)
gamma_r         gamma_r     1e-8
alpha (= 2)     alpha       2: the encoder's 0.25 * (expELBO_rec + expELBO_fake)
s               (computed)  1 / (C * H * W) of the training images
num_vae epochs  vae_warmup_iters   0 in every published recipe
==============  ==========  ============================================

Two deliberate differences from the authors' code: (1) in the encoder step the
re-reconstruction error of x_r is measured against ng(x_r), as the paper's
stop-gradient says (the code compares with the non-detached x_r, which lets
that term reach the encoder's pass over the real images through x_r); (2) the
optional plain-VAE warm-up loss is scaled by s like the rest (the code leaves
it unscaled, so Adam's second-moment estimates are about (C*H*W)^2 too large
when the introspective phase starts). One difference of cost only: the
decoder step reuses the encoder step's x_r = D(z) and x_p = D(z_p) graphs
(the decoder's weights have not changed in between, so the images are the
same) where the authors' code decodes them again; the decoder's BatchNorm
running statistics therefore take one update from each of those batches,
not two. The noise is drawn, and the passes run, in the authors' order
(z_p before eps, D(z_p) before D(z)). The networks are IntroVAE's: the
authors' Soft-IntroVAE residual blocks put BatchNorm before the addition,
IntroVAE's after it.

This file holds the objective, :class:`SoftIntroVAEObjective`, and the
``SoftIntroVAE`` model type: :class:`IntrospectiveVAE` with that objective
built from its own keyword arguments, as the recipes write it.
"""
from typing import Dict, Optional, Tuple, Union

import torch
from mmagic.registry import MODELS
from torch import Tensor, nn

from .encoder import reparameterize
from .introspective_model import IntrospectiveVAE
from .losses import kl_divergence, reconstruction_error
from .objective import OBJECTIVES, IntrospectiveObjective, PhaseLoss


def exp_elbo(sse: Tensor, kl: Tensor, scale: float, beta_rec: float, beta_neg: float,
             alpha: float) -> Tensor:
    """Batch mean of exp(alpha * s * ELBO_neg) for per-image SSE and KL.

    Args:
        sse, kl: (N,) per-image re-reconstruction errors and KL divergences.
        scale: s = 1 / (C * H * W).

    Returns:
        A scalar in (0, 1], computed in fp32: the exponent is never positive,
        so it cannot overflow.
    """
    elbo_neg = -(beta_rec * sse.float() + beta_neg * kl.float())
    return torch.exp(alpha * scale * elbo_neg).mean()


@OBJECTIVES.register_module()
class SoftIntroVAEObjective(IntrospectiveObjective):
    """Soft-IntroVAE's exponential-ELBO objective: L_E and L_D above.

    Args:
        beta_rec (float): Weight of the reconstruction error, in every ELBO.
        beta_kl (float): Weight of the KL of real images (encoder) and of
            reconstructions and samples (decoder).
        beta_neg (float): Weight of the KL inside the exponential ELBO of
            reconstructions and samples (encoder). The authors lower it (e.g.
            256 -> 128) when the KL of real images stays above that of samples.
        gamma_r (float): Weight of the decoder's re-reconstruction error of
            its own images.
        alpha (float): The exponent's factor; each exponential term of the
            encoder loss is weighted 0.5 / alpha. The authors use 2.
        vae_warmup_iters (int): Iterations trained as a plain VAE first (one
            encoder and one decoder pass). The authors' recipes use none. The
            warm-up loss is the Soft-IntroVAE authors' -s * ELBO(x) =
            s * (beta_rec * L_AE + beta_kl * KL(E(x))) for both networks (their
            code back-propagates it once and steps both optimizers; here each
            optimizer back-propagates its own part, the same gradients), not
            IntroVAE's (there is no ``vae_warmup_loss`` here).
    """

    draws_prior_samples = True
    hyper_parameters = ('beta_rec', 'beta_kl', 'beta_neg', 'gamma_r', 'alpha',
                        'vae_warmup_iters', 'update_mode')
    divergence_advice = ('lowering model.beta_neg (the authors halve it when the KL of real '
                         'images stays above that of samples) or model.beta_rec, or adding a '
                         'plain-VAE warm-up model.vae_warmup_iters')

    def __init__(self,
                 beta_rec: float = 1.0,
                 beta_kl: float = 1.0,
                 beta_neg: float = 256.0,
                 gamma_r: float = 1e-8,
                 alpha: float = 2.0,
                 vae_warmup_iters: int = 0):
        if min(beta_rec, beta_kl, beta_neg, gamma_r) < 0:
            raise ValueError('beta_rec, beta_kl, beta_neg and gamma_r must be >= 0')
        if alpha <= 0:
            raise ValueError(f'alpha must be > 0, got {alpha}')
        if vae_warmup_iters < 0:
            raise ValueError(f'vae_warmup_iters must be >= 0, got {vae_warmup_iters}')
        self.beta_rec = float(beta_rec)
        self.beta_kl = float(beta_kl)
        self.beta_neg = float(beta_neg)
        self.gamma_r = float(gamma_r)
        self.alpha = float(alpha)
        self.vae_warmup_iters = int(vae_warmup_iters)

    @property
    def update_mode(self) -> str:
        """Always 'alternating': the decoder phase re-encodes through the updated encoder."""
        return 'alternating'

    def introspective(self, curr_iter: int) -> bool:
        """Whether ``curr_iter`` is past the plain-VAE warm-up."""
        return curr_iter >= self.vae_warmup_iters

    def schedule_log(self, curr_iter: int) -> Dict[str, Tensor]:
        return dict(introspective=torch.tensor(float(self.introspective(curr_iter))))

    def encoder_phase(self, encoder: nn.Module, generator: nn.Module, x: Tensor,
                      curr_iter: int) -> Tuple[PhaseLoss, dict]:
        """L_E: 3 encoder and 3 decoder passes (1 and 1 during the warm-up).

        Only the encoder's parameters are updated by this loss (the loop's
        backward(inputs=...)); the decoder passes carry gradients *through*
        the decoder to the encoder but leave the decoder's weights alone.
        """
        introspective = self.introspective(curr_iter)
        scale = 1.0 / x[0].numel()  # s = 1 / (C * H * W)
        b_rec, b_kl, b_neg = self.beta_rec, self.beta_kl, self.beta_neg
        log = {}
        # Real images: -s * ELBO(x). z is not detached, so the
        # reconstruction error trains the encoder through the decoder.
        mu, logvar = encoder(x)
        # The authors' order (train_soft_intro_vae.py): z_p is drawn before eps,
        # and G(z_p) decoded before G(z). The decoder's BatchNorm running
        # statistics depend on the order of its passes, and a seeded run's noise
        # on the order of the draws. (They encode x after decoding z_p; E and G
        # share no state, so that order changes nothing.)
        z_p = self.draw_prior(mu) if introspective else None
        z = reparameterize(mu, logvar)
        x_p = generator(z_p) if introspective else None
        x_r = generator(z)
        kl_real = kl_divergence(mu, logvar).mean()
        sse_real = reconstruction_error(x_r, x).mean()
        loss_encoder = scale * (b_rec * sse_real + b_kl * kl_real)
        if introspective:
            # The encoder judges x_r and x_p as data: ng() on both, so
            # nothing here pushes the decoder or, through x_r, the
            # encoder's pass over the real images. Each is re-encoded and
            # re-decoded (with z sampled, not the mean) to get its ELBO.
            x_r_ng, x_p_ng = x_r.detach(), x_p.detach()
            mu_rr, logvar_rr = encoder(x_r_ng)
            x_rr = generator(reparameterize(mu_rr, logvar_rr))
            mu_pr, logvar_pr = encoder(x_p_ng)
            x_pr = generator(reparameterize(mu_pr, logvar_pr))
            kl_rec_per_image = kl_divergence(mu_rr, logvar_rr)
            kl_fake_per_image = kl_divergence(mu_pr, logvar_pr)
            sse_rec_per_image = reconstruction_error(x_rr, x_r_ng)
            sse_fake_per_image = reconstruction_error(x_pr, x_p_ng)
            # Minimising exp(alpha * s * ELBO_neg) lowers the ELBO of
            # generated images, softly: images it already rates as fake
            # (very negative ELBO) hardly count.
            exp_elbo_rec = exp_elbo(sse_rec_per_image, kl_rec_per_image, scale, b_rec,
                                    b_neg, self.alpha)
            exp_elbo_fake = exp_elbo(sse_fake_per_image, kl_fake_per_image, scale, b_rec,
                                     b_neg, self.alpha)
            loss_encoder = loss_encoder + 0.5 / self.alpha * (exp_elbo_rec + exp_elbo_fake)
            log.update(kl_rec=kl_rec_per_image.mean(), kl_fake=kl_fake_per_image.mean(),
                       loss_rec_rec=sse_rec_per_image.mean(),
                       loss_rec_fake=sse_fake_per_image.mean(),
                       exp_elbo_rec=exp_elbo_rec, exp_elbo_fake=exp_elbo_fake)
        log.update(loss_encoder=loss_encoder, loss_ae=sse_real, kl_real=kl_real)
        # What L_D reuses: x_r = D(z) and x_p = D(z_p) with their graphs (the
        # encoder's backward keeps them). The decoder's weights are not changed
        # by the encoder step, so they are exactly the tensors the authors' code
        # decodes again.
        state = dict(introspective=introspective, scale=scale, sse_real=sse_real, x_r=x_r,
                     x_p=x_p, posterior=(mu, logvar))
        return PhaseLoss(loss_encoder, log), state

    def generator_phase(self, encoder: nn.Module, generator: nn.Module, state: dict,
                        curr_iter: int) -> PhaseLoss:
        """L_D: 2 encoder passes through the updated encoder and 2 decoder passes
        (none during the warm-up).

        Gradients are taken with respect to the decoder's parameters alone, so
        reusing x_r = D(z) acts as D(ng(z)): autograd never walks back into the
        encoder's first pass (whose weights the encoder step has just changed
        in place).
        """
        scale, b_rec, b_kl = state['scale'], self.beta_rec, self.beta_kl
        x_r, x_p = state['x_r'], state['x_p']
        log = {}
        # Real images: only the reconstruction error depends on the decoder.
        loss_generator = scale * b_rec * state['sse_real']
        if state['introspective']:
            # Re-encode x_r and x_p with the *updated* encoder, not
            # detached: the KL trains the decoder to make its images look
            # real to the encoder.
            mu_r, logvar_r = encoder(x_r)
            mu_f, logvar_f = encoder(x_p)
            kl_rec_g = kl_divergence(mu_r, logvar_r).mean()
            kl_fake_g = kl_divergence(mu_f, logvar_f).mean()
            # Re-decode from ng(z_r), ng(z_p'): the gamma_r term asks the
            # decoder to reconstruct its own images through its own
            # weights only (not through the re-encoding, and against ng()
            # targets so it does not move x_r, x_p themselves).
            x_rr_g = generator(reparameterize(mu_r, logvar_r).detach())
            x_pr_g = generator(reparameterize(mu_f, logvar_f).detach())
            sse_rec_g = reconstruction_error(x_rr_g, x_r.detach()).mean()
            sse_fake_g = reconstruction_error(x_pr_g, x_p.detach()).mean()
            loss_generator = loss_generator + scale * (
                0.5 * b_kl * (kl_rec_g + kl_fake_g) +
                self.gamma_r * 0.5 * b_rec * (sse_rec_g + sse_fake_g))
            log.update(kl_rec_g=kl_rec_g, kl_fake_g=kl_fake_g, loss_rec_rec_g=sse_rec_g,
                       loss_rec_fake_g=sse_fake_g)
        log.update(loss_generator=loss_generator)
        return PhaseLoss(loss_generator, log)


@MODELS.register_module()
class SoftIntroVAE(IntrospectiveVAE):
    """:class:`IntrospectiveVAE` with :class:`SoftIntroVAEObjective` built from
    its keyword arguments: ``model=dict(type='SoftIntroVAE', beta_neg=..., ...)``.

    Args:
        encoder, generator, architecture, data_preprocessor, ema_config,
            max_bad_iterations, channels_last, latent_prior: As for
            :class:`IntrospectiveVAE`.
        beta_rec, beta_kl, beta_neg, gamma_r, alpha, vae_warmup_iters: As for
            :class:`SoftIntroVAEObjective`; they read as the model's
            attributes (``model.beta_neg``, ...). IntroVAE's m, beta and
            alpha_generator do not exist here.
    """

    def __init__(self,
                 encoder: Union[dict, nn.Module],
                 generator: Union[dict, nn.Module],
                 architecture: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 beta_rec: float = 1.0,
                 beta_kl: float = 1.0,
                 beta_neg: float = 256.0,
                 gamma_r: float = 1e-8,
                 alpha: float = 2.0,
                 vae_warmup_iters: int = 0,
                 ema_config: Optional[dict] = None,
                 max_bad_iterations: int = 10,
                 channels_last: bool = False,
                 latent_prior: Union[str, dict] = 'standard'):
        objective = SoftIntroVAEObjective(
            beta_rec=beta_rec, beta_kl=beta_kl, beta_neg=beta_neg, gamma_r=gamma_r,
            alpha=alpha, vae_warmup_iters=vae_warmup_iters)
        super().__init__(encoder=encoder, generator=generator, objective=objective,
                         architecture=architecture, data_preprocessor=data_preprocessor,
                         ema_config=ema_config, max_bad_iterations=max_bad_iterations,
                         channels_last=channels_last,
                         latent_prior=latent_prior)


__all__ = ['SoftIntroVAEObjective', 'SoftIntroVAE', 'exp_elbo']
