"""The known-score testbed: a class-conditional GMM with exact scores, sampled through an imperfect model.

The data are a class-conditional Gaussian mixture (:mod:`.gmm`); the "trained" model is an imperfect copy of it
(blurred, partly unconditional conditional branch, one copy per error regime of :data:`REGIMES`) wrapped as a real
ComfyUI EPS model (:mod:`.comfy_model`). Every method runs through ComfyUI's KSampler with its real patch nodes
(:mod:`benchmarks.harness`). Score: class-wise energy distance of the generated samples to exact samples, lower is
better; a seed fixes the initial noise and the reference samples (common random numbers), so differences between
methods are paired per sample.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .. import metrics as M
from . import comfy_model as CM
from .gmm import GMM, make_gmm

__all__ = ["REGIMES", "Settings", "Testbed", "KnownScoreBed", "exact_gap"]

#: imperfect-model settings (``GMM.blurred`` keyword arguments) per error regime
REGIMES: dict[str, dict[str, float]] = {
    # variances ×2 plus 0.03 in every dimension, 30 % of the conditional is unconditional:
    # samples are too spread at every ω; CFG's sweet spot trades class accuracy against extra spread.
    "overspread": {"var_scale": 2.0, "var_add": 0.03, "mean_shrink": 0.0, "leak": 0.3},
    # exact variances, component means pulled 30 % toward the class mean, 50 % unconditional leak:
    # low ω mixes classes, high ω collapses the within-class diversity (spread ratio < 1, recall falls).
    "collapse": {"var_scale": 1.0, "var_add": 0.0, "mean_shrink": 0.3, "leak": 0.5},
}
#: the regime of quick (CI) runs
QUICK_REGIMES = ("overspread",)


@dataclasses.dataclass
class Settings:
    """The mixture, the models' noise range and the sampling.

    Args:
        samples: generated (and reference) samples per run, classes round-robin.
        steps: sampling steps; sampler, scheduler: KSampler's.
        regimes: the error regimes (groups) to build models for.
    """

    samples: int = 320
    steps: int = 16
    sampler: str = "euler"
    scheduler: str = "karras"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    latent_shape: tuple[int, int, int] = (4, 8, 8)
    num_classes: int = 4
    comps_per_class: int = 3
    gmm_seed: int = 0
    regimes: tuple[str, ...] = tuple(REGIMES)


class Testbed:
    """The true mixture, one imperfect ComfyUI model per regime, and the exact-model patcher."""

    def __init__(self, settings: Settings) -> None:
        for r in settings.regimes:
            if r not in REGIMES:
                raise ValueError(f"regime must be one of {sorted(REGIMES)}, got {r!r}")
        self.settings = settings
        dim = math.prod(settings.latent_shape)
        self.truth: GMM = make_gmm(num_classes=settings.num_classes, comps_per_class=settings.comps_per_class,
                                   dim=dim, seed=settings.gmm_seed)
        kw = {"latent_shape": settings.latent_shape, "sigma_min": settings.sigma_min,
              "sigma_max": settings.sigma_max}
        self.models = {r: CM.make_patcher(self.truth.blurred(**REGIMES[r]), **kw) for r in settings.regimes}
        self.exact = CM.make_patcher(self.truth, **kw)
        self.labels = torch.arange(settings.samples) % settings.num_classes

    def reference(self, seed: int) -> torch.Tensor:
        """Exact samples of the mixture for ``seed`` (one per generated sample, same labels)."""
        return self.truth.sample(self.labels, torch.Generator().manual_seed(10_000 + seed))


def _boot_ed(cell: dict, w: torch.Tensor) -> torch.Tensor:
    """Energy distance (without the reference-only term) of resampled generated sets; ``w``: counts [B, m]."""
    m = w.shape[1]
    xy = w @ cell["dxy"] / m
    # pairs of resampled positions that are distinct samples (a duplicate pair is no pair)
    xx = ((w @ cell["dxx"]) * w).sum(1) / (m * m - w.square().sum(1))
    return 2 * xy - xx


class KnownScoreBed:
    """The tuning protocol's bed (:mod:`benchmarks.tuning`): groups are the error regimes.

    Args:
        samples: samples per run; steps: Euler steps.
        regimes: the groups (None: :data:`QUICK_REGIMES` for ``quick``, every regime otherwise).
        quick: a CI run (its default regimes).
        harness: a booted harness to share (None: boot one).
    """

    name = "known_score"
    set_lower = True
    aggregate = "difference"
    score_label = "class-wise energy distance ↓"

    def __init__(self, samples: int, steps: int, regimes: list[str] | None = None, quick: bool = False,
                 harness: Any = None) -> None:
        from ..harness import Harness

        regimes = tuple(regimes) if regimes else (QUICK_REGIMES if quick else tuple(REGIMES))
        self.settings = Settings(samples=samples, steps=steps, regimes=regimes)
        self.h = harness or Harness()
        self.bed = Testbed(self.settings)
        self.groups = list(regimes)
        self.base_steps = steps
        self.labels = self.bed.labels
        self._ref: dict[int, torch.Tensor] = {}

    def config(self) -> dict[str, Any]:
        s = self.settings
        return {"samples": s.samples, "steps": s.steps, "sampler": s.sampler,
                "scheduler": s.scheduler, "latent_shape": list(s.latent_shape), "num_classes": s.num_classes,
                "regimes": {r: REGIMES[r] for r in s.regimes}}

    def reference(self, seed: int) -> torch.Tensor:
        if seed not in self._ref:
            self._ref[seed] = self.bed.reference(seed)
        return self._ref[seed]

    def run(self, group: str, job: Any, omega: float, seed: int, steps: int) -> dict[str, Any]:
        """One KSampler batch of ``job`` in regime ``group``, scored against the exact samples of ``seed``."""
        s = self.settings
        n, k = s.samples, s.num_classes
        res = self.h.sample(self.bed.models[group], job.method(), positive=CM.positive(self.labels, k),
                            negative=CM.negative(n, k), latent=CM.latent(n, s.latent_shape), seed=seed, steps=steps,
                            cfg=omega, sampler=job.sampler or s.sampler, scheduler=s.scheduler)
        x = res.samples.reshape(n, -1).double()
        finite = torch.isfinite(x).all(dim=1)
        x = torch.where(finite.unsqueeze(1), x, torch.full_like(x, 1e6))   # a diverged sample scores terribly
        ref = self.reference(seed).double()
        cells, ed = [], 0.0
        for c in range(k):
            sel = self.labels == c
            xc, yc = x[sel], ref[sel]
            dxy = torch.cdist(xc, yc).mean(1)
            dxx = torch.cdist(xc, xc)
            m, mr = xc.shape[0], yc.shape[0]
            yy = float(torch.cdist(yc, yc).sum() / (mr * (mr - 1)))
            cells.append({"dxy": dxy, "dxx": dxx, "yy": yy})
            ed += float(2 * dxy.mean() - dxx.sum() / (m * (m - 1)) - yy)
        acc = float((self.bed.truth.classify(x.float()) == self.labels).float().mean())
        return {"set": ed / k, "accuracy": acc, "nonfinite": int((~finite).sum()), "evals": res.evals_per_sample,
                "wall_s": res.wall_s, "cells": cells}

    def set_bootstrap(self, runs_a: list[dict], runs_b: list[dict], reps: int) -> dict[str, float]:
        """Paired bootstrap over generated samples (same indices for both methods, within each seed × class)."""
        g = torch.Generator().manual_seed(1)
        total = torch.zeros(reps, dtype=torch.float64)
        count = 0
        for ra, rb in zip(runs_a, runs_b, strict=True):
            for ca, cb in zip(ra["cells"], rb["cells"], strict=True):
                m = ca["dxy"].numel()
                idx = torch.randint(0, m, (reps, m), generator=g)
                ones = torch.ones(reps, m, dtype=torch.float64)
                w = torch.zeros(reps, m, dtype=torch.float64).scatter_add_(1, idx, ones)
                total += _boot_ed(ca, w) - _boot_ed(cb, w)
                count += 1
        boots = total / count
        point = sum(ra["set"] - rb["set"] for ra, rb in zip(runs_a, runs_b, strict=True)) / len(runs_a)
        return {"mean": point, "lo": float(boots.quantile(0.025)), "hi": float(boots.quantile(0.975))}

    def pooled_set(self, runs: list[dict]) -> None:
        return None


def exact_gap(bed: KnownScoreBed, job: Any, omega: float, seed: int, exact_model: bool = False) -> list[float]:
    """The paper's Eq. 8 gap (ε-space) per sampler call along ``job``'s own trajectory in regime ``bed.groups[0]``.

    Args:
        bed: a known-score bed; job: the method; omega: guidance weight; seed: noise seed.
        exact_model: sample the exact mixture instead of the imperfect model (its gap is zero up to float error).
    """
    s = bed.settings
    n, k = s.samples, s.num_classes
    model = bed.bed.exact if exact_model else bed.bed.models[bed.groups[0]]
    res = bed.h.sample(model, job.method(), positive=CM.positive(bed.labels, k), negative=CM.negative(n, k),
                       latent=CM.latent(n, s.latent_shape), seed=seed, steps=bed.base_steps, cfg=omega,
                       sampler=s.sampler, scheduler=s.scheduler, record=True)
    gaps = []
    for rec in res.trajectory:
        xt = rec["x"].reshape(n, -1).float()
        exact = bed.bed.truth.denoise_rows(xt, torch.full((n,), rec["sigma"]), bed.labels)
        gaps.append(M.denoiser_gap(rec["denoised"], exact, rec["sigma"])["eps"])
    return gaps
