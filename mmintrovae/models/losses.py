"""IntroVAE's loss terms, reduced exactly as the official code reduces them.

The hyper-parameters (m, alpha, beta) only carry over from the paper's
recipes with these reductions: sums over latent dimensions and over pixels,
then a mean over the batch.
"""

import torch.nn.functional as F
from torch import Tensor


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """L_REG per sample: KL(N(mu, exp(logvar)) || N(0, I)).

    Args:
        mu, logvar: (N, latent_dim).

    Returns:
        (N,) tensor: -0.5 * sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j)).
        Computed in fp32 even under autocast.
    """
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def reconstruction_error(x_rec: Tensor, x: Tensor) -> Tensor:
    """L_AE per sample: the sum of squared errors over C*H*W (no 1/2).

    Args:
        x_rec, x: (N, C, H, W) in the same range.

    Returns:
        (N,) tensor, computed in fp32.
    """
    return (x_rec.float() - x.float()).pow(2).flatten(1).sum(dim=1)


def margin_hinge(kl_batch_mean: Tensor, m: float) -> Tensor:
    """[m - L_REG]^+ on the batch-mean KL (the official code takes the mean
    first, then the hinge, not the mean of per-sample hinges)."""
    return F.relu(m - kl_batch_mean)


__all__ = ['kl_divergence', 'reconstruction_error', 'margin_hinge']
