"""The introspective VAE model: networks and objective plugged into one training loop.

:class:`IntrospectiveVAE` owns everything an introspective VAE needs besides
its objective: data preprocessing, the two optimizers (keyed ``encoder`` and
``generator``) and the loop that steps them, the divergence guard, EMA of the
generator, the channels-last layout, the networks (built from any config and
checked against MMagic's generator contract) and inference (sampling,
reconstruction, the per-image KLs the metrics read). The losses come from an
objective (:mod:`.objective`): IntroVAE's hinge, Soft-IntroVAE's exponential
ELBO, a plain VAE, or any registered one::

    model = dict(type='IntrospectiveVAE',
                 encoder=dict(type='IntroVAEEncoder'), generator=dict(type='IntroVAEGenerator'),
                 architecture=dict(image_size=32, channels=(64, 128, 256), latent_dim=128,
                                   image_channels=1),
                 objective=dict(type='SoftIntroVAEObjective', beta_kl=1.0, beta_neg=256.0))

``IntroVAE``, ``SoftIntroVAE`` and ``VAE`` are this model with their
objective built from their own keyword arguments (the recipes' form).
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

from .latent_prior import build_latent_prior
from .losses import kl_divergence
from .network_contract import check_pair, latent_size_of
from .objective import IntrospectiveObjective, build_objective


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if is_model_wrapper(module) else module


@MODELS.register_module()
class IntrospectiveVAE(BaseGAN):
    """An encoder and a generator trained with an introspective objective.

    Args:
        encoder (dict | nn.Module): Any encoder, images (N, C, H, W) ->
            (mu, logvar) each (N, noise_size): :class:`IntroVAEEncoder`, or
            :class:`BackboneEncoder` around any MMagic backbone.
        generator (dict | nn.Module): Any generator meeting MMagic's contract
            ((N, noise_size) noise -> (N, C, H, W) images, a ``noise_size``):
            :class:`IntroVAEGenerator`, DCGAN's, StyleGAN2's, ... The image
            shape is probed once, E(G(0)), and kept as ``image_shape``.
        objective (dict | IntrospectiveObjective): The losses, e.g.
            ``dict(type='IntroVAEObjective', m=120.0)``; the types are in
            :data:`~mmintrovae.models.objective.OBJECTIVES`. Its
            hyper-parameters read as the model's own attributes
            (``model.m``, ``model.beta_neg``, ...).
        architecture (dict, optional): Arguments both residual networks share
            (image_size, channels, latent_dim, image_channels, norm_type),
            so a recipe states them once; keys in ``encoder`` or
            ``generator`` take precedence. None for other networks.
        data_preprocessor (dict): Maps uint8 images to the training range;
            the recipes use mean 0 and std 255, i.e. [0, 1] as in the official
            code (IntroVAE's margin m and beta assume that range).
        ema_config (dict, optional): EMA of the generator.
        max_bad_iterations (int): The divergence guard: an update whose loss
            or gradients are not finite is skipped (weights, optimizer state
            and BatchNorm statistics untouched) and logged; this many such
            iterations in a row stop the run with an error.
        channels_last (bool): Keep the networks' convolution weights and the
            training images in the channels-last (NHWC) memory layout. Same
            results and checkpoints; faster with oneDNN on CPU (see the README's
            Performance section). On by default in the CPU recipes.
        latent_prior (str | dict): What samples are drawn from after (and
            during) training: ``'standard'``, N(0, I) as in the papers; or
            ``'aggregate'`` (``dict(type='aggregate', momentum=0.01)``), a
            Gaussian with the moments of the training images' posteriors,
            tracked while training (:mod:`.latent_prior`). Training's own
            samples x_p use N(0, I) unless ``train_samples=True`` is given
            with it. MMagic's metrics can choose per metric
            with ``sample_kwargs=dict(prior='standard')``.
    """

    GENERATOR_ONLY_ARCHITECTURE = ('output_activation', 'upsample_mode')

    def __init__(self,
                 encoder: Union[dict, nn.Module],
                 generator: Union[dict, nn.Module],
                 objective: Union[dict, IntrospectiveObjective, None] = None,
                 architecture: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 ema_config: Optional[dict] = None,
                 max_bad_iterations: int = 10,
                 channels_last: bool = False,
                 latent_prior: Union[str, dict] = 'standard'):
        if objective is None:
            raise ValueError('model.objective is required, e.g. '
                             "objective=dict(type='IntroVAEObjective'); or use model type "
                             "'IntroVAE', 'SoftIntroVAE' or 'VAE'")
        # First: a bad hyper-parameter fails before any network is built.
        objective = build_objective(objective)
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
        # A plain attribute, not a submodule: objectives hold no parameters or
        # buffers, so the state dict (and every checkpoint) is the networks' only.
        self.objective = objective
        self.max_bad_iterations = int(max_bad_iterations)
        self.channels_last = bool(channels_last)
        # Where samples come from (training's own x_p = G(z_p) use N(0, I) unless
        # the aggregate prior says train_samples=True):
        # 'aggregate' adds the running moments of the posteriors as buffers, so
        # they are saved with the weights.
        self.latent_prior, aggregate = build_latent_prior(latent_prior, latent_size_of(self))
        if aggregate is not None:
            self.aggregate_posterior = aggregate
            if aggregate.train_samples:
                if not self.objective.draws_prior_samples:
                    raise ValueError(
                        'model.latent_prior.train_samples=True: '
                        f'{type(self.objective).__name__} trains on no prior samples '
                        '(only the introspective objectives do); drop the option')
                # x_p = G(z_p) in training from the fitted Gaussian too: the
                # objective's draw_prior maps its eps through it.
                self.objective.prior_transform = self.aggregate_posterior
        if self.channels_last:  # every 4-D weight: encoder, generator and its EMA
            self.to(memory_format=torch.channels_last)
        self._bad_iterations = 0

    # ------------------------------------------------- the objective's settings
    def __getattr__(self, name: str):
        # nn.Module's lookup (parameters, buffers, submodules) first; then the
        # objective's hyper-parameters, which configs, hooks and tools read as
        # model.m, model.beta_neg, ... A name the objective does not list stays
        # missing (e.g. Soft-IntroVAE has no margin m: hasattr(model, 'm') is False).
        try:
            return super().__getattr__(name)
        except AttributeError:
            objective = self.__dict__.get('objective')
            if objective is not None and name in objective.hyper_parameters:
                return getattr(objective, name)
            raise

    def __setattr__(self, name: str, value) -> None:
        # model.m = ... changes the objective's m: one copy of each setting.
        objective = self.__dict__.get('objective')
        if objective is not None and name in objective.hyper_parameters:
            setattr(objective, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def divergence_advice(self) -> str:
        """What the divergence guard's error suggests changing (the objective's)."""
        return self.objective.divergence_advice

    # ------------------------------------------------------------------ training
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
        """One iteration: the encoder phase and its update, then the generator's.

        Both phases use the same batch; the generator phase runs after the
        encoder's update, so it sees the encoder as that update left it (the
        papers' order). The objective computes each phase's loss; this loop
        runs the backward passes and the optimizer steps.
        """
        curr_iter = MessageHub.get_current_instance().get_info('iter', 0)
        x = self.training_images(data)
        encoder_opt: OptimWrapper = optim_wrapper['encoder']
        generator_opt: OptimWrapper = optim_wrapper['generator']
        # Restored if this iteration turns out non-finite (a NaN batch would
        # otherwise poison the running statistics for good).
        bn_stats = self._norm_buffers()

        # ---------------------------------------------------------- encoder step
        # optim_context: AMP autocast for the forward passes, and DDP's no_sync
        # while gradients accumulate.
        with encoder_opt.optim_context(self.encoder):
            enc, state = self.objective.encoder_phase(self.encoder, self.generator, x, curr_iter)
        posterior = self._real_posterior(state)
        # retain_graph: the generator phase back-propagates through the decoder
        # graphs of this phase (x_r = G(z), x_p = G(z_p)) instead of decoding
        # again. inputs= (in _update): only the encoder's gradients are taken
        # here, though L_E's reconstruction term flows through the generator.
        encoder_ok = self._update(encoder_opt, enc.loss, self.encoder, retain_graph=True,
                                  value=enc.value)
        # Nothing below back-propagates through L_E's own passes (e.g. IntroVAE's
        # E(ng(x_r)), E(ng(x_p))): drop the references that keep their retained
        # graphs (activations) alive, so the generator phase's passes do not
        # come on top of them.
        enc = enc.detach()

        # -------------------------------------------------------- generator step
        # The bare encoder, outside its DDP wrapper: L_G computes no encoder
        # gradient, and a wrapped forward would leave the encoder's reducer armed
        # for one: the next no_sync() (gradient accumulation) would then
        # all-reduce anyway (checked with torch 2.14 DDP + gloo).
        with generator_opt.optim_context(self.generator):
            gen = self.objective.generator_phase(_unwrap(self.encoder), self.generator, state,
                                                 curr_iter)
        del state  # the retained decoder graphs die with the generator's backward
        generator_ok = self._update(generator_opt, gen.loss, self.generator,
                                    retain_graph=False, value=gen.value)

        log = {**enc.log, **gen.log}
        return self._end_iteration(curr_iter, log, bn_stats, encoder_ok, generator_ok,
                                   posterior)

    def _real_posterior(self, state: dict) -> Optional[tuple]:
        """(mu, logvar) of the real batch, detached, from the encoder phase's state;
        None when no aggregate prior is tracked."""
        posterior = state.pop('posterior', None) if isinstance(state, dict) else None
        if not hasattr(self, 'aggregate_posterior'):
            return None
        if posterior is None:
            raise ValueError(
                f"model.latent_prior='aggregate' needs the real images' posterior, but "
                f'{type(self.objective).__name__}.encoder_phase does not return it: add '
                "state['posterior'] = (mu, logvar) of E(x) to its state")
        return tuple(t.detach() for t in posterior)

    def _end_iteration(self, curr_iter: int, log: Dict[str, Tensor],
                       bn_stats: Dict[str, Tensor], encoder_ok: bool,
                       generator_ok: bool, posterior: Optional[tuple] = None
                       ) -> Dict[str, Tensor]:
        """EMA and the aggregate posterior's moments, or the divergence guard; the log."""
        log = {k: v.detach() for k, v in log.items()}
        if encoder_ok and generator_ok:
            self._bad_iterations = 0
            self._update_ema(curr_iter)
            if posterior is not None:
                self.aggregate_posterior.update(*posterior)
        else:
            self._on_bad_iteration(curr_iter, log, bn_stats, encoder_ok, generator_ok)
        log.update(self.objective.schedule_log(curr_iter))
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
                f'{type(self).__name__} diverged: {self._bad_iterations} iterations in a row (up '
                f'to iteration {curr_iter + 1}) had non-finite losses or gradients ({bad_terms}). '
                'Those iterations did not change the weights; the newest checkpoint in the work dir '
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
                with any of ``noise``, ``num_batches``, ``sample_model``,
                ``sample_kwargs`` and ``img`` (real images (N, C, H, W) in the
                training range). ``noise`` (drawn when not given) is
                eps ~ N(0, I), which :meth:`prior_latents` maps to the latents
                decoded. ``sample_kwargs`` is where MMagic's metrics put their
                own ``sample_kwargs``: ``truncation`` (default 1; lower trades
                diversity for fidelity, as in MMagic's StyleGAN2) and
                ``prior`` (default ``model.latent_prior``).

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
        truncation, prior = self._sample_options(inputs.get('sample_kwargs'))
        eps = self.noise_fn(inputs.get('noise', None), num_batches=num_batches)
        noise = self.prior_latents(eps, truncation, prior)
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

    def prior_latents(self, eps: Tensor, truncation: float = 1.0,
                      prior: Optional[str] = None) -> Tensor:
        """Standard normal eps (N, d) -> the latents to decode (N, d).

        ``prior`` None is ``model.latent_prior``. 'standard': z = truncation *
        eps. 'aggregate': z = mean + L (truncation * eps), the Gaussian fitted to
        the training posteriors (:class:`~.latent_prior.AggregatePosterior`).
        """
        prior = prior or self.latent_prior
        if truncation < 0:
            raise ValueError(f'truncation must be >= 0, got {truncation}')
        if prior == 'standard':
            return eps if truncation == 1.0 else eps * truncation
        if prior != 'aggregate':
            raise ValueError(f"prior must be 'standard' or 'aggregate', got {prior!r}")
        if not hasattr(self, 'aggregate_posterior'):
            raise ValueError("prior='aggregate' needs a model built with "
                             "latent_prior='aggregate' (it tracks the posteriors' moments "
                             'while training); this one samples from N(0, I) only')
        return self.aggregate_posterior(eps, truncation)

    @staticmethod
    def _sample_options(sample_kwargs: Optional[dict]) -> tuple:
        """(truncation, prior) from ``sample_kwargs``; any other key is an error
        rather than silently ignored."""
        sample_kwargs = dict(sample_kwargs or {})
        truncation = float(sample_kwargs.pop('truncation', 1.0))
        prior = sample_kwargs.pop('prior', None)
        if sample_kwargs:
            raise ValueError(f'sample_kwargs: unknown key(s) {sorted(sample_kwargs)}; an '
                             'introspective VAE samples with `truncation` and `prior`')
        return truncation, prior  # prior_latents checks both

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


__all__ = ['IntrospectiveVAE']
