"""What every evidence testbed ("bed") shares: the metric descriptors, the phase sizes, a sampling run's result and
the per-sample records' storage as plain arrays.

A bed (:mod:`.known_score`, :mod:`.digits`, :mod:`.sr`) offers:

* ``name``, ``groups`` (known scores: the error regimes), ``scheduler``;
* ``spec``: a :class:`BedSpec`: its KSampler scheduler; its metrics (:class:`BedMetrics`, naming fields of its
  scores record: ``quality``, the primary quality metric used for selection and claims, ``secondary``, a second
  quality metric or None, ``adherence`` and ``diversity``); its per-sample record type (a dataclass of numpy arrays,
  :func:`record_arrays`) and its scores record type (fields: :class:`~benchmarks.evidence.records.Estimate`,
  ``float`` or ``int``);
* ``sample(group, patches, omega, seed, sampler, steps, phase) -> SampledRun``: one KSampler batch;
* ``layout(phase) -> Layout``: how the samples of a cell are laid out for resampling;
* ``score(group, phase, records, counts) -> scores``: every metric of a cell, with bootstrap replicates on the
  resamples ``counts`` (``[R, n]`` multiplicities, the same for every cell of the phase, so differences are paired);
* ``describe(phase) -> dict``: its configuration and reference rows for the JSON.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["Metric", "BedMetrics", "BedSpec", "SampleCounts", "PRDCScores", "PhaseSize", "SampledRun", "record_arrays",
           "record_from_arrays", "flag_nonfinite"]


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric of a bed's scores record.

    Args:
        field: the field name in the scores record (an :class:`~benchmarks.evidence.records.Estimate`).
        lower_is_better: its direction (None: neither, e.g. a diversity).
        label: axis and table label.
    """

    field: str
    lower_is_better: bool | None
    label: str


@dataclasses.dataclass(frozen=True)
class BedMetrics:
    """What a bed's quality (primary, and secondary or None), adherence and diversity are."""

    quality: Metric
    secondary: Metric | None
    adherence: Metric
    diversity: Metric


@dataclasses.dataclass(frozen=True)
class BedSpec:
    """A bed's scheduler, metrics, per-sample record type and scores record type."""

    scheduler: str
    metrics: BedMetrics
    samples_type: type
    scores_type: type


@dataclasses.dataclass
class SampleCounts:
    """The fields every scores record ends with: samples that were not finite, and samples in the cell."""

    nonfinite: int
    samples: int


@dataclasses.dataclass
class PRDCScores(SampleCounts):
    """Precision, recall, density and coverage against the reference (point values), with the sample counts."""

    precision: float
    recall: float
    density: float
    coverage: float


@dataclasses.dataclass(frozen=True)
class PhaseSize:
    """The sampling of one phase (tuning or test) of a testbed.

    Args:
        seeds: noise seeds (one KSampler batch per seed and cell).
        samples_per_seed: samples of each batch (digits, known scores; super-resolution: images per photo).
        reference_seed: generator seed of the phase's reference data (known scores: the exact samples; SR photos:
            the patch positions).
    """

    seeds: tuple[int, ...]
    samples_per_seed: int
    reference_seed: int = 0


@dataclasses.dataclass
class SampledRun:
    """One KSampler batch: the bed's per-sample record and what it cost.

    Args:
        record: the bed's ``samples_type`` instance.
        evals_per_sample: model rows per sample; calls: sequential model calls; wall_s, cpu_s: its time.
    """

    record: Any
    evals_per_sample: float
    calls: int
    wall_s: float
    cpu_s: float

    def cost(self) -> dict[str, float]:
        return {"evals_per_sample": self.evals_per_sample, "calls": self.calls, "wall_s": self.wall_s,
                "cpu_s": self.cpu_s}


def record_arrays(record: Any) -> dict[str, np.ndarray]:
    """A per-sample record (a dataclass whose fields are numpy arrays) as ``{field: array}``."""
    return {f.name: np.asarray(getattr(record, f.name)) for f in dataclasses.fields(record)}


def record_from_arrays(record_type: type, arrays: Any) -> Any:
    """The inverse of :func:`record_arrays`."""
    return record_type(**{f.name: np.asarray(arrays[f.name]) for f in dataclasses.fields(record_type)})


def flag_nonfinite(samples: Any) -> tuple[Any, np.ndarray]:
    """``(samples with non-finite values replaced, finite flags [n])`` of a torch batch ``[n, ...]``: NaN → 0,
    ±Inf → ±1e6, so a diverged sample scores terribly instead of poisoning a whole cell."""
    import torch

    finite = torch.isfinite(samples).reshape(samples.shape[0], -1).all(dim=1)
    return torch.nan_to_num(samples, nan=0.0, posinf=1e6, neginf=-1e6), finite.numpy()
