"""L_REG, L_AE and the hinge, pinned against hand computations."""
import math

import pytest
import torch

from mmintrovae.models.losses import kl_divergence, margin_hinge, reconstruction_error


def test_kl_is_summed_over_latent_dims_per_sample():
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # per dim 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2): 0.5 and 0.5 * (1 - ln 2)
    expected = torch.tensor([1.0 - 0.5 * math.log(2.0), 0.0])
    assert torch.allclose(kl_divergence(mu, logvar), expected)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    assert torch.allclose(kl_divergence(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1))


def test_reconstruction_error_is_sum_of_squares_without_half():
    x = torch.zeros(2, 1, 2, 2)
    x_rec = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]]], [[[0.5, 0.0], [0.0, 0.0]]]])
    assert torch.allclose(reconstruction_error(x_rec, x), torch.tensor([6.0, 0.25]))


def test_losses_are_fp32_under_half_inputs():
    mu = torch.randn(3, 4).half()
    assert kl_divergence(mu, mu).dtype == torch.float32
    assert reconstruction_error(mu.view(3, 1, 2, 2), mu.view(3, 1, 2, 2)).dtype == torch.float32


@pytest.mark.parametrize('kl,m,expected', [(3.0, 5.0, 2.0), (7.0, 5.0, 0.0)])
def test_margin_hinge(kl, m, expected):
    assert margin_hinge(torch.tensor(kl), m).item() == pytest.approx(expected)
