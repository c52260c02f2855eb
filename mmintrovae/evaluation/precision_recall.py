"""Fidelity and diversity from k-nearest-neighbour manifolds of Inception features.

Precision and recall (Kynkaanniemi et al., "Improved Precision and Recall
Metric for Assessing Generative Models", NeurIPS 2019): each feature of a set
gets a ball whose radius is the distance to its k-th nearest neighbour in its
own set (k = 3); the union of the balls estimates the set's manifold.

    precision = share of generated features inside the real manifold  (fidelity)
    recall    = share of real features inside the generated manifold  (diversity)

Density and coverage (Naeem et al., "Reliable Fidelity and Diversity Metrics
for Generative Models", ICML 2020) use the real balls only (k = 5 in the
paper), which makes them robust to outliers among the generated images:

    density  = 1/(k M) sum_j #{real balls holding generated feature j}   (can exceed 1)
    coverage = share of real balls that hold at least one generated feature

A collapsed generator (every sample near one real image) scores a high
precision and density but a recall and coverage near 1/N; identical sets score
precision = recall = coverage = 1.

The radii shrink as a set grows, so both sets should have the same size (the
papers use equal sizes); :func:`manifold_metrics` leaves the choice to the
caller (:class:`~mmintrovae.evaluation.inception_metrics.IntroVAEInceptionMetrics`
draws equal-size subsets).
"""
from typing import Dict, Optional

import numpy as np

__all__ = ['pairwise_distances', 'kth_neighbour_radii', 'manifold_metrics']

#: Rows per block of a distance matrix (a 1024 x 10,000 float64 block is 80 MB).
CHUNK = 1024


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (n, m), float64, of (n, d) and (m, d) features.

    The products in float32 (numpy's BLAS: see :func:`.kid.polynomial_kernel`),
    the squared norms and the rest in float64.
    """
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    sq = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None] \
        - 2.0 * (np.asarray(a, np.float32) @ np.asarray(b, np.float32).T)
    return np.sqrt(np.maximum(sq, 0.0))


def kth_neighbour_radii(feats: np.ndarray, k: int) -> np.ndarray:
    """(n,) distance of each feature to its k-th nearest neighbour in ``feats`` (itself excluded).

    A feature's distance to itself (0) is the smallest of its row, so the
    k-th neighbour is the (k+1)-th smallest value, as in both papers' code.
    """
    n = len(feats)
    if not 1 <= k < n:
        raise ValueError(f'the {k}-nearest-neighbour radii need more than k={k} features, '
                         f'got {n}')
    radii = []
    for start in range(0, n, CHUNK):
        d = pairwise_distances(feats[start:start + CHUNK], feats)
        radii.append(np.partition(d, k, axis=1)[:, k])
    return np.concatenate(radii)


def manifold_metrics(real: np.ndarray, fake: np.ndarray, k: int = 3,
                     density_k: Optional[int] = 5) -> Dict[str, float]:
    """Precision and recall (k-NN radii, ``k``), density and coverage (``density_k``).

    Args:
        real: (N, d) real features.
        fake: (M, d) generated features.
        k: Neighbours of the precision/recall balls (3 in Kynkaanniemi et al.).
        density_k: Neighbours of the density/coverage balls (5 in Naeem et al.);
            None: precision and recall only.

    Returns:
        dict with ``precision``, ``recall`` and, with ``density_k``,
        ``density`` and ``coverage``; all in [0, 1] but density (>= 0).
    """
    real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f'expected (n, d) feature arrays of one width, got {real.shape} and '
                         f'{fake.shape}')
    real_radii = kth_neighbour_radii(real, k)
    fake_radii = kth_neighbour_radii(fake, k)
    dc_radii = kth_neighbour_radii(real, density_k) if density_k else None
    n_real, n_fake = len(real), len(fake)
    in_real_manifold = 0                           # generated features inside some real ball
    real_covered = np.zeros(n_real, dtype=bool)    # real features inside some generated ball
    balls_holding = 0                              # (generated, real ball holding it) pairs
    nearest_fake = np.full(n_real, np.inf)
    # One pass over the (fake x real) distances, a block of generated rows at a time.
    for start in range(0, n_fake, CHUNK):
        d = pairwise_distances(fake[start:start + CHUNK], real)  # (c, N)
        in_real_manifold += int((d <= real_radii).any(1).sum())
        real_covered |= (d <= fake_radii[start:start + CHUNK, None]).any(0)
        if dc_radii is not None:
            balls_holding += int((d <= dc_radii).sum())
            nearest_fake = np.minimum(nearest_fake, d.min(0))
    out = dict(precision=in_real_manifold / n_fake, recall=float(real_covered.mean()))
    if dc_radii is not None:
        out['density'] = balls_holding / (density_k * n_fake)
        out['coverage'] = float((nearest_fake <= dc_radii).mean())
    return out
