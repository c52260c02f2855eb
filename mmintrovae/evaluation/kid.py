"""Kernel Inception Distance (Binkowski et al., "Demystifying MMD GANs", ICLR 2018).

KID is the squared maximum mean discrepancy between the Inception features of
real and generated images under the cubic polynomial kernel

    k(x, y) = (x . y / d + 1)^3          (d = 2048 feature dimensions),

estimated without bias from a real sample X (m features) and a generated
sample Y (n features):

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(mn) sum_{i, j} k(x_i, y_j).

Unlike FID, whose plug-in estimate is biased upwards by an amount that depends
on the number of images (large for a few hundred), the expectation of this
estimate is the population value at any sample size, and it is zero when both
samples come from one distribution (individual estimates are then scattered
around zero and can be negative). That makes KID usable on small reference
sets. As in the paper, it is averaged over random subsets, and the spread of
the subset estimates is reported with it.
"""
from typing import Tuple

import numpy as np

__all__ = ['polynomial_kernel', 'mmd2_unbiased', 'kernel_inception_distance']


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(m, n) kernel matrix (x . y / d + 1)^3 of (m, d) and (n, d) features, float64.

    The products are taken in float32 (the features' own precision; twice as
    fast as float64), the cube in float64. numpy's BLAS, not torch's: on a
    busy 2-core CPU torch's threads spin and a small product took 20x longer.
    """
    d = x.shape[1]
    dots = np.asarray(x, np.float32) @ np.asarray(y, np.float32).T
    return (dots.astype(np.float64) / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 estimate of (m, d) and (n, d) features (m, n >= 2)."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f'the unbiased MMD needs at least 2 features per set, got {m} and {n}')
    k_xx = polynomial_kernel(x, x)
    k_yy = polynomial_kernel(y, y)
    k_xy = polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> Tuple[float, float, int]:
    """KID of (n_real, d) and (n_fake, d) features: (mean, std, size) over subsets.

    Each of ``num_subsets`` estimates draws ``size = min(subset_size, n_real,
    n_fake)`` real and as many generated features without replacement (the
    paper's and torch-fidelity's convention: both samples of one size), so a
    small reference set (e.g. 85 test images) is handled by smaller subsets,
    and 5,000 generated images still contribute through the different draws.
    ``std`` is the standard deviation of the subset estimates (ddof 0): the
    spread of one subset's estimate, not the error of the mean. When both sets
    have exactly ``size`` features every subset is the whole data: one
    estimate, std 0. The draws come from their own generator seeded with
    ``seed``: the global random state (and so an exact resume) is untouched.
    """
    real = np.asarray(real)
    fake = np.asarray(fake)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f'expected (n, d) feature arrays of one width, got {real.shape} and '
                         f'{fake.shape}')
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(f'num_subsets must be >= 1 and subset_size >= 2, got {num_subsets} '
                         f'and {subset_size}')
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f'KID needs at least 2 real and 2 generated images, got {len(real)} '
                         f'real and {len(fake)} generated')
    if size == len(real) == len(fake):
        return mmd2_unbiased(real, fake), 0.0, size
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        real_idx = rng.choice(len(real), size, replace=False)
        fake_idx = rng.choice(len(fake), size, replace=False)
        values.append(mmd2_unbiased(real[real_idx], fake[fake_idx]))
    return float(np.mean(values)), float(np.std(values)), size
