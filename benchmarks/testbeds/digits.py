"""The learned-model testbed: the pack's embedded MNIST digits model, scored by a held-out classifier.

The model is loaded by the pack's own ``DiffIERDemoModelLoader`` node; every run is one KSampler batch with an equal
number of samples per digit. The classifier (``training/data/digits.py``, trained apart from the diffusion model) gives
every sample 64-d penultimate features and class log-probabilities. Metrics of a cell (every seed pooled) against
the 1,000-image test split:

* quality: KID (unbiased MMD², cubic polynomial kernel) of the features — the primary metric, unbiased at any sample
  count; FD∞ (FD extrapolated in 1/N) and FD at the phase's fixed sample count next to it;
* adherence: the mean log-probability of the target class (it keeps moving where the accuracy has saturated);
* diversity: the mean feature distance between samples of the same target class (the test split's own value is in
  the JSON);
* the class accuracy and precision / recall / density / coverage (k = 5).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from .. import metrics
from ..evidence.records import Estimate, Layout, estimate
from .base import BedMetrics, BedSpec, Metric, PhaseSize, PRDCScores, SampledRun, flag_nonfinite

__all__ = ["MODEL_NAME", "DigitsSamples", "DigitsScores", "DigitsBed", "class_pair_distance"]

MODEL_NAME = "digits_diffusion.safetensors"
PRDC_NEAREST_K = 5
#: FD∞ replicates are computed on the first this many bootstrap resamples (each costs a handful of FDs)
FD_INFINITY_REPLICATES = 200


@dataclasses.dataclass
class DigitsSamples:
    """One KSampler batch: per sample the target digit, the classifier's features and log-probabilities."""

    labels: np.ndarray      # [n] int64
    features: np.ndarray    # [n, 64] float32
    log_probs: np.ndarray   # [n, 10] float64 (log-softmax of the logits in float64: no saturation at 0)
    finite: np.ndarray      # [n] bool


@dataclasses.dataclass
class DigitsScores(PRDCScores):
    """Every metric of a digits cell (estimates: value and 95 % bootstrap interval over seeds and samples).

    Args:
        kid: KID of the classifier features (scaled by :func:`benchmarks.metrics.kid_scale` of the test split) against
            the test split (↓, primary quality).
        fd_infinity: FD extrapolated to infinitely many samples (↓).
        fd: FD at ``samples`` samples (↓; biased by the sample count, comparable only at equal counts).
        target_log_prob: mean log-probability of the target digit (↑: follows the condition more).
        target_log_odds: mean log-odds of the target digit (↑; grows on where the probability has reached 1).
        accuracy: share classified as the target digit.
        within_class_diversity: mean feature distance between samples of one target digit.
        precision, recall, density, coverage: against the test split (k = 5), point values.
        nonfinite: samples that were not finite; samples: samples in the cell.
    """

    kid: Estimate
    fd_infinity: Estimate
    fd: float
    target_log_prob: Estimate
    target_log_odds: Estimate
    accuracy: Estimate
    within_class_diversity: Estimate


def class_pair_distance(features: np.ndarray, labels: np.ndarray, counts: np.ndarray | None = None
                        ) -> tuple[float, np.ndarray | None]:
    """Mean over classes of the mean distance between two different samples of that class, and its value on each
    resample of ``counts`` (None without)."""
    values, reps = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        d = metrics.euclidean_distances(features[idx], features[idx])
        values.append(metrics.pair_mean(d))
        if counts is not None:
            reps.append(metrics.weighted_pair_mean(d, counts[:, idx]))
    return float(np.mean(values)), (np.mean(reps, axis=0) if counts is not None else None)


class _Shared:
    """The booted harness, the model, the conditioning helpers and the classifier's test-split features."""

    def __init__(self, harness: Any = None) -> None:
        from training.data import digits as dd

        from ..harness import Harness

        self.h = harness or Harness()
        self.dm = self.h.pack.demo.models
        (self.model,) = self.h.run_node("DiffIERDemoModelLoader", model_name=MODEL_NAME)
        self.classifier = dd.load_classifier()
        split = dd.load_split()
        feats, _ = self.classifier.embed(split["x_test"])
        self.test_features = feats.numpy().astype(np.float64)
        self.test_labels = split["y_test"].numpy()
        self.kid_scale = metrics.kid_scale(self.test_features)
        scaled = self.test_features * self.kid_scale
        self.test_kernel_mean = metrics.pair_mean(metrics.polynomial_kernel(scaled, scaled))


class DigitsBed:
    """The evidence protocol's digits bed: one group, ``samples_per_seed`` digits per batch (10 classes).

    Args:
        sizes: ``{"tuning": PhaseSize, "test": PhaseSize}`` (samples per seed: a multiple of 10).
        harness: a booted harness to share (None: boot one).
    """

    name = "digits"
    groups = ["digits"]
    spec = BedSpec(
        "normal",
        BedMetrics(quality=Metric("kid", True, "KID (classifier features) ↓"),
                   secondary=Metric("fd_infinity", True, "FD∞ (classifier features) ↓"),
                   adherence=Metric("target_log_prob", False, "mean log p(target digit), held-out classifier ↑"),
                   diversity=Metric("within_class_diversity", None, "within-class feature distance")),
        DigitsSamples, DigitsScores)

    def __init__(self, sizes: dict[str, PhaseSize], harness: Any = None) -> None:
        for phase, size in sizes.items():
            if size.samples_per_seed < 10 or size.samples_per_seed % 10:
                raise ValueError(f"{phase} samples_per_seed must be a positive multiple of 10 (one per digit), "
                                 f"got {size.samples_per_seed}")
        self.sizes = sizes
        self.shared = _Shared(harness)
        self.h = self.shared.h

    def labels(self, n: int) -> torch.Tensor:
        return torch.arange(10).repeat_interleave(n // 10)

    def describe(self, phase: str) -> dict[str, Any]:
        diversity, _ = class_pair_distance(self.shared.test_features, self.shared.test_labels)
        return {"model": MODEL_NAME, "scheduler": self.spec.scheduler, "reference": "test split (1000 images)",
                "fd_samples": len(self.sizes[phase].seeds) * self.sizes[phase].samples_per_seed,
                "fd_infinity": "FD of random subsets at 5 sizes from N/4 to N (evenly spaced in 1/N), 3 draws each, "
                               "linear fit in 1/N, intercept",
                "kid": "unbiased MMD², kernel (x·y/64 + 1)³ on the features times "
                       f"{self.shared.kid_scale:.4g} (the test split's mean squared norm becomes 64)",
                "prdc_nearest_k": PRDC_NEAREST_K,
                "reference_within_class_diversity": diversity}

    def sample(self, group: str, patches: tuple, omega: float, seed: int, sampler: str, steps: int,
               phase: str) -> SampledRun:
        """One KSampler batch of ``patches``: the classifier features and log-probabilities of the samples."""
        from ..harness import Method

        sh = self.shared
        labels = self.labels(self.sizes[phase].samples_per_seed)
        inner = sh.model.model
        positive = sh.dm.digits_conditioning(inner, labels.tolist())
        negative = sh.dm.digits_conditioning(inner, sh.dm.NULL_CLASS, batch=labels.numel())
        res = self.h.sample(sh.model, Method("job", patches), positive=positive, negative=negative,
                            latent=sh.dm.digits_empty_latent(labels.numel()), seed=seed, steps=steps, cfg=omega,
                            sampler=sampler, scheduler=self.spec.scheduler)
        samples, finite = flag_nonfinite(res.samples)
        feats, _ = sh.classifier.embed(sh.dm.digits_to_unit(samples))
        with torch.no_grad():
            logits = torch.nn.functional.linear(feats.double(), sh.classifier.head.weight.double(),
                                                sh.classifier.head.bias.double())
        record = DigitsSamples(labels.numpy(), feats.numpy().astype(np.float32),
                               torch.log_softmax(logits, dim=-1).numpy(), finite)
        return SampledRun(record, res.evals_per_sample, res.calls, res.wall_s, res.cpu_s)

    def layout(self, phase: str) -> Layout:
        size = self.sizes[phase]
        labels = self.labels(size.samples_per_seed).numpy()
        return Layout(np.repeat(np.arange(len(size.seeds)), size.samples_per_seed), np.tile(labels, len(size.seeds)))

    def score(self, group: str, phase: str, records: list[DigitsSamples], counts: np.ndarray) -> DigitsScores:
        """Every metric of a cell from its seeds' records, with replicates on the resamples ``counts``."""
        sh = self.shared
        labels = np.concatenate([r.labels for r in records])
        feats = np.concatenate([r.features for r in records]).astype(np.float64)
        log_probs = np.concatenate([r.log_probs for r in records]).astype(np.float64)
        total = counts.sum(1)
        scaled = feats * sh.kid_scale
        within = metrics.polynomial_kernel(scaled, scaled)
        to_ref = metrics.polynomial_kernel(scaled, sh.test_features * sh.kid_scale).mean(1)
        kid_reps = metrics.weighted_pair_mean(within, counts) + sh.test_kernel_mean - 2 * (counts @ to_ref) / total
        kid = metrics.pair_mean(within) + sh.test_kernel_mean - 2 * to_ref.mean()
        fd_inf = metrics.fd_infinity(feats, sh.test_features)
        fd_reps = np.full(counts.shape[0], np.nan)
        for r in range(min(FD_INFINITY_REPLICATES, counts.shape[0])):
            resampled = np.repeat(feats, counts[r].astype(int), axis=0)
            fd_reps[r] = metrics.fd_infinity(resampled, sh.test_features, sizes=fd_inf.sizes, draws=1, seed=r
                                             ).fd_infinity
        target = log_probs[np.arange(labels.size), labels]
        log_odds = metrics.target_log_odds(log_probs, labels)
        correct = (log_probs.argmax(1) == labels).astype(np.float64)
        diversity, diversity_reps = class_pair_distance(feats, labels, counts)
        return DigitsScores(
            kid=estimate(kid, kid_reps), fd_infinity=estimate(fd_inf.fd_infinity, fd_reps),
            fd=metrics.frechet_distance(feats, sh.test_features),
            target_log_prob=estimate(float(target.mean()), counts @ target / total),
            target_log_odds=estimate(float(log_odds.mean()), counts @ log_odds / total),
            accuracy=estimate(float(correct.mean()), counts @ correct / total),
            within_class_diversity=estimate(diversity, diversity_reps),
            **metrics.prdc(sh.test_features, feats, PRDC_NEAREST_K),
            nonfinite=int(sum((~r.finite).sum() for r in records)), samples=int(labels.size))
