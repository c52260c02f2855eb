"""The seam between an introspective model and its objective.

An introspective VAE has three parts, each replaceable on its own:

- the **networks**: an encoder q(z|x) (images (N, C, H, W) -> (mu, logvar),
  each (N, latent)) and a generator/decoder (MMagic's contract: (N, latent)
  noise -> (N, C, H, W) images), whatever the config names;
- the **objective**: the losses of the two phases of an iteration, the
  encoder phase (L_E) and the generator phase (L_G), written as the paper
  writes them (:class:`IntroVAEObjective`, :class:`SoftIntroVAEObjective`,
  :class:`VAEObjective`);
- the **model** (:class:`IntrospectiveVAE`): data, the two optimizers and the
  loop that steps them (backward restricted to one network, the divergence
  guard, BatchNorm-statistics restore, DDP), EMA, inference and metrics.

The loop of one iteration, owned by the model (cf. StyleGAN2-ADA's training
loop calling ``loss.accumulate_gradients(phase)``)::

    with encoder optimizer's context (AMP autocast, DDP no_sync while accumulating):
        enc, state = objective.encoder_phase(encoder, generator, x, it)   # forward passes of L_E
    step the encoder on enc.loss          # backward(inputs=encoder params), retain_graph
    enc = enc.detach()                    # graphs only L_E needed die here
    with generator optimizer's context:
        gen = objective.generator_phase(encoder, generator, state, it)   # forward passes of L_G
    step the generator on gen.loss        # backward(inputs=generator params)

An objective holds hyper-parameters only (no parameters, no buffers): the
model's state dict, hence every checkpoint, is the same whatever the
objective. Objectives live in their own registry, :data:`OBJECTIVES` (a model
config names one as ``objective=dict(type='IntroVAEObjective', ...)``);
they are not networks, so they stay out of MMagic's ``MODELS``.
"""
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from mmengine.registry import Registry
import torch
from torch import Tensor, nn

#: The registry of objectives: ``@OBJECTIVES.register_module()`` on a subclass
#: of :class:`IntrospectiveObjective` makes it usable as ``objective=dict(type=...)``.
OBJECTIVES = Registry('introspective objective')


@dataclass
class PhaseLoss:
    """What one phase hands to the loop.

    Attributes:
        loss: () the tensor the loop back-propagates, restricted to the
            phase's network.
        log: Scalars to log (tensors; the loop detaches them).
        value: () the loss the divergence guard checks, when ``loss`` is a
            surrogate with the same gradient but another value (IntroVAE's
            simultaneous mode); None: ``loss`` itself.
    """
    loss: Tensor
    log: Dict[str, Tensor] = field(default_factory=dict)
    value: Optional[Tensor] = None

    def detach(self) -> 'PhaseLoss':
        """The same numbers without their graphs (after the phase's backward)."""
        return PhaseLoss(self.loss.detach(), {k: v.detach() for k, v in self.log.items()},
                         None if self.value is None else self.value.detach())


class IntrospectiveObjective:
    """The losses of an introspective VAE's two phases; the model steps them.

    Contract, which keeps a seeded run's steps identical across objectives'
    refactorings and lets the model own the loop:

    - :meth:`encoder_phase` runs every forward pass L_E needs (in the encoder
      optimizer's context) and returns L_E plus ``state``: whatever the
      generator phase reuses (typically the decoder graphs x_r = G(z),
      x_p = G(z_p), which the encoder's backward keeps with
      ``retain_graph=True``). ``state`` must not reference graphs that only
      L_E needs: the loop frees them before the generator's backward.
    - :meth:`generator_phase` runs the forward passes L_G adds, after the
      encoder step (so through the *updated* encoder), and returns L_G.
    - A dict ``state`` may carry ``posterior``: (mu, logvar) of the real
      batch, E(x). The model takes it out (detached) before any backward and,
      with ``latent_prior='aggregate'``, averages it into the moments it
      samples from (:mod:`.latent_prior`).
    - Prior samples z_p come from :meth:`draw_prior`: N(0, I) as in the
      papers, unless the model trains with ``latent_prior=dict(type='aggregate',
      train_samples=True)``, which maps them through its fitted prior.
    - Each loss is back-propagated into its own network only
      (``backward(inputs=...)``), so a phase may let gradients flow *through*
      the other network without changing it.

    Subclasses list in :attr:`hyper_parameters` the names the model exposes as
    its own attributes (``model.m``, ``model.beta_neg``, ...), which configs,
    hooks and tools read.
    """

    #: Attribute names the model delegates to the objective.
    hyper_parameters: Tuple[str, ...] = ()
    #: What the divergence guard's error suggests changing before resuming.
    divergence_advice: str = 'lowering the learning rates'
    #: Whether the phases decode prior samples x_p = G(z_p) (drawn with
    #: :meth:`draw_prior`); a plain VAE does not.
    draws_prior_samples: bool = False
    #: eps (N, d) -> z_p (N, d), set by the model when its training samples come
    #: from another prior than N(0, I); None: z_p = eps.
    prior_transform: Optional[Callable[[Tensor], Tensor]] = None

    def draw_prior(self, like: Tensor) -> Tensor:
        """z_p for the samples x_p = G(z_p) of one batch, shaped like ``like`` (N, d).

        One ``randn`` draw either way, so a seeded run's random stream does not
        depend on the prior.
        """
        eps = torch.randn_like(like)
        return eps if self.prior_transform is None else self.prior_transform(eps)

    def encoder_phase(self, encoder: nn.Module, generator: nn.Module, x: Tensor,
                      curr_iter: int) -> Tuple[PhaseLoss, Any]:
        """L_E on the batch ``x`` ((N, C, H, W) in the training range).

        Returns:
            (L_E, state for :meth:`generator_phase`).
        """
        raise NotImplementedError

    def generator_phase(self, encoder: nn.Module, generator: nn.Module, state: Any,
                        curr_iter: int) -> PhaseLoss:
        """L_G, after the encoder step. ``encoder`` is the bare module (outside
        any DDP wrapper): L_G computes no encoder gradient."""
        raise NotImplementedError

    def schedule_log(self, curr_iter: int) -> Dict[str, Tensor]:
        """Logged after the losses: where the schedule (e.g. the warm-up) stands."""
        return {}

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={getattr(self, k)!r}' for k in self.hyper_parameters)
        return f'{type(self).__name__}({args})'


def build_objective(cfg: Any, key: str = 'model.objective') -> IntrospectiveObjective:
    """An objective from its config dict (or an instance, returned as is).

    Raises a ValueError naming ``key`` and the registered types for an unknown
    ``type``, and one naming the key at fault and the accepted keys for an
    unknown argument.
    """
    if isinstance(cfg, IntrospectiveObjective):
        return cfg
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(f'{key} must be a dict with a "type" (one of '
                         f'{", ".join(sorted(OBJECTIVES.module_dict))}) or an '
                         f'IntrospectiveObjective, got {cfg!r}')
    args = dict(cfg)
    name = args.pop('type')
    cls = name if isinstance(name, type) else OBJECTIVES.module_dict.get(name)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, IntrospectiveObjective)):
        raise ValueError(f'{key}.type={name!r} is not a registered objective; registered: '
                         f'{", ".join(sorted(OBJECTIVES.module_dict))}')
    accepted = [p for p in inspect.signature(cls).parameters if p != 'self']
    unknown = [k for k in args if k not in accepted]
    if unknown:
        raise ValueError(f'{key}: {cls.__name__} has no argument {", ".join(map(repr, unknown))}; '
                         f'it accepts {", ".join(accepted)}')
    return cls(**args)


__all__ = ['OBJECTIVES', 'PhaseLoss', 'IntrospectiveObjective', 'build_objective']
