"""Statistics shared by the benchmark testbeds, the evidence protocol and the sweep (generic: no testbed specifics).

numpy only at import time (the sweep uses :func:`frechet_distance` without torch or scipy); torch and scipy are
imported inside the functions that need them.

* :func:`frechet_distance` — the one Fréchet distance of the repository (Gaussians fitted with sample
  covariances, ``N − 1``), used by every testbed and by the sweep (``sweep/``);
* :func:`fd_infinity` — FD extrapolated to infinitely many samples (FD at several subset sizes, linear fit in
  ``1/N``, the intercept; Chong & Forsyth 2020);
* :func:`polynomial_kernel`, :func:`kid` — the kernel inception distance: the unbiased MMD² with the cubic
  polynomial kernel ``(x·y/d + 1)³`` (Bińkowski et al. 2018), on any features;
* :func:`pair_mean`, :func:`weighted_pair_mean` — U-statistic means over distinct pairs, also of a bootstrap
  resample (positions that repeat one sample are not a pair);
* :func:`prdc` — precision, recall, density and coverage (Naeem et al. 2020), the ``prdc`` package's definitions
  (computed here with numpy: the package spawns 8 workers and prints);
* :func:`denoiser_gap` — the paper's Eq. 8 gap from denoiser outputs, in ε- and score-space;
* :func:`mean_ci` — mean and a Student-t 95 % confidence half-width over seeds;
* :func:`bootstrap_mean_diff` — paired bootstrap interval of a mean difference over samples.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["frechet_distance", "FDExtrapolation", "fd_infinity", "subset_sizes", "polynomial_kernel", "kid_scale",
           "kid", "pair_mean", "weighted_pair_mean", "euclidean_distances", "prdc", "target_log_odds", "denoiser_gap",
           "mean_ci", "bootstrap_mean_diff", "psd_sqrt"]


# ---------------------------------------------------------------------------------------------------
# Fréchet distance


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _two_feature_sets(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need two N×D feature arrays with N ≥ 2 and the same D, got {a.shape} and {b.shape}")
    return a, b


def frechet_distance(a: Any, b: Any) -> float:
    """Fréchet distance between Gaussians fitted to the feature sets ``a`` ``[N, D]`` and ``b`` ``[M, D]``.

    ``‖μa − μb‖² + tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½)`` with sample covariances (``N − 1``, as FID implementations
    use); the matrix square roots are symmetric eigendecompositions, so the value is real and never below 0.
    """
    a, b = _two_feature_sets(a, b)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = psd_sqrt(np.atleast_2d(cov_a))
    cross = psd_sqrt(root_a @ np.atleast_2d(cov_b) @ root_a)
    value = float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(np.atleast_2d(cov_a))
                  + np.trace(np.atleast_2d(cov_b)) - 2.0 * np.trace(cross))
    return max(value, 0.0)


@dataclasses.dataclass(frozen=True)
class FDExtrapolation:
    """FD at several subset sizes and its linear fit ``FD(N) = fd_infinity + slope / N``.

    Args:
        fd_infinity: the intercept (FD extrapolated to infinitely many generated samples).
        slope: the fitted coefficient of ``1/N``.
        sizes: the subset sizes; values: the mean FD over the draws at each size.
    """

    fd_infinity: float
    slope: float
    sizes: tuple[int, ...]
    values: tuple[float, ...]


def subset_sizes(n: int, points: int = 5, smallest_fraction: float = 0.25) -> tuple[int, ...]:
    """``points`` subset sizes from ``n·smallest_fraction`` to ``n``, evenly spaced in ``1/N``."""
    lo = max(2, int(round(n * smallest_fraction)))
    inv = np.linspace(1.0 / lo, 1.0 / n, points)
    return tuple(sorted({int(round(1.0 / v)) for v in inv}))


def fd_infinity(features: Any, reference: Any, sizes: Sequence[int] | None = None, draws: int = 3,
                seed: int = 0) -> FDExtrapolation:
    """FD∞ of ``features`` against ``reference``: the FD of random subsets (without replacement) of each size in
    ``sizes`` (default :func:`subset_sizes`), averaged over ``draws`` subsets, fitted linearly in ``1/N``.

    The reference set is used whole: its own finite-size bias is the same for every generated set compared.
    """
    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    sizes = tuple(sizes) if sizes is not None else subset_sizes(n)
    rng = np.random.default_rng(seed)
    values = []
    for size in sizes:
        if not 2 <= size <= n:
            raise ValueError(f"subset size {size} outside 2..{n}")
        repeats = 1 if size == n else draws
        values.append(float(np.mean([frechet_distance(features[rng.choice(n, size, replace=False)], reference)
                                     for _ in range(repeats)])))
    x = 1.0 / np.asarray(sizes, dtype=np.float64)
    slope, intercept = np.polyfit(x, np.asarray(values), 1) if len(sizes) > 1 else (0.0, values[0])
    return FDExtrapolation(float(intercept), float(slope), tuple(int(s) for s in sizes), tuple(values))


# ---------------------------------------------------------------------------------------------------
# KID and pair means


def polynomial_kernel(a: Any, b: Any) -> np.ndarray:
    """The KID kernel ``k(x, y) = (x·y / d + 1)³`` between the rows of ``a`` ``[N, d]`` and ``b`` ``[M, d]``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def pair_mean(matrix: np.ndarray) -> float:
    """Mean of a square matrix over its off-diagonal entries (a U-statistic over distinct pairs)."""
    m = matrix.shape[0]
    return float((matrix.sum() - np.trace(matrix)) / (m * (m - 1)))


def weighted_pair_mean(matrix: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """:func:`pair_mean` of resampled sets given as multiplicities ``counts`` ``[R, m]``, one value per row.

    Pairs of positions that hold the same sample are left out (a duplicate is no pair), as in an unbiased
    U-statistic of the resampled set; a resample with a single distinct sample gives NaN.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(1)
    diag = np.diag(matrix)
    paired = np.einsum("ri,ij,rj->r", counts, matrix, counts) - (counts ** 2) @ diag
    pairs = total ** 2 - (counts ** 2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):       # a resample of one distinct sample has no pair: NaN
        return paired / pairs


def kid_scale(reference: Any) -> float:
    """The factor that gives ``reference`` a mean squared norm of ``d`` (so ``x·y/d`` is of order 1, the range the
    KID kernel was made for); multiply both feature sets by it before :func:`kid` when the features are not
    Inception-like (large ReLU activations make the cubic kernel explode)."""
    reference = np.asarray(reference, dtype=np.float64)
    return float(np.sqrt(reference.shape[1] / np.mean((reference ** 2).sum(1))))


def kid(features: Any, reference: Any) -> float:
    """Kernel inception distance: the unbiased MMD² of :func:`polynomial_kernel` between two feature sets."""
    features, reference = _two_feature_sets(features, reference)
    return (pair_mean(polynomial_kernel(features, features)) + pair_mean(polynomial_kernel(reference, reference))
            - 2.0 * float(polynomial_kernel(features, reference).mean()))


# ---------------------------------------------------------------------------------------------------
# precision / recall / density / coverage


def euclidean_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and of ``b``."""
    squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(squared, 0.0, None))


def _kth_neighbour_radius(features: np.ndarray, k: int) -> np.ndarray:
    d = euclidean_distances(features, features)
    return np.partition(d, k, axis=1)[:, k]        # the sample itself is its 0th neighbour


def prdc(reference: Any, generated: Any, nearest_k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``generated`` against ``reference`` (Naeem et al. 2020).

    The definitions of the ``prdc`` package's ``compute_prdc(real, fake, nearest_k)`` (tests compare the two).
    """
    real, fake = _two_feature_sets(reference, generated)
    real_radius = _kth_neighbour_radius(real, nearest_k)
    fake_radius = _kth_neighbour_radius(fake, nearest_k)
    d = euclidean_distances(real, fake)                                         # [real, fake]
    inside_real = d < real_radius[:, None]
    return {"precision": float(inside_real.any(axis=0).mean()),
            "recall": float((d < fake_radius[None, :]).any(axis=1).mean()),
            "density": float(inside_real.sum(axis=0).mean() / nearest_k),
            "coverage": float((d.min(axis=1) < real_radius).mean())}


# ---------------------------------------------------------------------------------------------------
# the paper's gap, seeds, paired samples


def target_log_odds(log_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per sample ``log p(target) − log(1 − p(target))`` from class log-probabilities ``[n, K]`` (or any
    unnormalised log-weights): it keeps growing where ``log p(target)`` has reached 0 in floating point."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    rows = np.arange(labels.size)
    target = log_probs[rows, labels]
    others = log_probs.copy()
    others[rows, labels] = -np.inf
    top = others.max(1)
    return target - (top + np.log(np.exp(others - top[:, None]).sum(1)))


def denoiser_gap(denoised: Any, exact: Any, sigma: float) -> dict[str, float]:
    """The paper's Eq. 8 gap at one step, per dimension, from guided and exact denoiser outputs (torch tensors).

    With ``ε = (x − D)/σ`` and ``s = (D − x)/σ²`` at the same ``x``:
    ``eps = E‖ε̂ − ε*‖²/D = E‖D̂ − D*‖²/(σ² D)`` and ``score = E‖ŝ − ∇log q‖²/D = E‖D̂ − D*‖²/(σ⁴ D)``.
    """
    flat_denoised = denoised.reshape(denoised.shape[0], -1).double()
    flat_exact = exact.reshape(exact.shape[0], -1).double()
    mean_sq = float((flat_denoised - flat_exact).square().mean(dim=1).mean())
    return {"eps": mean_sq / sigma ** 2, "score": mean_sq / sigma ** 4, "x0": mean_sq}


def _t975(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df)) if df > 0 else float("nan")


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % Student-t confidence interval (NaN half-width for n < 2)."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(vals) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in vals) / (n - 1)
    return mean, _t975(n - 1) * math.sqrt(var / n)


def bootstrap_mean_diff(a: Any, b: Any, reps: int, seed: int = 0) -> dict[str, float]:
    """Paired bootstrap over samples of ``mean(a − b)`` (torch tensors): mean and the 2.5 / 97.5 percentiles.

    Args:
        a, b: per-sample scores of two methods on the same samples (same order).
        reps: bootstrap resamples; seed: the resampling generator's seed.
    """
    import torch

    d = (a.double() - b.double()).reshape(-1)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, d.numel(), (reps, d.numel()), generator=g)
    boots = d[idx].mean(1)
    return {"mean": float(d.mean()), "lo": float(boots.quantile(0.025)), "hi": float(boots.quantile(0.975)),
            "n": d.numel()}
