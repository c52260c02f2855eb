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
"""
import copy
import logging
from typing import Dict, Optional, Union

import torch
import torch.distributed as dist
from mmengine import MessageHub
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmagic.models.base_models import BaseGAN
from mmagic.models.utils import get_valid_num_batches
from mmagic.registry import MODELS
from mmagic.structures import DataSample
from mmagic.utils.typing import SampleList
from torch import Tensor, nn

from .encoder import reparameterize
from .losses import kl_divergence, margin_hinge, reconstruction_error
from .network_contract import check_pair


@MODELS.register_module()
class IntroVAE(BaseGAN):
    """IntroVAE trained with two optimizers, keyed ``encoder`` and ``generator``.

    Args:
        encoder (dict | nn.Module): Any encoder, images (N, C, H, W) ->
            (mu, logvar) each (N, noise_size): :class:`IntroVAEEncoder`, or
            :class:`BackboneEncoder` around any MMagic backbone.
        generator (dict | nn.Module): Any generator meeting MMagic's contract
            ((N, noise_size) noise -> (N, C, H, W) images, a ``noise_size``):
            :class:`IntroVAEGenerator`, DCGAN's, StyleGAN2's, ... The image
            shape is probed once, E(G(0)), and kept as ``image_shape``.
        architecture (dict, optional): Arguments both residual networks share
            (image_size, channels, latent_dim, image_channels, norm_type),
            so a recipe states them once; keys in ``encoder`` or
            ``generator`` take precedence. None for other networks.
        data_preprocessor (dict): Maps uint8 images to the training range;
            the recipes use mean 0 and std 255, i.e. [0, 1] as in the official
            code (the margin m and beta assume that range).
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
        ema_config (dict, optional): EMA of the generator.
        max_bad_iterations (int): The divergence guard: an update whose loss
            or gradients are not finite is skipped (weights, optimizer state
            and BatchNorm statistics untouched) and logged; this many such
            iterations in a row stop the run with an error.
        update_mode (str): ``'alternating'`` (default, the paper's algorithm):
            the encoder is updated first and L_G is evaluated with the updated
            encoder (5 encoder and 2 generator forward passes per iteration).
            ``'simultaneous'``: L_G is evaluated with the encoder as it was
            before its update, so the encoder passes over x_r and x_p serve
            both losses (3 encoder and 2 generator passes) and one backward
            pass through them gives both networks' gradients. Each network
            still gets exactly the gradient of its own loss; the difference to
            the paper is only which encoder L_G sees.
        channels_last (bool): Keep the networks' convolution weights and the
            training images in the channels-last (NHWC) memory layout. Same
            results and checkpoints; faster with oneDNN on CPU (see the README's
            Performance section). On by default in the CPU recipes.
    """

    UPDATE_MODES = ('alternating', 'simultaneous')
    VAE_WARMUP_LOSSES = ('official', 'paper')
    GENERATOR_ONLY_ARCHITECTURE = ('output_activation', 'upsample_mode')
    #: What the divergence guard's error suggests changing before resuming.
    divergence_advice = ('lowering the margin model.m or model.beta, or lengthening the '
                         'plain-VAE warm-up model.vae_warmup_iters')

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
                 channels_last: bool = False):
        if update_mode not in self.UPDATE_MODES:
            raise ValueError(f'update_mode must be one of {self.UPDATE_MODES}, '
                             f'got {update_mode!r}')
        if vae_warmup_loss not in self.VAE_WARMUP_LOSSES:
            raise ValueError(f'vae_warmup_loss must be one of {self.VAE_WARMUP_LOSSES}, '
                             f'got {vae_warmup_loss!r}')
        shared = dict(architecture or {})
        if isinstance(generator, dict):
            generator = MODELS.build(generator, default_args=shared)
        super().__init__(generator=generator, data_preprocessor=data_preprocessor,
                         ema_config=ema_config)
        if isinstance(encoder, dict):
            # The generator's own options are not the encoder's.
            encoder_shared = {k: v for k, v in shared.items()
                              if k not in self.GENERATOR_ONLY_ARCHITECTURE}
            encoder = MODELS.build(encoder, default_args=encoder_shared)
        self.encoder = encoder
        # MMagic's generator contract plus a dry run E(G(0)): (C, H, W) of the images.
        self.image_shape = check_pair(self.encoder, self.generator)
        if m < 0 or alpha < 0 or beta < 0 or alpha_generator < 0 or vae_warmup_iters < 0:
            raise ValueError('m, alpha, beta, alpha_generator and vae_warmup_iters must be >= 0')
        self.m = float(m)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.alpha_generator = float(alpha_generator)
        self.vae_warmup_iters = int(vae_warmup_iters)
        self.vae_warmup_loss = vae_warmup_loss
        self.max_bad_iterations = int(max_bad_iterations)
        self.update_mode = update_mode
        self.channels_last = bool(channels_last)
        if self.channels_last:  # every 4-D weight: encoder, generator and its EMA
            self.to(memory_format=torch.channels_last)
        self._bad_iterations = 0

    # ------------------------------------------------------------------ training
    def introspective_weights(self, curr_iter: int):
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

    def training_images(self, data: dict) -> Tensor:
        """The batch's real images (N, C, H, W), normalised for training.

        They arrive as data_samples.gt_img (MMagic's unconditional convention);
        with ``channels_last`` they take the weights' layout, so oneDNN/cuDNN
        need no reorder before the first convolution.
        """
        x = self.data_preprocessor(data, True)['data_samples'].gt_img
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_step(self, data: dict, optim_wrapper: OptimWrapperDict) -> Dict[str, Tensor]:
        """One IntroVAE iteration: the encoder update, then the generator update.

        Both updates use the same batch, the same reconstructions and the same
        prior samples; the generator update sees the encoder as the encoder
        update left it (official order). Per iteration: 5 encoder and 2
        generator forward passes (1 and 1 during the VAE warm-up).

        During the VAE warm-up the same code runs without the hinge and the
        KL terms of L_G: the encoder minimises L_REG(E(x)) + w * L_AE and the
        generator w * L_AE (w from :meth:`ae_weight`). That is the official
        ``train_vae``, which back-propagates L_REG(E(x)) + L_AE once and steps
        both optimizers: L_REG does not depend on the generator, so each
        network gets the same gradient. Two backwards (one per optimizer)
        keep each optimizer wrapper's AMP loss scale and gradient
        accumulation its own.

        With ``update_mode='simultaneous'`` L_G sees the encoder before its
        update, so the encoder passes over x_r and x_p serve both losses:
        3 encoder and 2 generator forward passes.
        """
        curr_iter = MessageHub.get_current_instance().get_info('iter', 0)
        alpha, alpha_generator = self.introspective_weights(curr_iter)
        beta = self.ae_weight(curr_iter)  # L_AE's weight: 1 in the official warm-up
        introspective = alpha > 0 or alpha_generator > 0
        simultaneous = self.update_mode == 'simultaneous'
        x = self.training_images(data)
        encoder_opt: OptimWrapper = optim_wrapper['encoder']
        generator_opt: OptimWrapper = optim_wrapper['generator']
        log = {}
        # Restored if this iteration turns out non-finite (a NaN batch would
        # otherwise poison the running statistics for good).
        bn_stats = self._norm_buffers()

        # ---------------------------------------------------------- encoder step
        with encoder_opt.optim_context(self.encoder):
            mu, logvar = self.encoder(x)
            # The official order: z_p is drawn before eps, and G(z_p) decoded before
            # G(z). The generator's BatchNorm running statistics depend on the order
            # of its passes, and a seeded run's noise on the order of the draws.
            # (The official code runs E(x) after G(z_p); E and G share no state,
            # so that order changes nothing.)
            z_p = torch.randn_like(mu) if introspective else None
            z = reparameterize(mu, logvar)
            x_p = self.generator(z_p) if introspective else None
            # Not detached: L_AE must train the encoder through the generator.
            x_r = self.generator(z)
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
                l_reg_rec = kl_divergence(*self.encoder(x_r_ng)).mean()
                l_reg_fake = kl_divergence(*self.encoder(x_p_ng)).mean()
                loss_encoder = loss_encoder + alpha * (
                    margin_hinge(l_reg_rec, self.m) + margin_hinge(l_reg_fake, self.m))
                log.update(kl_rec=l_reg_rec, kl_fake=l_reg_fake)

        if simultaneous and introspective:
            # ------------------------------------ simultaneous encoder and generator steps
            # L_G with the encoder *before* its update: E(x_r_ng), E(x_p_ng) above
            # are the passes L_G re-encodes with, so there is no generator-step
            # encoder pass. One backward through each of them (which frees its
            # graph) gives what both networks need from it: dL_REG/dtheta_E for the
            # encoder's hinge and dL_REG/dx_s for L_G. Both networks still get
            # exactly the gradient of their own loss.
            # dL_E/dL_REG(E(ng(x_s))): alpha times the hinge's slope (-1 while
            # L_REG < m, else 0); this walks only the few nodes of the hinge.
            slope_rec, slope_fake = torch.autograd.grad(loss_encoder, [l_reg_rec, l_reg_fake])
            enc_params = [p for p in self.encoder.parameters() if p.requires_grad]
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
            log.update(kl_rec_g=l_reg_rec, kl_fake_g=l_reg_fake, loss_encoder=loss_encoder,
                       loss_generator=loss_generator, loss_ae=l_ae, kl_real=l_reg_real)
            # retain_graph: the generator's backward goes through G(z) again. The
            # encoder's step changes no tensor the generator's backward reads.
            # value=: the divergence guard checks the losses themselves.
            encoder_ok = self._update(encoder_opt, encoder_objective, self.encoder,
                                      retain_graph=True, value=loss_encoder)
            generator_ok = self._update(generator_opt, generator_objective, self.generator,
                                        retain_graph=False, value=loss_generator)
            return self._end_iteration(curr_iter, alpha, log, bn_stats, encoder_ok, generator_ok)

        # retain_graph: the generator step below back-propagates through the
        # same G(z) and G(z_p) graphs instead of decoding again. inputs=: only
        # the encoder's gradients are wanted here (the generator's come from L_G).
        encoder_ok = self._update(encoder_opt, loss_encoder, self.encoder, retain_graph=True)
        # Nothing below back-propagates through E(ng(x_r)), E(ng(x_p)) or L_E:
        # drop the references that keep their retained graphs (activations)
        # alive, so the generator step's encoder passes do not come on top.
        loss_encoder, log = loss_encoder.detach(), {k: v.detach() for k, v in log.items()}
        l_reg_rec = l_reg_fake = None

        # -------------------------------------------------------- generator step
        with generator_opt.optim_context(self.generator):
            # The whole generator loss during the warm-up: with the encoder's
            # backward above, the gradients of one backward of L_REG + beta * L_AE.
            loss_generator = beta * l_ae
            if introspective:
                # Re-encode with the *updated* encoder; x_r and x_p are not
                # detached, so both reach the generator. The encoder's weights
                # get no gradient here (inputs= below), and autograd never
                # walks back into the first encoder pass, whose weights the
                # encoder step has just changed in place.
                # Distributed: through the encoder *inside* its DDP wrapper. This backward
                # computes no encoder gradient, and a DDP forward would leave the encoder's
                # reducer armed for one: the next no_sync() (gradient accumulation) would
                # then all-reduce anyway (checked with torch 2.14 DDP + gloo).
                encoder = self.encoder.module if is_model_wrapper(self.encoder) else self.encoder
                l_reg_rec_g = kl_divergence(*encoder(x_r)).mean()
                l_reg_fake_g = kl_divergence(*encoder(x_p)).mean()
                loss_generator = loss_generator + alpha_generator * (l_reg_rec_g + l_reg_fake_g)
                log.update(kl_rec_g=l_reg_rec_g, kl_fake_g=l_reg_fake_g)
        generator_ok = self._update(generator_opt, loss_generator, self.generator,
                                    retain_graph=False)

        log.update(loss_encoder=loss_encoder, loss_generator=loss_generator,
                   loss_ae=l_ae, kl_real=l_reg_real)
        return self._end_iteration(curr_iter, alpha, log, bn_stats, encoder_ok, generator_ok)

    def _end_iteration(self, curr_iter: int, alpha: float, log: Dict[str, Tensor],
                       bn_stats: Dict[str, Tensor], encoder_ok: bool,
                       generator_ok: bool) -> Dict[str, Tensor]:
        """The end of both update modes: EMA, or the divergence guard; the log."""
        log = {k: v.detach() for k, v in log.items()}
        if encoder_ok and generator_ok:
            self._bad_iterations = 0
            self._update_ema(curr_iter)
        else:
            self._on_bad_iteration(curr_iter, log, bn_stats, encoder_ok, generator_ok)
        log['alpha'] = torch.tensor(alpha)
        return log

    @staticmethod
    def _update(opt: OptimWrapper, loss: Tensor, module: nn.Module, retain_graph: bool,
                value: Optional[Tensor] = None) -> bool:
        """OptimWrapper.update_params, restricted to ``module``'s parameters.

        ``value`` is the loss whose value the guard checks when ``loss`` is a
        surrogate with the same gradient (the simultaneous mode); default ``loss``.

        Gradient accumulation (``accumulative_counts``) and AMP loss scaling
        work as in ``update_params``. Returns False, without touching the
        weights or the optimizer state, when the loss or a gradient is not
        finite (under AMP the loss scaler already skips inf/NaN gradients).
        """
        params = [p for p in module.parameters() if p.requires_grad]
        finite = torch.isfinite(loss) & (True if value is None else torch.isfinite(value))
        if is_model_wrapper(module) and dist.is_initialized():
            # Every rank takes the same branch: a backward on some ranks only would
            # leave DDP's gradient all-reduce waiting for the others for ever.
            finite = finite.to(torch.int32)
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if not finite:
            opt.zero_grad()
            return False
        opt.backward(opt.scale_loss(loss), retain_graph=retain_graph, inputs=params)
        if not hasattr(opt, 'loss_scaler'):
            grads = [p.grad for p in params if p.grad is not None]
            if grads and not torch.stack([g.isfinite().all() for g in grads]).all():
                opt.zero_grad()
                return False
        if opt.should_update():
            opt.step()
            opt.zero_grad()
        return True

    def _norm_buffers(self) -> Dict[str, Tensor]:
        return {name: buf.clone() for name, buf in self.named_buffers()
                if not name.startswith('generator_ema')}

    def _on_bad_iteration(self, curr_iter: int, log: Dict[str, Tensor], bn_stats: Dict[str, Tensor],
                          encoder_ok: bool, generator_ok: bool) -> None:
        """The divergence guard: restore BatchNorm statistics, log, stop after too many."""
        buffers = dict(self.named_buffers())
        with torch.no_grad():
            for name, saved in bn_stats.items():
                buffers[name].copy_(saved)
        self._bad_iterations += 1
        bad_terms = ', '.join(f'{k}={v.item():.4g}' for k, v in log.items()
                              if not torch.isfinite(v)) or 'a gradient'
        skipped = ' and '.join(step for step, ok in (('encoder', encoder_ok),
                                                     ('generator', generator_ok)) if not ok)
        print_log(f'Iteration {curr_iter + 1}: non-finite {bad_terms}; the {skipped} update was '
                  f'skipped ({self._bad_iterations} such iterations in a row, '
                  f'limit {self.max_bad_iterations}).', 'current', logging.WARNING)
        if self._bad_iterations >= self.max_bad_iterations:
            raise FloatingPointError(
                f'IntroVAE diverged: {self._bad_iterations} iterations in a row (up to iteration '
                f'{curr_iter + 1}) had non-finite losses or gradients ({bad_terms}). Those '
                'iterations did not change the weights; the newest checkpoint in the work dir '
                '(its path is in WORK_DIR/last_checkpoint) holds the last good state. Resume from '
                f'it (tools/train.py CONFIG --resume) after {self.divergence_advice}.')

    def _update_ema(self, curr_iter: int) -> None:
        if not self.with_ema_gen:
            return
        generator = self.generator.module if is_model_wrapper(self.generator) else self.generator
        if curr_iter + 1 >= self.ema_start:
            self.generator_ema.update_parameters(generator)
            if not self.generator_ema.update_buffers:
                self.generator_ema.sync_buffers(generator)
        else:
            self.generator_ema.sync_parameters(generator)

    # ------------------------------------------------------------- inference
    def _generator_for(self, sample_model: str) -> nn.Module:
        return self.generator_ema if sample_model == 'ema' else self.generator

    @torch.no_grad()
    def reconstruct(self, img: Tensor, sample_model: str = 'orig') -> Tensor:
        """G(mu(x)): deterministic reconstructions in the model's data range.

        Args:
            img: (N, C, H, W) preprocessed images.
        """
        mu, _ = self.encoder(img)
        return self._generator_for(sample_model)(mu)

    @torch.no_grad()
    def encode(self, img: Tensor):
        """(mu, logvar), each (N, latent_dim), of preprocessed images."""
        return self.encoder(img)

    def forward(self, inputs, data_samples: Optional[list] = None, mode=None) -> SampleList:
        """Samples from the prior, and reconstructions when real images come in.

        Args:
            inputs (dict | Tensor): A (N, latent_dim) noise tensor, or a dict
                with any of ``noise``, ``num_batches``, ``sample_model`` and
                ``img`` (real images (N, C, H, W) in the training range).

        Every returned DataSample carries ``fake_img`` (a prior sample) and,
        when real images come in, ``pred_img`` and ``output.pred_img`` (their
        reconstructions G(mu(x))) plus the per-image ``kl_real``, ``kl_rec``
        and ``kl_fake``. Images are de-normalised to [0, 255], BGR, like
        ``gt_img``. With ``sample_model='ema/orig'`` results sit under ``ema``
        and ``orig``.
        """
        if isinstance(inputs, Tensor):
            inputs = dict(noise=inputs)
        num_batches = get_valid_num_batches(inputs, data_samples)
        noise = self.noise_fn(inputs.get('noise', None), num_batches=num_batches)
        sample_model = self._get_valid_model(inputs)
        real = inputs.get('img', None)
        models = ['ema', 'orig'] if sample_model == 'ema/orig' else [sample_model]
        results = {name: self._infer(name, noise, real) for name in models}

        out = DataSample()
        if data_samples:
            out.update(data_samples)
        if sample_model == 'ema/orig':
            out.ema = DataSample(**results['ema'])
            out.orig = DataSample(**results['orig'])
        else:
            for k, v in results[sample_model].items():
                out.set_field(v, k)
            if 'pred_img' in results[sample_model]:
                out.output = DataSample(pred_img=results[sample_model]['pred_img'])
        out.noise = noise
        out.sample_model = sample_model
        return out.split(allow_nonseq_value=True)

    def to_bgr255(self, img: Tensor) -> Tensor:
        """Model-range images (N, C, H, W) -> [0, 255] float in BGR, as ``gt_img``.

        The preprocessor's own ``destruct`` infers the channel order from the
        batch's metadata, which an unconditional batch does not carry: it would
        hand RGB-trained samples to metrics and visualisers unconverted.
        """
        pre = self.data_preprocessor
        img = img * pre.std.view(1, -1, 1, 1) + pre.mean.view(1, -1, 1, 1)
        if img.shape[1] == 3 and pre.output_channel_order == 'RGB':
            img = img.flip(1)
        return img.clamp(0, 255)

    def _infer(self, sample_model: str, noise: Tensor, real: Optional[Tensor]):
        generator = self._generator_for(sample_model)
        fake = generator(noise)
        result = dict(fake_img=self.to_bgr255(fake))
        if real is not None:
            mu, logvar = self.encoder(real)
            rec = generator(mu)
            result['pred_img'] = self.to_bgr255(rec)
            result['kl_real'] = kl_divergence(mu, logvar)
            result['kl_rec'] = kl_divergence(*self.encoder(rec))
            result['kl_fake'] = kl_divergence(*self.encoder(fake))
        return result

    @torch.no_grad()
    def val_step(self, data: dict) -> SampleList:
        """Samples, plus reconstructions of the batch's real images if it has any."""
        real = None
        samples = data.get('data_samples') or []
        if samples and all('gt_img' in sample for sample in samples):
            # The preprocessor leaves gt_img as BGR [0, 255] outside training;
            # its training mode gives the model's own input range.
            real = self.data_preprocessor(copy.deepcopy(data), True)['data_samples'].gt_img
        data = self.data_preprocessor(data)
        inputs = data['inputs']
        if isinstance(inputs, Tensor):
            inputs = dict(noise=inputs)
        inputs = dict(inputs or {})
        if real is not None:
            inputs['img'] = real
        return self(inputs, data['data_samples'])

    test_step = val_step


__all__ = ['IntroVAE']
