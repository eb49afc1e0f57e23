"""Quality against adherence: each method's curve over ω, the best quality it reaches at fixed adherence levels,
and paired comparisons between curves with bootstrap intervals.

A *line* is one job's curve (a method, or an equal-cost variant of it) in one group and configuration: its cells'
(adherence, quality) points in ω order. At an adherence level its quality is the best it reaches while adhering at
least that much: its Pareto frontier (:func:`benchmarks.evidence.protocol.best_quality_at`), or *unreached* when
its adherence never gets there.
Every cell carries its metrics on the same bootstrap resamples (seeds and samples resampled with the same indices for
every cell), so the same computation on each resample gives paired intervals of a difference between two lines.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from .engine import CellResult
from .protocol import best_quality_at

__all__ = ["Level", "LevelValue", "FrontierLine", "PairDifference", "Frontier", "line_of", "frontier", "verdict"]

#: a comparison needs both lines defined on at least this share of the resamples to be decided
MIN_REACHED_SHARE = 0.9


@dataclasses.dataclass(frozen=True)
class Level:
    """An adherence level: plain CFG's tuning adherence at ``cfg_omega``."""

    cfg_omega: float
    adherence: float


@dataclasses.dataclass
class LevelValue:
    """A line's best quality at one level (None: unreached) with its 95 % bootstrap interval.

    Args:
        cfg_omega: the level's ω of plain CFG on the tuning seeds; adherence: the level.
        quality: the best quality the line reaches with at least this adherence (None: it never reaches the level).
        lo, hi: percentiles over the resamples where it reaches the level; reached_share: their share.
    """

    cfg_omega: float
    adherence: float
    quality: float | None
    lo: float | None
    hi: float | None
    reached_share: float


@dataclasses.dataclass
class FrontierLine:
    """One job's curve: its name, cost (mean over ω > 1) and best quality at every level."""

    name: str
    method: str
    variant: str
    setting: str
    evals_per_sample: float
    calls_per_step: float
    levels: list[LevelValue]


@dataclasses.dataclass
class PairDifference:
    """``line`` minus ``reference`` in quality at one level, paired over the resamples.

    Args:
        verdict: ``better`` / ``worse`` (the 95 % interval excludes 0, in the metric's direction), ``tie``,
            ``unreached`` (one of the two does not reach the level: ``unreached_by`` says which) or ``undetermined``
            (both reach it on fewer than 90 % of the resamples).
    """

    line: str
    reference: str
    cfg_omega: float
    adherence: float
    difference: float | None
    lo: float | None
    hi: float | None
    reached_share: float
    verdict: str
    unreached_by: str | None


@dataclasses.dataclass
class Frontier:
    """Every line's best quality at every level and the paired comparisons, for one quality metric."""

    metric: str
    lower_is_better: bool
    adherence_metric: str
    levels: list[Level]
    lines: list[FrontierLine]
    pairs: list[PairDifference]


@dataclasses.dataclass(frozen=True)
class Line:
    """A line's points: per ω the cell (in ω order)."""

    name: str
    cells: tuple[CellResult, ...]


def line_of(name: str, cells: Sequence[CellResult]) -> Line:
    """The line of ``cells`` (one job's cells), sorted by ω."""
    return Line(name, tuple(sorted(cells, key=lambda c: c.spec.omega)))


def _values(line: Line, quality: str, adherence: str) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    a = [getattr(c.scores, adherence).value for c in line.cells]
    q = [getattr(c.scores, quality).value for c in line.cells]
    a_reps = np.stack([getattr(c.scores, adherence).replicates for c in line.cells], axis=1)   # [R, ω]
    q_reps = np.stack([getattr(c.scores, quality).replicates for c in line.cells], axis=1)
    return a, q, a_reps, q_reps


def _at_levels(line: Line, levels: Sequence[Level], quality: str, adherence: str, lower: bool
               ) -> tuple[list[float | None], np.ndarray]:
    """Point values per level and ``[R, L]`` replicate values (NaN: unreached on that resample)."""
    a, q, a_reps, q_reps = _values(line, quality, adherence)
    points = [best_quality_at(a, q, lv.adherence, lower) for lv in levels]
    reps = np.full((a_reps.shape[0], len(levels)), np.nan)
    for r in range(a_reps.shape[0]):
        for j, lv in enumerate(levels):
            v = best_quality_at(a_reps[r], q_reps[r], lv.adherence, lower)
            if v is not None:
                reps[r, j] = v
    return points, reps


def verdict(difference: float | None, lo: float | None, hi: float | None, share: float, lower: bool) -> str:
    """``better``/``worse``/``tie``/``undetermined`` of a paired difference (line − reference)."""
    if difference is None:
        return "unreached"
    if share < MIN_REACHED_SHARE or lo is None or hi is None:
        return "undetermined"
    if hi < 0:
        return "better" if lower else "worse"
    if lo > 0:
        return "worse" if lower else "better"
    return "tie"


def _interval(values: np.ndarray) -> tuple[float | None, float | None, float]:
    ok = values[np.isfinite(values)]
    share = ok.size / values.size if values.size else 0.0
    if not ok.size:
        return None, None, share
    lo, hi = np.quantile(ok, [0.025, 0.975])
    return float(lo), float(hi), share


def _mean_over_guided(line: Line, field: str) -> float:
    vals = [getattr(c.cost, field) for c in line.cells if c.spec.omega != 1.0] or \
        [getattr(c.cost, field) for c in line.cells]
    return float(np.mean(vals))


def frontier(lines: Sequence[Line], levels: Sequence[Level], quality: str, adherence: str, lower: bool,
             pairs: Sequence[tuple[str, str]]) -> Frontier:
    """The frontier of ``lines`` at ``levels`` for the metric ``quality``, and the paired comparisons ``pairs``
    (``(line, reference)`` names)."""
    values = {ln.name: _at_levels(ln, levels, quality, adherence, lower) for ln in lines}
    out_lines = []
    for ln in lines:
        points, reps = values[ln.name]
        level_values = []
        for j, lv in enumerate(levels):
            lo, hi, share = _interval(reps[:, j])
            level_values.append(LevelValue(lv.cfg_omega, lv.adherence, points[j], lo, hi, share))
        job = ln.cells[0].spec.job
        out_lines.append(FrontierLine(ln.name, job.method, job.variant, job.setting.label,
                                      _mean_over_guided(ln, "evals_per_sample"),
                                      _mean_over_guided(ln, "calls_per_step"), level_values))
    out_pairs = []
    for name, ref in pairs:
        if name not in values or ref not in values:
            continue
        (p_line, r_line), (p_ref, r_ref) = values[name], values[ref]
        for j, lv in enumerate(levels):
            a, b = p_line[j], p_ref[j]
            diff = None if a is None or b is None else a - b
            lo, hi, share = _interval(r_line[:, j] - r_ref[:, j])
            unreached = None if diff is not None else ("both" if a is None and b is None else
                                                       (name if a is None else ref))
            out_pairs.append(PairDifference(name, ref, lv.cfg_omega, lv.adherence, diff, lo, hi, share,
                                            verdict(diff, lo, hi, share, lower), unreached))
    return Frontier(quality, lower, adherence, list(levels), out_lines, out_pairs)


def finite(value: float | None) -> bool:
    """Whether ``value`` is a finite number."""
    return value is not None and math.isfinite(value)
