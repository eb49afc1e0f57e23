"""The known-score testbed: a class-conditional GMM with exact scores, sampled through an imperfect model.

The data are a class-conditional Gaussian mixture (:mod:`.gmm`); the "trained" model is an imperfect copy of it
(blurred, partly unconditional conditional branch, one copy per error regime of :data:`REGIMES`) wrapped as a real
ComfyUI EPS model (:mod:`.comfy_model`). Every method runs through ComfyUI's KSampler with its real patch nodes
(:mod:`benchmarks.harness`).

Metrics of a cell (every seed's samples pooled; the reference is a fixed set of exact samples per class, drawn once
per phase and shared by every cell, so it adds the same constant to every cell's energy distance):

* quality: the class-wise energy distance ``2E|X−Y| − E|X−X'| − E|Y−Y'|`` to the exact samples (unbiased
  U-statistics; its expectation is ≥ 0, a single estimate can fall below 0: docs/evidence/protocol.md explains the
  negative values of the earlier runs), averaged over classes;
* adherence: the mean log-odds of the target class under the exact mixture, ``log p(c | x) − log(1 − p(c | x))``
  (the mean log posterior ``log p(c | x)`` is recorded too; it reaches 0 in float64 from ω ≈ 3, where the classes
  no longer overlap, while the log-odds keep growing);
* diversity: the within-class spread ``E|X−X'| / E|Y−Y'|`` (1: as spread as the data, < 1 collapsed);
* the Bayes classifier's accuracy and precision / recall / density / coverage against exact samples.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from .. import metrics
from ..evidence.records import Estimate, Layout, estimate
from . import comfy_model
from .base import BedMetrics, BedSpec, Metric, PhaseSize, PRDCScores, SampledRun, flag_nonfinite
from .gmm import GMM, make_gmm

__all__ = ["REGIMES", "EXACT", "Settings", "Testbed", "KnownScoreSamples", "KnownScoreScores", "KnownScoreBed",
           "energy_distance_terms", "exact_gap"]

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
#: the group name that samples the exact mixture (the exact-score model: a check of the estimator, not a regime)
EXACT = "exact"
PRDC_REFERENCE_PER_CLASS = 500
PRDC_NEAREST_K = 5


@dataclasses.dataclass
class Settings:
    """The mixture and the models' noise range.

    Args:
        latent_shape: ``(C, H, W)`` of the latent, ``C·H·W`` dimensions of the mixture.
        num_classes, comps_per_class, gmm_seed: the mixture (:func:`.gmm.make_gmm`).
        sigma_min, sigma_max: the models' noise range.
        regimes: the error regimes (groups) to build models for.
    """

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
        self.models = {r: comfy_model.make_patcher(self.truth.blurred(**REGIMES[r]), **kw) for r in settings.regimes}
        self.exact = comfy_model.make_patcher(self.truth, **kw)


@dataclasses.dataclass
class KnownScoreSamples:
    """One KSampler batch: per sample its class, the sample and whether it was finite (else replaced by ±1e6)."""

    labels: np.ndarray      # [n] int64
    samples: np.ndarray     # [n, D] float32
    finite: np.ndarray      # [n] bool


@dataclasses.dataclass
class KnownScoreScores(PRDCScores):
    """Every metric of a known-score cell (estimates: value and 95 % bootstrap interval over seeds and samples).

    Args:
        energy_distance: class-wise energy distance to the exact samples (↓).
        target_log_odds: mean ``log p(target | x) − log(1 − p(target | x))`` under the exact mixture (↑ = follows the
            condition more; the adherence).
        target_log_posterior: mean ``log p(target | x)`` (0 once the classes no longer overlap).
        within_class_spread: ``E|X−X'| / E|Y−Y'|`` within class, averaged over classes (1 = the data's spread).
        accuracy: share of samples the exact Bayes classifier puts in their target class.
        precision, recall, density, coverage: against exact samples (k = 5), point values.
        nonfinite: samples that were not finite.
        samples: samples in the cell.
    """

    energy_distance: Estimate
    target_log_odds: Estimate
    target_log_posterior: Estimate
    within_class_spread: Estimate
    accuracy: Estimate


@dataclasses.dataclass(frozen=True)
class Reference:
    """Exact samples per class and their within-class mean distance ``E|Y−Y'|`` (U-statistic)."""

    per_class: tuple[torch.Tensor, ...]
    pair_distance: tuple[float, ...]
    prdc_set: np.ndarray


def energy_distance_terms(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(mean distance of each x to the set y [n], pairwise distances within x [n, n])``, float64."""
    x, y = x.double(), y.double()
    return torch.cdist(x, y).mean(1).numpy(), torch.cdist(x, x).numpy()


class KnownScoreBed:
    """The evidence protocol's known-score bed: groups are the error regimes.

    Args:
        sizes: ``{"tuning": PhaseSize, "test": PhaseSize}``.
        regimes: the groups (None: every regime).
        reference_per_class: exact reference samples per class and phase.
        harness: a booted harness to share (None: boot one).
    """

    name = "known_score"
    spec = BedSpec(
        "karras",
        BedMetrics(quality=Metric("energy_distance", True, "class-wise energy distance to exact samples ↓"),
                   secondary=None,
                   adherence=Metric("target_log_odds", False, "mean log-odds of the target class, exact mixture ↑"),
                   diversity=Metric("within_class_spread", None, "within-class spread / the data's")),
        KnownScoreSamples, KnownScoreScores)

    def __init__(self, sizes: dict[str, PhaseSize], regimes: list[str] | None = None,
                 reference_per_class: int = 2000, harness: Any = None) -> None:
        from ..harness import Harness

        self.sizes = sizes
        self.settings = Settings(regimes=tuple(regimes) if regimes else tuple(REGIMES))
        self.h = harness or Harness()
        self.bed = Testbed(self.settings)
        self.groups = list(self.settings.regimes)
        self.reference_per_class = reference_per_class
        self._references: dict[str, Reference] = {}

    def labels(self, n: int) -> torch.Tensor:
        """The target classes of a batch of ``n``: round-robin."""
        return torch.arange(n) % self.settings.num_classes

    def describe(self, phase: str) -> dict[str, Any]:
        s = self.settings
        return {"latent_shape": list(s.latent_shape), "num_classes": s.num_classes, "dimensions": self.bed.truth.dim,
                "regimes": {r: REGIMES[r] for r in s.regimes}, "scheduler": self.spec.scheduler,
                "reference": f"{self.reference_per_class} exact samples per class, generator seed "
                             f"{self.sizes[phase].reference_seed}",
                "prdc": f"k = {PRDC_NEAREST_K}, against the first "
                        f"{min(PRDC_REFERENCE_PER_CLASS, self.reference_per_class)} reference samples of each class"}

    def sample(self, group: str, patches: tuple, omega: float, seed: int, sampler: str, steps: int,
               phase: str) -> SampledRun:
        """One KSampler batch of ``patches`` in regime ``group`` (:data:`EXACT`: the exact mixture itself)."""
        from ..harness import Method

        n, k = self.sizes[phase].samples_per_seed, self.settings.num_classes
        labels = self.labels(n)
        model = self.bed.exact if group == EXACT else self.bed.models[group]
        res = self.h.sample(model, Method("job", patches), positive=comfy_model.positive(labels, k),
                            negative=comfy_model.negative(n, k),
                            latent=comfy_model.latent(n, self.settings.latent_shape), seed=seed, steps=steps,
                            cfg=omega, sampler=sampler, scheduler=self.spec.scheduler)
        x, finite = flag_nonfinite(res.samples.reshape(n, -1).float())
        record = KnownScoreSamples(labels.numpy(), x.numpy(), finite)
        return SampledRun(record, res.evals_per_sample, res.calls, res.wall_s, res.cpu_s)

    def layout(self, phase: str) -> Layout:
        size = self.sizes[phase]
        labels = self.labels(size.samples_per_seed).numpy()
        return Layout(np.repeat(np.arange(len(size.seeds)), size.samples_per_seed), np.tile(labels, len(size.seeds)))

    def reference(self, phase: str) -> Reference:
        """The phase's exact samples (:attr:`reference_per_class` per class) and their pair distances (cached)."""
        if phase not in self._references:
            self._references[phase] = self._draw_reference(phase)
        return self._references[phase]

    def _draw_reference(self, phase: str) -> Reference:
        k, m = self.settings.num_classes, self.reference_per_class
        g = torch.Generator().manual_seed(self.sizes[phase].reference_seed)
        per_class = tuple(self.bed.truth.sample(torch.full((m,), c), g) for c in range(k))
        pair = tuple(metrics.pair_mean(torch.cdist(y.double(), y.double()).numpy()) for y in per_class)
        prdc_set = torch.cat([y[:PRDC_REFERENCE_PER_CLASS] for y in per_class]).numpy()
        return Reference(per_class, pair, prdc_set)

    def score(self, group: str, phase: str, records: list[KnownScoreSamples], counts: np.ndarray) -> KnownScoreScores:
        """Every metric of a cell from its seeds' records, with replicates on the resamples ``counts``."""
        labels = np.concatenate([r.labels for r in records])
        x = torch.from_numpy(np.concatenate([r.samples for r in records]))
        ref = self.reference(phase)
        energy, energy_reps, spread, spread_reps = [], [], [], []
        for c, y in enumerate(ref.per_class):
            idx = np.flatnonzero(labels == c)
            to_ref, within = energy_distance_terms(x[idx], y)
            w = counts[:, idx]
            yy = ref.pair_distance[c]
            xx = metrics.pair_mean(within)
            xx_reps = metrics.weighted_pair_mean(within, w)
            energy.append(2 * to_ref.mean() - xx - yy)
            energy_reps.append(2 * (w @ to_ref) / w.sum(1) - xx_reps - yy)
            spread.append(xx / yy)
            spread_reps.append(xx_reps / yy)
        log_post = self.bed.truth.class_log_posterior(x.double()).numpy()
        target = log_post[np.arange(labels.size), labels]
        log_odds = metrics.target_log_odds(log_post, labels)
        correct = (log_post.argmax(1) == labels).astype(np.float64)
        total = counts.sum(1)
        quality = metrics.prdc(ref.prdc_set, x.numpy(), PRDC_NEAREST_K)
        return KnownScoreScores(
            energy_distance=estimate(float(np.mean(energy)), np.mean(energy_reps, axis=0)),
            target_log_odds=estimate(float(log_odds.mean()), counts @ log_odds / total),
            target_log_posterior=estimate(float(target.mean()), counts @ target / total),
            within_class_spread=estimate(float(np.mean(spread)), np.mean(spread_reps, axis=0)),
            accuracy=estimate(float(correct.mean()), counts @ correct / total),
            nonfinite=int(sum((~r.finite).sum() for r in records)), samples=int(labels.size), **quality)


def exact_gap(bed: KnownScoreBed, patches: tuple, omega: float, seed: int, samples: int, steps: int,
              exact_model: bool = False) -> list[float]:
    """The paper's Eq. 8 gap (ε-space) per sampler call along ``patches``' own Euler trajectory in ``bed.groups[0]``.

    Args:
        bed: a known-score bed; patches: the method's patch nodes; omega: guidance weight; seed: noise seed;
        samples: batch size; steps: Euler steps.
        exact_model: sample the exact mixture instead of the imperfect model (its gap is zero up to float error).
    """
    from ..harness import Method

    k = bed.settings.num_classes
    labels = bed.labels(samples)
    model = bed.bed.exact if exact_model else bed.bed.models[bed.groups[0]]
    res = bed.h.sample(model, Method("job", patches), positive=comfy_model.positive(labels, k),
                       negative=comfy_model.negative(samples, k),
                       latent=comfy_model.latent(samples, bed.settings.latent_shape), seed=seed, steps=steps,
                       cfg=omega, sampler="euler", scheduler=bed.spec.scheduler, record=True)
    gaps = []
    for rec in res.trajectory:
        xt = rec["x"].reshape(samples, -1).float()
        exact = bed.bed.truth.denoise_rows(xt, torch.full((samples,), rec["sigma"]), labels)
        gaps.append(metrics.denoiser_gap(rec["denoised"], exact, rec["sigma"])["eps"])
    return gaps
