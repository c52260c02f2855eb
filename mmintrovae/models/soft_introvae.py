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
when the introspective phase starts). The networks are IntroVAE's: the
authors' Soft-IntroVAE residual blocks put BatchNorm before the addition,
IntroVAE's after it.
"""
from typing import Dict, Optional, Union

import torch
from mmengine import MessageHub
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmagic.registry import MODELS
from torch import Tensor, nn

from .encoder import reparameterize
from .introvae import IntroVAE
from .losses import kl_divergence, reconstruction_error


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


@MODELS.register_module()
class SoftIntroVAE(IntroVAE):
    """IntroVAE's networks trained with the Soft-IntroVAE objective.

    Selected in a config by ``model = dict(type='SoftIntroVAE', ...)``; the
    encoder, generator, data preprocessor, optimizers (keyed ``encoder`` and
    ``generator``), EMA, divergence guard, inference and metrics are
    IntroVAE's. See the module docstring for the objective.

    Args:
        encoder, generator, architecture, data_preprocessor, ema_config,
            max_bad_iterations, channels_last: As for :class:`IntroVAE`.
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

    #: Used in the divergence guard's error message.
    divergence_advice = ('lowering model.beta_neg (the authors halve it when the KL of real '
                         'images stays above that of samples) or model.beta_rec, or adding a '
                         'plain-VAE warm-up model.vae_warmup_iters')

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
                 channels_last: bool = False):
        super().__init__(encoder=encoder, generator=generator, architecture=architecture,
                         data_preprocessor=data_preprocessor, vae_warmup_iters=vae_warmup_iters,
                         ema_config=ema_config, max_bad_iterations=max_bad_iterations,
                         channels_last=channels_last)
        # IntroVAE's margin-game weights mean nothing here: drop them so no
        # code reads a stale value.
        del self.m, self.beta, self.alpha_generator, self.vae_warmup_loss
        if min(beta_rec, beta_kl, beta_neg, gamma_r) < 0:
            raise ValueError('beta_rec, beta_kl, beta_neg and gamma_r must be >= 0')
        if alpha <= 0:
            raise ValueError(f'alpha must be > 0, got {alpha}')
        self.beta_rec = float(beta_rec)
        self.beta_kl = float(beta_kl)
        self.beta_neg = float(beta_neg)
        self.gamma_r = float(gamma_r)
        self.alpha = float(alpha)

    def introspective_weights(self, curr_iter: int):
        raise NotImplementedError('SoftIntroVAE has no hinge weights; see train_step')

    def ae_weight(self, curr_iter: int):
        raise NotImplementedError('SoftIntroVAE weighs L_AE by beta_rec; see train_step')

    def train_step(self, data: dict, optim_wrapper: OptimWrapperDict) -> Dict[str, Tensor]:
        """One Soft-IntroVAE iteration: the encoder update, then the decoder update.

        Per iteration: 5 encoder and 6 generator forward passes (1 and 1
        during the VAE warm-up).
        """
        curr_iter = MessageHub.get_current_instance().get_info('iter', 0)
        introspective = curr_iter >= self.vae_warmup_iters
        x = self.training_images(data)
        scale = 1.0 / x[0].numel()  # s = 1 / (C * H * W)
        b_rec, b_kl, b_neg = self.beta_rec, self.beta_kl, self.beta_neg
        encoder_opt: OptimWrapper = optim_wrapper['encoder']
        generator_opt: OptimWrapper = optim_wrapper['generator']
        log = {}
        bn_stats = self._norm_buffers()  # restored if the iteration is not finite

        # ---------------------------------------------------------- encoder step
        # Only the encoder's parameters are updated (backward(inputs=...) in
        # _update); the decoder passes below carry gradients *through* the
        # decoder to the encoder but leave the decoder's weights alone.
        with encoder_opt.optim_context(self.encoder):
            # Real images: -s * ELBO(x). z is not detached, so the
            # reconstruction error trains the encoder through the decoder.
            mu, logvar = self.encoder(x)
            z = reparameterize(mu, logvar)
            x_r = self.generator(z)
            kl_real = kl_divergence(mu, logvar).mean()
            sse_real = reconstruction_error(x_r, x).mean()
            loss_encoder = scale * (b_rec * sse_real + b_kl * kl_real)
            if introspective:
                z_p = torch.randn_like(z)
                x_p = self.generator(z_p)
                # The encoder judges x_r and x_p as data: ng() on both, so
                # nothing here pushes the decoder or, through x_r, the
                # encoder's pass over the real images. Each is re-encoded and
                # re-decoded (with z sampled, not the mean) to get its ELBO.
                x_r_ng, x_p_ng = x_r.detach(), x_p.detach()
                mu_rr, logvar_rr = self.encoder(x_r_ng)
                x_rr = self.generator(reparameterize(mu_rr, logvar_rr))
                mu_pr, logvar_pr = self.encoder(x_p_ng)
                x_pr = self.generator(reparameterize(mu_pr, logvar_pr))
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
        # retain_graph: the decoder step reuses the x_r = D(z) and x_p = D(z_p)
        # graphs. The decoder's weights are not changed by this update, so
        # they are exactly the tensors the authors' code decodes again.
        encoder_ok = self._update(encoder_opt, loss_encoder, self.encoder, retain_graph=True)

        # -------------------------------------------------------- decoder step
        # Only the decoder's parameters are updated. Gradients are taken with
        # respect to them alone, so reusing x_r = D(z) acts as D(ng(z)):
        # autograd never walks back into the encoder's first pass (whose
        # weights the encoder step has just changed in place).
        with generator_opt.optim_context(self.generator):
            # Real images: only the reconstruction error depends on the decoder.
            loss_generator = scale * b_rec * sse_real
            if introspective:
                # Re-encode x_r and x_p with the *updated* encoder, not
                # detached: the KL trains the decoder to make its images look
                # real to the encoder.
                # Through the encoder inside its DDP wrapper (as IntroVAE does):
                # this backward computes no encoder gradient, which a wrapped
                # forward would leave DDP's reducer waiting for.
                encoder = self.encoder.module if is_model_wrapper(self.encoder) else self.encoder
                mu_r, logvar_r = encoder(x_r)
                mu_f, logvar_f = encoder(x_p)
                kl_rec_g = kl_divergence(mu_r, logvar_r).mean()
                kl_fake_g = kl_divergence(mu_f, logvar_f).mean()
                # Re-decode from ng(z_r), ng(z_p'): the gamma_r term asks the
                # decoder to reconstruct its own images through its own
                # weights only (not through the re-encoding, and against ng()
                # targets so it does not move x_r, x_p themselves).
                x_rr_g = self.generator(reparameterize(mu_r, logvar_r).detach())
                x_pr_g = self.generator(reparameterize(mu_f, logvar_f).detach())
                sse_rec_g = reconstruction_error(x_rr_g, x_r.detach()).mean()
                sse_fake_g = reconstruction_error(x_pr_g, x_p.detach()).mean()
                loss_generator = loss_generator + scale * (
                    0.5 * b_kl * (kl_rec_g + kl_fake_g) +
                    self.gamma_r * 0.5 * b_rec * (sse_rec_g + sse_fake_g))
                log.update(kl_rec_g=kl_rec_g, kl_fake_g=kl_fake_g, loss_rec_rec_g=sse_rec_g,
                           loss_rec_fake_g=sse_fake_g)
        generator_ok = self._update(generator_opt, loss_generator, self.generator,
                                    retain_graph=False)

        log.update(loss_encoder=loss_encoder, loss_generator=loss_generator,
                   loss_ae=sse_real, kl_real=kl_real)
        log = {k: v.detach() for k, v in log.items()}
        if encoder_ok and generator_ok:
            self._bad_iterations = 0
            self._update_ema(curr_iter)
        else:
            self._on_bad_iteration(curr_iter, log, bn_stats, encoder_ok, generator_ok)
        log['introspective'] = torch.tensor(float(introspective))
        return log


__all__ = ['SoftIntroVAE', 'exp_elbo']
