"""Runs that do not collapse silently: a watch on the introspective balance.

IntroVAE's adversarial game can break once its plain-VAE warm-up ends, most
often on data a recipe was not tuned for. One such run (the Fashion-MNIST
recipe, m = 30, on another set of grey 32x32 images) showed it clearly within
100 iterations of the warm-up's end: the encoder's KL of real images fell to
about 1 while that of reconstructions and samples sat near 100 (the encoder
told real from generated images with ease), L_AE doubled (41 -> 80-92) and
never recovered, and in the end every sample was the same image. Nothing in
the log said so. :class:`IntrospectionMonitorHook` reads what the training
step already returns and watches three things, from the end of the warm-up on:

``balance`` (models with a margin ``m``: IntroVAE)
    The window mean of KL(real) below ``kl_real_ratio * m`` while those of
    KL(rec) and KL(fake) are at or above ``kl_generated_ratio * m``.
``loss_ae``
    The window mean of L_AE above ``loss_ae_ratio`` times its reference: its
    window mean at the end of the warm-up, lowered to the smallest window mean
    seen since (so a run whose L_AE first falls and then climbs back is caught
    too, and a run without a warm-up gets a reference once its first window is
    full).
``diversity``
    The mean pairwise RMS distance (on the model's output scale) between the
    generator's images of ``num_samples`` fixed prior draws (eval mode, as
    they are sampled after training), below ``diversity_ratio`` times the
    largest value measured since the end of the warm-up.

When one breaks the hook logs a warning naming it, with the numbers; if it
stays broken for ``patience`` iterations the hook raises
:class:`IntrospectionCollapseError` naming what broke and the settings to
change (as the divergence guard of :class:`~mmintrovae.models.IntroVAE` does
for non-finite losses). Checkpoints already saved stay where they are; the
message names the newest one saved before the breach began.

The defaults leave healthy runs of the recipes alone: the emoji recipe has
KL(real) about 75-100 against m = 100 (ratio 0.75-1) and L_AE falling from
about 490 to 350 after the warm-up; the Fashion-MNIST recipe (README log) has
KL(real) 12-18 against m = 30 (ratio 0.4-0.6) and L_AE 31 at the warm-up's
end, at most 37-38 after it (1.3-1.35x its lowest window); the collapse above
had KL(real)/m = 0.03 and L_AE at twice its warm-up value; the emoji recipe's
first, failed version (faces dissolved) had L_AE 480 -> 810 (1.7x). Hence
0.1 x m for KL(real) and 1.6x for L_AE.

Usage (config): ``custom_hooks = [..., dict(type='IntrospectionMonitorHook')]``
(in the recipes' runtime already). Window statistics are averaged over the
processes of a distributed run, so every rank takes the same decision. The
hook's state (references, windows, breaches) is saved in checkpoints, so a
resumed run carries on watching against the same references.
"""
import logging
import math
from collections import deque
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmagic.registry import HOOKS
from ..models.network_contract import latent_size

__all__ = ['IntrospectionMonitorHook', 'IntrospectionCollapseError']

_STATE_KEY = 'introspection_monitor'
_STATE_FORMAT = 1


class IntrospectionCollapseError(RuntimeError):
    """The introspective game stayed out of balance for longer than the patience."""


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class IntrospectionMonitorHook(Hook):
    """Warn, then stop, when IntroVAE's introspective balance breaks (module docstring).

    Args:
        interval (int): Iterations between checks.
        window (int): Iterations averaged for each quantity (a sliding window;
            KL(rec) and KL(fake) only from introspective iterations).
        patience (int): Iterations a breach may last before the run stops.
        stop (bool): False: only warn.
        kl_real_ratio (float): ``balance`` breaks when KL(real) < this * m ...
        kl_generated_ratio (float): ... while KL(rec) and KL(fake) >= this * m.
            None disables the check.
        loss_ae_ratio (float): ``loss_ae`` breaks above this times the
            reference. None disables the check.
        diversity_ratio (float): ``diversity`` breaks below this times the
            reference. None disables the check (no generator passes at all).
        num_samples (int): Fixed prior draws for the diversity measure.
        diversity_interval (int): Iterations between diversity measurements
            (each costs one generator pass over ``num_samples`` latents).
        start_iters (int): The references are taken at iteration
            ``max(model.vae_warmup_iters, start_iters)`` and the checks start
            after it: runs with a short or no warm-up (Soft-IntroVAE) are first
            left to move away from the random initialisation.
        seed (int): Seed of the fixed prior draws (their own generator: the
            training's random streams are not touched).
    """

    priority = 'LOW'  # after LoggerHook: the iteration that stops the run is still logged

    QUANTITIES = ('balance', 'loss_ae', 'diversity')

    def __init__(self,
                 interval: int = 10,
                 window: int = 50,
                 patience: int = 200,
                 stop: bool = True,
                 kl_real_ratio: Optional[float] = 0.1,
                 kl_generated_ratio: float = 0.9,
                 loss_ae_ratio: Optional[float] = 1.6,
                 diversity_ratio: Optional[float] = 0.2,
                 num_samples: int = 16,
                 diversity_interval: int = 50,
                 start_iters: int = 200,
                 seed: int = 0):
        if not isinstance(start_iters, int) or start_iters < 0:
            raise ValueError(f'IntrospectionMonitorHook: start_iters must be an integer >= 0, '
                             f'got {start_iters!r}')
        for key, value in dict(interval=interval, window=window, patience=patience,
                               num_samples=num_samples,
                               diversity_interval=diversity_interval).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'IntrospectionMonitorHook: {key} must be an integer >= 1, '
                                 f'got {value!r}')
        if num_samples < 2:
            raise ValueError('IntrospectionMonitorHook: num_samples must be >= 2 (pairwise '
                             f'distances), got {num_samples}')
        for key, value in dict(kl_real_ratio=kl_real_ratio, loss_ae_ratio=loss_ae_ratio,
                               diversity_ratio=diversity_ratio).items():
            if value is not None and not value > 0:
                raise ValueError(f'IntrospectionMonitorHook: {key} must be > 0 or None, '
                                 f'got {value!r}')
        if loss_ae_ratio is not None and loss_ae_ratio <= 1:
            raise ValueError(f'IntrospectionMonitorHook: loss_ae_ratio must be > 1, got '
                             f'{loss_ae_ratio}')
        if diversity_ratio is not None and diversity_ratio >= 1:
            raise ValueError(f'IntrospectionMonitorHook: diversity_ratio must be < 1, got '
                             f'{diversity_ratio}')
        self.interval = interval
        self.window = window
        self.patience = patience
        self.stop = stop
        self.kl_real_ratio = kl_real_ratio
        self.kl_generated_ratio = kl_generated_ratio
        self.loss_ae_ratio = loss_ae_ratio
        self.diversity_ratio = diversity_ratio
        self.num_samples = num_samples
        self.diversity_interval = diversity_interval
        self.start_iters = start_iters
        self.seed = seed
        self._values: Dict[str, deque] = {}
        self.loss_ae_reference: Optional[float] = None
        self.loss_ae_reference_iter: Optional[int] = None
        self.diversity_reference: Optional[float] = None
        self.diversity_reference_iter: Optional[int] = None
        self.last_diversity: Optional[float] = None
        self.kl_real_reference: Optional[float] = None  # KL(real) at the end of the warm-up
        self.breach_since: Dict[str, int] = {}   # quantity -> first iteration (1-based) seen broken
        self.breach_text: Dict[str, str] = {}    # quantity -> the latest description
        self.last_warned: Dict[str, int] = {}
        self.last_checkpoint_iter: Optional[int] = None  # newest saved while nothing was broken
        self._noise: Optional[torch.Tensor] = None

    # ------------------------------------------------------------- the model
    @staticmethod
    def warmup_iters(model) -> int:
        return int(getattr(model, 'vae_warmup_iters', 0) or 0)

    @staticmethod
    def margin(model) -> Optional[float]:
        """IntroVAE's m; None for models without a margin (Soft-IntroVAE)."""
        m = getattr(model, 'm', None)
        return float(m) if m is not None else None

    # ------------------------------------------------------------ the stream
    def record(self, outputs: Dict[str, torch.Tensor]) -> None:
        """Add one iteration's logged values to the windows (non-finite ones are skipped)."""
        for key in ('kl_real', 'kl_rec', 'kl_fake', 'loss_ae'):
            if key not in outputs:
                continue
            value = float(outputs[key])
            if math.isfinite(value):
                self._values.setdefault(key, deque(maxlen=self.window)).append(value)

    def _window_means(self) -> Dict[str, float]:
        """Means of the full windows, averaged over the processes of a distributed run."""
        keys = ['kl_real', 'kl_rec', 'kl_fake', 'loss_ae']
        full = [1.0 if len(self._values.get(k, ())) == self.window else 0.0 for k in keys]
        means = [sum(self._values[k]) / self.window if f else 0.0 for k, f in zip(keys, full)]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = torch.tensor(full + means, dtype=torch.float64)
            if dist.get_backend() == 'nccl':
                t = t.cuda()
            dist.all_reduce(t)
            t = t.cpu() / dist.get_world_size()
            full, means = t[:len(keys)].tolist(), t[len(keys):].tolist()
        # a window counts when every process has it full
        return {k: m for k, f, m in zip(keys, full, means) if f > 0.999}

    @torch.no_grad()
    def measure_diversity(self, model) -> float:
        """Mean pairwise RMS distance of the generator's images of the fixed prior draws.

        Eval mode (BatchNorm with running statistics, as when sampling after
        training); the generator's mode is restored afterwards.
        """
        generator = _unwrap(model.generator)
        device = next(generator.parameters()).device
        if self._noise is None:
            g = torch.Generator().manual_seed(self.seed)
            self._noise = torch.randn(self.num_samples, latent_size(generator), generator=g)
        was_training = generator.training
        generator.eval()
        try:
            imgs = generator(self._noise.to(device)).float().flatten(1)
        finally:
            generator.train(was_training)
        dists = torch.cdist(imgs, imgs) / math.sqrt(imgs.shape[1])
        n = len(imgs)
        return float(dists.sum() / (n * (n - 1)))

    # -------------------------------------------------------------- checking
    def check(self, iteration: int, model, means: Dict[str, float],
              diversity: Optional[float] = None) -> Dict[str, str]:
        """The quantities broken at ``iteration`` (1-based, introspective), described.

        Updates the references. Pure bookkeeping, no I/O: the unit tests feed
        it synthetic streams.
        """
        broken = {}
        m = self.margin(model)
        if (m is not None and self.kl_real_ratio is not None and
                {'kl_real', 'kl_rec', 'kl_fake'} <= set(means)):
            real, rec, fake = means['kl_real'], means['kl_rec'], means['kl_fake']
            if real < self.kl_real_ratio * m and min(rec, fake) >= self.kl_generated_ratio * m:
                broken['balance'] = (
                    f'the encoder tells real from generated images too easily: KL(real) = '
                    f'{real:.3g} is below {self.kl_real_ratio:g} x m = '
                    f'{self.kl_real_ratio * m:.3g} while KL(rec) = {rec:.3g} and KL(fake) = '
                    f'{fake:.3g} sit at or above {self.kl_generated_ratio:g} x m = '
                    f'{self.kl_generated_ratio * m:.3g} (m = {m:g})')
        if self.loss_ae_ratio is not None and 'loss_ae' in means:
            loss = means['loss_ae']
            if self.loss_ae_reference is None:
                self.loss_ae_reference, self.loss_ae_reference_iter = loss, iteration
            elif loss > self.loss_ae_ratio * self.loss_ae_reference:
                broken['loss_ae'] = (
                    f'L_AE = {loss:.4g} is {loss / self.loss_ae_reference:.2f} x its reference '
                    f'{self.loss_ae_reference:.4g} (the window mean at iteration '
                    f'{self.loss_ae_reference_iter}: the end of the warm-up or the lowest since; '
                    f'limit {self.loss_ae_ratio:g} x): reconstructions are getting worse')
            elif loss < self.loss_ae_reference:
                self.loss_ae_reference, self.loss_ae_reference_iter = loss, iteration
        if self.diversity_ratio is not None and diversity is not None:
            self.last_diversity = diversity
            if self.diversity_reference is None or diversity > self.diversity_reference:
                self.diversity_reference, self.diversity_reference_iter = diversity, iteration
            elif diversity < self.diversity_ratio * self.diversity_reference:
                broken['diversity'] = (
                    f'the samples of {self.num_samples} fixed prior draws differ by '
                    f'{diversity:.3g} '
                    f'(mean pairwise RMS distance), {diversity / self.diversity_reference:.2f} x '
                    f'the {self.diversity_reference:.3g} of iteration '
                    f'{self.diversity_reference_iter} (limit {self.diversity_ratio:g} x): the '
                    'samples are collapsing onto few images')
        elif 'diversity' in self.breach_since:
            # not measured at this check: a diversity breach stands until the next measurement
            broken['diversity'] = self.breach_text['diversity']
        return broken

    def advice(self, model, broken: List[str]) -> str:
        """Which settings to change, for the quantities that broke."""
        warmup = self.warmup_iters(model)
        if self.margin(model) is None:  # Soft-IntroVAE
            tips = ['lower model.beta_neg (the authors halve it when the game is out of '
                    'balance) or model.beta_kl',
                    'raise model.beta_rec (the weight of the reconstruction error)',
                    f'add or lengthen the plain-VAE warm-up model.vae_warmup_iters (now {warmup})']
        else:
            m = self.margin(model)
            real = self.kl_real_reference
            tips = []
            if 'balance' in broken or 'diversity' in broken:
                tips.append(f'lower the margin model.m (now {m:g}) towards the KL of real '
                            'images at the end of the warm-up' + (
                                f' ({real:.3g} in this run)' if real is not None else ''))
                tips.append(f'lower model.alpha (now {getattr(model, "alpha", "?")}), the weight '
                            "of the encoder's hinge")
            if 'loss_ae' in broken:
                tips.append(f'raise model.beta (now {getattr(model, "beta", "?")}), the weight of '
                            'L_AE, or lower model.alpha_generator (now '
                            f'{getattr(model, "alpha_generator", "?")})')
            tips.append(f'lengthen the plain-VAE warm-up model.vae_warmup_iters (now {warmup})')
        return '; '.join(tips)

    def _checkpoint_note(self) -> str:
        if self.last_checkpoint_iter is None:
            return 'No checkpoint was saved before the imbalance began.'
        return (f'Checkpoints saved so far are kept; iter_{self.last_checkpoint_iter}.pth in the '
                'work dir is the newest saved before the imbalance began.')

    def step(self, iteration: int, model, broken: Dict[str, str]) -> None:
        """Warn about new and lasting breaches, forget mended ones, stop after the patience."""
        for name in list(self.breach_since):
            if name not in broken:
                print_log(f'IntrospectionMonitorHook: iteration {iteration}: {name} is back within '
                          'its limits.', 'current', logging.INFO)
                del self.breach_since[name]
                self.breach_text.pop(name, None)
                self.last_warned.pop(name, None)
        for name, text in broken.items():
            self.breach_text[name] = text
            since = self.breach_since.setdefault(name, iteration)
            lasting = iteration - since
            if self.stop and lasting >= self.patience:
                names = sorted(self.breach_since)
                what = '\n'.join(f'  - {n} (since iteration {self.breach_since[n]}): '
                                 f'{self.breach_text[n]}' for n in names)
                raise IntrospectionCollapseError(
                    f'The introspective training collapsed: at iteration {iteration} these have '
                    f'been out of balance for {lasting} iterations (patience {self.patience}):\n'
                    f'{what}\nTry: {self.advice(model, names)}. {self._checkpoint_note()} '
                    'Thresholds and patience: IntrospectionMonitorHook in custom_hooks '
                    '(stop=False only warns).')
            if name not in self.last_warned or \
                    iteration - self.last_warned[name] >= max(self.patience // 4, self.interval):
                self.last_warned[name] = iteration
                left = (f'the run stops at iteration {since + self.patience} unless it recovers'
                        if self.stop else 'stop=False: the run goes on')
                print_log(f'IntrospectionMonitorHook: iteration {iteration}: {text}. Out of '
                          f'balance for {lasting} iterations; {left}. Settings to change: '
                          f'{self.advice(model, [name])}.', 'current', logging.WARNING)

    # ----------------------------------------------------------------- hooks
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        model = _unwrap(runner.model)
        if not outputs or not hasattr(model, 'encoder'):
            return  # not an introspective VAE
        iteration = runner.iter + 1  # 1-based: iterations done
        # references at the end of the warm-up, checks after it; with a short or no
        # warm-up not before start_iters (a network still near its random initialisation
        # would set the diversity reference)
        start = max(self.warmup_iters(model), self.start_iters)
        self.record(outputs)
        at_start = start > 0 and iteration == start
        if not at_start and (iteration < start or iteration % self.interval):
            return
        means = self._window_means()
        diversity = None
        if self.diversity_ratio is not None and (
                at_start or iteration % self.diversity_interval == 0):
            diversity = self.measure_diversity(model)
        if at_start:
            # the references only (L_AE, diversity): the game has not started yet
            self.kl_real_reference = means.get('kl_real')
            self.check(iteration, model, {k: v for k, v in means.items() if k == 'loss_ae'},
                       diversity)
            return
        self.step(iteration, model, self.check(iteration, model, means, diversity))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.setdefault('meta', {})
        if not self.breach_since:
            self.last_checkpoint_iter = int(meta.get('iter', runner.iter + 1))
        meta[_STATE_KEY] = dict(
            format=_STATE_FORMAT,
            values={k: list(v) for k, v in self._values.items()},
            loss_ae_reference=self.loss_ae_reference,
            loss_ae_reference_iter=self.loss_ae_reference_iter,
            diversity_reference=self.diversity_reference,
            diversity_reference_iter=self.diversity_reference_iter,
            kl_real_reference=self.kl_real_reference,
            breach_since=dict(self.breach_since),
            breach_text=dict(self.breach_text),
            last_checkpoint_iter=self.last_checkpoint_iter)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return  # load_from (fine-tuning, testing): this run sets its own references
        state = (checkpoint.get('meta') or {}).get(_STATE_KEY)
        if not state or state.get('format') != _STATE_FORMAT:
            return
        self._values = {k: deque(v, maxlen=self.window) for k, v in state['values'].items()}
        self.loss_ae_reference = state['loss_ae_reference']
        self.loss_ae_reference_iter = state['loss_ae_reference_iter']
        self.diversity_reference = state['diversity_reference']
        self.diversity_reference_iter = state['diversity_reference_iter']
        self.kl_real_reference = state.get('kl_real_reference')
        self.breach_since = dict(state['breach_since'])
        self.breach_text = dict(state['breach_text'])
        self.last_checkpoint_iter = state['last_checkpoint_iter']
