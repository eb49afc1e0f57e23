"""Running and scoring cells: a job at one ω on every seed of a phase, cached run by run (:mod:`.store`).

A *cell* is one method (job) at one ω in one group, configuration and phase; its runs are one KSampler batch per
seed of the phase. Cells that sample the same thing (the same patch nodes, sampler, steps and ω: e.g. the tuned
DiffIER when the tuning chose the node defaults, or an equal-cost anchor whose steps equal the 30-step
configuration's) share their runs and scores. Commands can split their cells into shards of about equal cost
(:func:`shard`); every shard fills the same cache.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .protocol import Job
from .records import Cost, resample_counts
from .store import RUN_FORMAT, SCORING_VERSION, Store, key_of

__all__ = ["CellSpec", "CellResult", "Engine", "shard", "estimated_evals"]


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """One cell to run: a job at one ω in one group and phase."""

    group: str
    phase: str
    job: Job
    omega: float


@dataclasses.dataclass
class CellResult:
    """A finished cell: what it cost and its scores (the bed's scores record)."""

    spec: CellSpec
    cost: Cost
    scores: Any
    run_keys: tuple[str, ...]


def estimated_evals(job: Job, omega: float) -> float:
    """A rough evaluations-per-sample estimate of a job at ``omega`` (only to balance shards)."""
    steps = job.steps_at(omega)
    per_step = 1.0 if omega == 1.0 else 2.0
    for _node, inputs in job.setting.patches:
        if "max_iters" not in inputs or (omega == 1.0 and job.at_cfg_1 != "correct"):
            continue
        preset = inputs.get("preset")
        if preset == "balanced":
            per_step += 1.0
        elif preset == "fast":
            per_step += 0.3
        else:
            inner = 2.0 if inputs.get("inner_guidance") == "cfg" else 1.0
            per_step += inputs["max_iters"] * inner * (inputs["end_percent"] - inputs["start_percent"])
    return steps * per_step


def shard(cells: Sequence[CellSpec], weight: Callable[[CellSpec], float], index: int, count: int) -> list[CellSpec]:
    """The ``index``-th (1-based) of ``count`` shards of ``cells``: largest first, each to the lightest shard."""
    if not 1 <= index <= count:
        raise ValueError(f"shard must be i/n with 1 <= i <= n, got {index}/{count}")
    loads = [0.0] * count
    mine = []
    for cell in sorted(cells, key=lambda c: (-weight(c), repr(c))):
        k = min(range(count), key=lambda i: (loads[i], i))
        loads[k] += weight(cell)
        if k == index - 1:
            mine.append(cell)
    return mine


class Engine:
    """Runs and scores cells of one testbed through its bed, with the run cache.

    Args:
        bed: the testbed's bed (``benchmarks.testbeds``).
        store: the cache.
        reps: bootstrap resamples per phase.
        at_cfg_1_supported: whether the DiffIER nodes have the ``at_cfg_1`` input.
    """

    def __init__(self, bed: Any, store: Store, reps: int, at_cfg_1_supported: bool) -> None:
        self.bed, self.store, self.reps = bed, store, reps
        self.at_cfg_1_supported = at_cfg_1_supported
        self._counts: dict[str, np.ndarray] = {}

    def counts(self, phase: str) -> np.ndarray:
        """The phase's bootstrap resamples (multiplicities ``[reps, n]``), the same for every cell."""
        if phase not in self._counts:
            self._counts[phase] = resample_counts(self.bed.layout(phase), self.reps, seed=12345)
        return self._counts[phase]

    def sampling_key(self, spec: CellSpec) -> dict[str, Any]:
        """Everything that decides a cell's samples, except the seed."""
        size = self.bed.sizes[spec.phase]
        return {"format": RUN_FORMAT, "testbed": self.bed.name, "group": spec.group, "phase": spec.phase,
                "samples_per_seed": size.samples_per_seed, "reference_seed": size.reference_seed,
                "patches": spec.job.patches(spec.omega, self.at_cfg_1_supported), "sampler": spec.job.sampler,
                "steps": spec.job.steps_at(spec.omega), "scheduler": self.bed.spec.scheduler, "omega": spec.omega}

    def run_keys(self, spec: CellSpec) -> tuple[str, ...]:
        base = self.sampling_key(spec)
        return tuple(key_of({**base, "seed": seed}) for seed in self.bed.sizes[spec.phase].seeds)

    def cell_key(self, spec: CellSpec) -> str:
        return key_of({"runs": self.run_keys(spec), "scoring": SCORING_VERSION, "reps": self.reps})

    def is_done(self, spec: CellSpec) -> bool:
        return self.store.scores_path(self.cell_key(spec)).exists()

    def ensure_runs(self, spec: CellSpec) -> None:
        """Sample every missing seed of ``spec`` and cache it."""
        base = self.sampling_key(spec)
        for seed, key in zip(self.bed.sizes[spec.phase].seeds, self.run_keys(spec), strict=True):
            if self.store.has_run(key):
                continue
            run = self.bed.sample(spec.group, base["patches"], spec.omega, seed, spec.job.sampler, base["steps"],
                                  spec.phase)
            self.store.save_run(key, run.record, run.cost(), {**base, "seed": seed, "job": spec.job.name})

    def cell(self, spec: CellSpec) -> CellResult:
        """The cell's cost and scores: runs and scores from the cache, or made now (and cached)."""
        self.ensure_runs(spec)
        keys = self.run_keys(spec)
        loaded = [self.store.load_run(k, self.bed.spec.samples_type) for k in keys]
        cost = Cost.combine(spec.job.steps_at(spec.omega), [c for _, c in loaded])
        score_key = self.cell_key(spec)
        scores = self.store.load_scores(score_key, self.bed.spec.scores_type)
        if scores is None:
            scores = self.bed.score(spec.group, spec.phase, [r for r, _ in loaded], self.counts(spec.phase))
            self.store.save_scores(score_key, scores)
        return CellResult(spec, cost, scores, keys)

    def run_all(self, specs: Sequence[CellSpec], progress: Callable[..., Any] | None = None,
                desc: str = "cells") -> list[CellResult]:
        """Every cell of ``specs`` (cells that share their samples are run once), with a progress bar."""
        unique: dict[str, CellSpec] = {}
        for spec in specs:
            unique.setdefault(self.cell_key(spec), spec)
        bar = progress(total=len(unique), desc=desc) if progress else None
        done: dict[str, CellResult] = {}
        for key, spec in sorted(unique.items(), key=lambda kv: -estimated_evals(kv[1].job, kv[1].omega)):
            done[key] = self.cell(spec)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return [dataclasses.replace(done[self.cell_key(spec)], spec=spec) for spec in specs]

    def weight(self, spec: CellSpec) -> float:
        """A cell's estimated cost (evaluations × samples) for :func:`shard`."""
        size = self.bed.sizes[spec.phase]
        return estimated_evals(spec.job, spec.omega) * size.samples_per_seed * len(size.seeds)

