"""Typed records of the evidence protocol: what a sampling run cost, how its samples are laid out for resampling,
and an estimate with its bootstrap replicates.

The per-sample data of each testbed (features, log-probabilities, samples, per-image PSNR ...) and its scores are
the testbed's own records (``benchmarks.testbeds``); these are the ones every testbed shares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Cost", "Estimate", "Layout", "resample_counts", "estimate", "to_json"]


@dataclasses.dataclass(frozen=True)
class Cost:
    """What a cell's sampling cost, per seed averaged (sums for the times).

    Args:
        steps: sampler steps.
        evals_per_sample: model rows evaluated per sample (cond and uncond count one each).
        calls_per_image: sequential model calls (``APPLY_MODEL`` wrapper invocations) per run; every call carries
            every image of the batch, so this is what one image waits for at batch 1.
        calls_per_step: ``calls_per_image / steps``.
        wall_s: summed wall time of the cell's runs; cpu_s: summed CPU time of the process during them.
    """

    steps: int
    evals_per_sample: float
    calls_per_image: float
    calls_per_step: float
    wall_s: float
    cpu_s: float

    @staticmethod
    def combine(steps: int, runs: Sequence[dict[str, float]]) -> Cost:
        """The cost of a cell from its runs' ``{"evals_per_sample", "calls", "wall_s", "cpu_s"}``."""
        evals = float(np.mean([r["evals_per_sample"] for r in runs]))
        calls = float(np.mean([r["calls"] for r in runs]))
        return Cost(steps, evals, calls, calls / steps, float(sum(r["wall_s"] for r in runs)),
                    float(sum(r["cpu_s"] for r in runs)))


@dataclasses.dataclass
class Estimate:
    """A score with its 95 % bootstrap interval (percentiles of the replicates).

    Args:
        value: the score on the full data.
        lo, hi: 2.5 and 97.5 percentiles of ``replicates``.
        replicates: the score on each bootstrap resample (the same resamples for every cell of a testbed's phase,
            so that differences between cells are paired); not written to JSON.
    """

    value: float
    lo: float
    hi: float
    replicates: np.ndarray = dataclasses.field(repr=False, metadata={"json": False})


def estimate(value: float, replicates: np.ndarray) -> Estimate:
    """An :class:`Estimate` from a value and its replicates (non-finite replicates are left out of the interval)."""
    reps = np.asarray(replicates, dtype=np.float64)
    finite = reps[np.isfinite(reps)]
    lo, hi = (np.quantile(finite, [0.025, 0.975]) if finite.size else (np.nan, np.nan))
    return Estimate(float(value), float(lo), float(hi), reps)


@dataclasses.dataclass(frozen=True)
class Layout:
    """How the samples of every cell of one testbed phase are laid out (the same for every cell).

    Args:
        seed_of: ``[n]`` index of the seed (0..S-1) each sample came from.
        unit_of: ``[n]`` the resampling unit inside a seed: the target class (digits, known scores: resampled within
            class, so every resample keeps the class balance) or the image (super-resolution).
        cluster_of_unit: for super-resolution, the photo of each image (images are resampled within photos, photos
            are resampled); None elsewhere.
        crossed: True for super-resolution, where each image is sampled once per seed (images and seeds are resampled
            independently, a sample's count is the product); False where seeds hold disjoint samples.
    """

    seed_of: np.ndarray
    unit_of: np.ndarray
    cluster_of_unit: np.ndarray | None = None
    crossed: bool = False


def _counts_within(groups: np.ndarray, rng: np.random.Generator, members: dict[int, np.ndarray],
                   n_total: int) -> np.ndarray:
    """One resample: every drawn group contributes a with-replacement draw of its members."""
    counts = np.zeros(n_total)
    for group in groups:
        idx = members[int(group)]
        counts += np.bincount(rng.choice(idx, idx.size, replace=True), minlength=n_total)
    return counts


def resample_counts(layout: Layout, reps: int, seed: int = 0) -> np.ndarray:
    """``[reps, n]`` multiplicities of the samples in ``reps`` hierarchical bootstrap resamples.

    Seeds hold disjoint samples (``crossed`` False): seeds are drawn with replacement, and inside every drawn seed
    each unit (class) is resampled with replacement. Crossed (super-resolution): seeds are drawn with replacement;
    independently, photos (``cluster_of_unit``) are drawn with replacement and images inside each drawn photo with
    replacement (images directly when there are no photos); a sample's count is its image count × its seed count.
    """
    rng = np.random.default_rng(seed)
    n = layout.seed_of.size
    seeds = np.unique(layout.seed_of)
    out = np.zeros((reps, n))
    if not layout.crossed:
        strata = {int(s): [np.flatnonzero((layout.seed_of == s) & (layout.unit_of == u))
                           for u in np.unique(layout.unit_of[layout.seed_of == s])] for s in seeds}
        for r in range(reps):
            for s in rng.choice(seeds, seeds.size, replace=True):
                for idx in strata[int(s)]:
                    out[r] += np.bincount(rng.choice(idx, idx.size, replace=True), minlength=n)
        return out
    units = np.unique(layout.unit_of)
    clusters = layout.cluster_of_unit if layout.cluster_of_unit is not None else units
    cluster_ids = np.unique(clusters[units])
    members = {int(c): units[clusters[units] == c] for c in cluster_ids}
    for r in range(reps):
        unit_counts = _counts_within(rng.choice(cluster_ids, cluster_ids.size, replace=True), rng, members,
                                     int(units.max()) + 1)
        seed_counts = np.bincount(rng.choice(seeds, seeds.size, replace=True), minlength=int(seeds.max()) + 1)
        out[r] = unit_counts[layout.unit_of] * seed_counts[layout.seed_of]
    return out


def to_json(record: Any) -> Any:
    """A record (dataclass, possibly nested, numpy scalars inside) as JSON data, leaving out fields marked
    ``metadata={"json": False}``."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: to_json(getattr(record, f.name)) for f in dataclasses.fields(record)
                if f.metadata.get("json", True)}
    if isinstance(record, dict):
        return {str(k): to_json(v) for k, v in record.items()}
    if isinstance(record, (list, tuple)):
        return [to_json(v) for v in record]
    if isinstance(record, np.generic):
        return record.item()
    if isinstance(record, np.ndarray):
        return record.tolist()
    return record
