"""Where samples come from: the prior N(0, I), or a Gaussian fitted to the aggregate posterior.

A VAE (introspective or not) is trained to make each q(z|x) close to N(0, I),
but the aggregate posterior q(z) = mean_x q(z|x) of a finite training set does
not fill N(0, I): it is shifted, stretched along some directions and thin along
others. Prior samples that land where no training image's posterior lies
("prior holes") decode to the blotchy mixtures the CPU recipes showed. Ghosh et
al. (ICLR 2020, "From variational to deterministic autoencoders") sample from a
density fitted to the training codes after training instead ("ex-post density
estimation"); :class:`AggregatePosterior` is the simplest such density, one
Gaussian with the aggregate posterior's first two moments:

    mean = E_x[mu(x)],   cov = Cov_x[mu(x)] + diag(E_x[sigma^2(x)]),

kept as running averages of the training batches' posteriors, like
BatchNorm's statistics: no extra pass, no data at sampling time, and the
moments travel in the checkpoint. Sampling after (and during) training draws

    z = mean + L (truncation * eps),   eps ~ N(0, I),  L L^T = cov.

By default the introspective training itself is not changed: its samples
x_p = G(z_p) draw z_p from N(0, I), as the papers do. With
``train_samples=True`` they come from this Gaussian too, so the adversarial
game is played where samples will be drawn, not in the prior holes that no
sample will ever visit (an option of this plugin, not of the papers). Before
the first update the moments are N(0, I)'s, so the two agree at the start.
"""
from typing import Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

#: The priors a model can sample from (``model.latent_prior``).
LATENT_PRIORS = ('standard', 'aggregate')


class AggregatePosterior(nn.Module):
    """Running first and second moments of the training images' posteriors.

    Args:
        latent_dim (int): Size d of the latents.
        momentum (float): Weight of each new batch once more than 1/momentum
            batches have been seen (before that, the plain average of all
            batches so far, like BatchNorm with ``momentum=None``). 0.01
            averages over about the last 100 iterations, so the moments follow
            the encoder as it trains.
        train_samples (bool): The introspective objectives draw their
            training samples x_p = G(z_p) from this Gaussian too (the model
            reads this flag), instead of N(0, I).

    Buffers (all float32, saved in the state dict):
        mean (d,): E[mu]. second_moment (d, d): E[mu mu^T].
        variance (d,): E[sigma^2]. num_batches (): batches averaged so far.
    Before the first update the moments are those of N(0, I).
    """

    def __init__(self, latent_dim: int, momentum: float = 0.01, train_samples: bool = False):
        super().__init__()
        if not 0 < momentum <= 1:
            raise ValueError(f'latent_prior momentum must be in (0, 1], got {momentum}')
        self.latent_dim = int(latent_dim)
        self.momentum = float(momentum)
        self.train_samples = bool(train_samples)
        self.register_buffer('mean', torch.zeros(latent_dim))
        self.register_buffer('second_moment', torch.eye(latent_dim))
        self.register_buffer('variance', torch.zeros(latent_dim))
        self.register_buffer('num_batches', torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, mu: Tensor, logvar: Tensor) -> None:
        """Average in one batch of posteriors (mu, logvar), each (N, d).

        Under DDP the batch moments are averaged over the ranks first, so every
        rank keeps the same statistics (the global batch's).
        """
        if mu.ndim != 2 or mu.shape[1] != self.latent_dim or logvar.shape != mu.shape:
            raise ValueError(f'AggregatePosterior: expected (N, {self.latent_dim}) mu and '
                             f'logvar, got {tuple(mu.shape)} and {tuple(logvar.shape)}')
        mu, var = mu.detach().float(), logvar.detach().float().exp()
        d = self.latent_dim
        batch = torch.cat([mu.mean(0), (mu.T @ mu).flatten() / len(mu), var.mean(0)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(batch)
            batch /= dist.get_world_size()
        mean, second, variance = batch.split([d, d * d, d])
        # A tensor, not int(num_batches): no device-to-host sync on every training step.
        weight = (1.0 / (self.num_batches + 1).float()).clamp_min(self.momentum)
        self.mean.lerp_(mean, weight)
        self.second_moment.lerp_(second.view(d, d), weight)
        self.variance.lerp_(variance, weight)
        self.num_batches += 1

    def covariance(self) -> Tensor:
        """(d, d) float64: Cov[mu] + diag(E[sigma^2])."""
        mean = self.mean.double()
        cov = self.second_moment.double() - torch.outer(mean, mean)
        cov = 0.5 * (cov + cov.T) + torch.diag(self.variance.double())
        return cov

    def scale_tril(self) -> Tensor:
        """(d, d) float64 L with L L^T = cov, the covariance's negative
        eigenvalues (rounding) clipped to a small floor first."""
        eigenvalues, vectors = torch.linalg.eigh(self.covariance())
        floor = 1e-6 * max(float(eigenvalues.max()), 1e-6)
        cov = vectors @ torch.diag(eigenvalues.clamp_min(floor)) @ vectors.T
        return torch.linalg.cholesky(0.5 * (cov + cov.T))

    def forward(self, eps: Tensor, truncation: float = 1.0) -> Tensor:
        """eps (N, d) ~ N(0, I) -> z = mean + L (truncation * eps), eps's dtype and device."""
        z = self.mean.double() + (truncation * eps.double()) @ self.scale_tril().T
        return z.to(eps.dtype)


def build_latent_prior(latent_prior, latent_dim: int) -> Tuple[str, Optional[AggregatePosterior]]:
    """``'standard'`` / ``'aggregate'`` / ``dict(type='aggregate', momentum=0.01,
    train_samples=False)`` ->
    (type, the module tracking the aggregate posterior or None)."""
    cfg = dict(type=latent_prior) if isinstance(latent_prior, str) else dict(latent_prior or {})
    kind = cfg.pop('type', 'standard')
    if kind not in LATENT_PRIORS:
        raise ValueError(f'model.latent_prior: type must be one of {LATENT_PRIORS}, got {kind!r}')
    if kind == 'standard':
        if cfg:
            raise ValueError(f'model.latent_prior: the standard prior takes no options, got '
                             f'{sorted(cfg)}')
        return kind, None
    unknown = set(cfg) - {'momentum', 'train_samples'}
    if unknown:
        raise ValueError(f'model.latent_prior: unknown option(s) {sorted(unknown)} '
                         "(the aggregate prior takes 'momentum' and 'train_samples')")
    return kind, AggregatePosterior(latent_dim, **cfg)


__all__ = ['LATENT_PRIORS', 'AggregatePosterior', 'build_latent_prior']
