"""Statistics shared by the benchmark testbeds and the protocol (generic: no testbed specifics).

* :func:`denoiser_gap` — the paper's Eq. 8 gap from denoiser outputs, in ε- and score-space.
* :func:`mean_ci` — mean and a Student-t 95 % confidence half-width over seeds.
* :func:`bootstrap_mean_diff` — paired bootstrap interval of a mean difference over samples.
* :func:`frechet_distance` — Fréchet distance between Gaussians fitted to two feature sets.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["denoiser_gap", "mean_ci", "bootstrap_mean_diff", "frechet_distance"]


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).double()


def denoiser_gap(denoised: torch.Tensor, exact: torch.Tensor, sigma: float) -> dict[str, float]:
    """The paper's Eq. 8 gap at one step, per dimension, from guided and exact denoiser outputs.

    With ``ε = (x − D)/σ`` and ``s = (D − x)/σ²`` at the same ``x``:
    ``eps = E‖ε̂ − ε*‖²/D = E‖D̂ − D*‖²/(σ² D)`` and ``score = E‖ŝ − ∇log q‖²/D = E‖D̂ − D*‖²/(σ⁴ D)``.
    """
    sq = (_flat(denoised) - _flat(exact)).square().mean(dim=1)          # per sample, per dim
    mean_sq = float(sq.mean())
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


def bootstrap_mean_diff(a: torch.Tensor, b: torch.Tensor, reps: int, seed: int = 0) -> dict[str, float]:
    """Paired bootstrap over samples of ``mean(a − b)``: mean and the 2.5 / 97.5 percentiles.

    Args:
        a, b: per-sample scores of two methods on the same samples (same order).
        reps: bootstrap resamples; seed: the resampling generator's seed.
    """
    d = (a.double() - b.double()).reshape(-1)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, d.numel(), (reps, d.numel()), generator=g)
    boots = d[idx].mean(1)
    return {"mean": float(d.mean()), "lo": float(boots.quantile(0.025)), "hi": float(boots.quantile(0.975)),
            "n": d.numel()}


def frechet_distance(a: Any, b: Any) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` and ``b`` (numpy ``[N, D]``)."""
    import numpy as np
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # near-singular products at small sample counts are expected
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eps = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
