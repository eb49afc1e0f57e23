"""The evidence protocol: guidance weights, sampler configurations, methods and their roles, run sizes, the
selection rule on the tuning seeds and the equal-cost rules.

* **ω grid** :data:`OMEGAS` (1 = no guidance) for every method.
* **Configurations** :data:`CONFIGS`: Euler and dpmpp_2m at 20 and 30 steps; tuning runs at :data:`TUNING_CONFIG`.
* **Methods** (:data:`METHODS`): plain CFG; TCFG and CFG-Zero* (no knobs); APG, RescaleCFG and Epsilon Scaling, each
  tuned over its grid (``benchmarks/tuning.py``); DiffIER tuned over its grid without a cost cap (``diffier``) and
  under :data:`CAP` × plain CFG's evaluations (``diffier_capped``, the ``balanced`` preset among its points); the
  node defaults (``diffier_quality``) and the ``balanced`` and ``fast`` presets as fixed points.
* **cfg = 1**: the tuned DiffIER methods run at ω = 1 with the nodes' ``at_cfg_1 = correct`` input (DiffIER
  corrects the conditional prediction); ``diffier`` also runs there with ``skip`` (the default: plain sampling).
* **Selection** (:func:`choose`): on the tuning seeds, every setting of a method gives a curve of (adherence,
  quality) over ω; its score is the mean, over the adherence levels :func:`adherence_levels` (plain CFG's tuning
  adherence at the interior ω of the grid), of the best quality its curve reaches with at least that adherence
  (its Pareto frontier; linear interpolation between neighbouring ω, :func:`best_quality_at`); a level the curve
  never reaches scores plain CFG's worst tuning quality. Scores within :data:`TIE_TOLERANCE` × plain CFG's tuning
  quality range of the best are tied, and the tie goes to the cheapest setting (fewest evaluations per sample, then
  fewest sequential calls; between equally cheap settings, the better score).
* **Equal cost** (:data:`EQUAL_COST`): plain CFG and every anchor also run with their steps scaled so that their
  evaluations per sample equal the tuned (or capped) DiffIER's at the same ω (:func:`equal_cost_steps`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from ..testbeds.base import PhaseSize
from ..tuning import AT_CFG_1, CFG, NODE_IDS, Setting, fixed_diffier_points, method_grids

__all__ = ["OMEGAS", "QUICK_OMEGAS", "SamplerConfig", "CONFIGS", "QUICK_CONFIGS", "TUNING_CONFIG",
           "QUICK_TUNING_CONFIG", "CostModel", "COST_MODELS", "ANCHORS", "TUNED", "METHODS", "CAP", "TIE_TOLERANCE",
           "EQUAL_COST", "Sizes", "SIZES", "QUICK_SIZES", "Job", "Curve", "adherence_levels", "best_quality_at",
           "selection_score", "Choice", "choose", "equal_cost_steps", "is_capped", "tuning_jobs", "test_jobs",
           "omega_key"]

#: guidance weights of every method (1: no guidance)
OMEGAS = (1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0)
QUICK_OMEGAS = (1.0, 2.0, 4.0)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """A base sampling configuration: KSampler's sampler and step count."""

    sampler: str
    steps: int

    @property
    def name(self) -> str:
        return f"{self.sampler}-{self.steps}"

    @staticmethod
    def parse(name: str) -> SamplerConfig:
        sampler, _, steps = name.rpartition("-")
        return SamplerConfig(sampler, int(steps))


CONFIGS = (SamplerConfig("euler", 20), SamplerConfig("dpmpp_2m", 20), SamplerConfig("euler", 30),
           SamplerConfig("dpmpp_2m", 30))
TUNING_CONFIG = SamplerConfig("euler", 20)
QUICK_CONFIGS = (SamplerConfig("euler", 4), SamplerConfig("dpmpp_2m", 4))
QUICK_TUNING_CONFIG = SamplerConfig("euler", 4)

#: the anchors: ComfyUI's built-in CFG fixes (plain CFG is the reference, not an anchor)
ANCHORS = ("tcfg", "cfgzerostar", "apg", "rescalecfg", "epsilon_scaling")
#: methods whose setting is chosen on the tuning seeds: method -> the grid it is chosen from
TUNED = {"apg": "apg", "rescalecfg": "rescalecfg", "epsilon_scaling": "epsilon_scaling", "diffier": "diffier",
         "diffier_capped": "diffier"}
FIXED_DIFFIER = ("diffier_quality", "diffier_balanced", "diffier_fast")
#: every method of the test phase, in report order
METHODS = ("cfg", *ANCHORS, "diffier", "diffier_capped", *FIXED_DIFFIER)
#: the capped DiffIER's budget: evaluations per sample ≤ CAP × plain CFG's guided evaluations (2 per step)
CAP = 1.5
#: selection ties: scores within this share of plain CFG's tuning quality range (max − min over ω) of the best
TIE_TOLERANCE = 0.02
#: equal-cost variants: configuration -> the DiffIER methods whose evaluation counts plain CFG and every anchor get
EQUAL_COST = {"euler-20": ("diffier", "diffier_capped"), "dpmpp_2m-20": ("diffier_capped",),
              "euler-4": ("diffier", "diffier_capped")}
EQUAL_COST_METHODS = ("cfg", *ANCHORS)
#: the tuned DiffIER methods: run with ``at_cfg_1 = correct`` at ω = 1
CORRECT_AT_CFG_1 = ("diffier", "diffier_capped")


def omega_key(omega: float) -> str:
    """The JSON key of a guidance weight."""
    return f"{float(omega):g}"


# ---------------------------------------------------------------------------------------------------
# sizes


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The sampling of a testbed: tuning and test phases and bootstrap resamples.

    Args:
        tuning, test: the phases (their seeds must be disjoint; the test seeds are ≥ 1000 and were never used).
        reps: bootstrap resamples (shared by every cell of a phase).
    """

    tuning: PhaseSize
    test: PhaseSize
    reps: int

    def phases(self) -> dict[str, PhaseSize]:
        if set(self.tuning.seeds) & set(self.test.seeds):
            raise ValueError(f"tuning seeds {self.tuning.seeds} and test seeds {self.test.seeds} overlap")
        return {"tuning": self.tuning, "test": self.test}


SIZES = {
    "known_score": Sizes(PhaseSize((100, 101), 500, 20_000), PhaseSize((1000, 1001, 1002, 1003), 500, 30_000), 500),
    "digits": Sizes(PhaseSize((100, 101), 80), PhaseSize((1000, 1001, 1002, 1003), 60), 500),
    "sr": Sizes(PhaseSize((10, 11), 24), PhaseSize((1000, 1001, 1002), 32), 500),
    "sr_photos": Sizes(PhaseSize((10, 11), 12, 1), PhaseSize((1000, 1001, 1002), 8, 2), 500),
}
QUICK_SIZES = {
    "known_score": Sizes(PhaseSize((100, 101), 40, 20_000), PhaseSize((1000, 1001), 40, 30_000), 40),
    "digits": Sizes(PhaseSize((100, 101), 10), PhaseSize((1000, 1001), 10), 40),
    "sr": Sizes(PhaseSize((10, 11), 4), PhaseSize((1000, 1001), 4), 40),
    "sr_photos": Sizes(PhaseSize((10, 11), 2, 1), PhaseSize((1000, 1001), 1, 2), 40),
}


@dataclasses.dataclass(frozen=True)
class CostModel:
    """What a cell costs on one thread of a quiet 2-core x86-64 CPU, measured with one cell of every testbed at every
    configuration (the test phase's sizes; ``python -m benchmarks.evidence plan`` uses it to size the commands).

    Args:
        ms_per_sample_eval: CPU milliseconds per sample and model evaluation.
        score_s: CPU seconds to score one cell (with its bootstrap replicates).
        groups: the testbed's groups (known scores: the error regimes).
        images_per_seed: images a seed samples per ``samples_per_seed`` (SR photos: the test photos).
    """

    ms_per_sample_eval: float
    score_s: float
    groups: tuple[str, ...]
    images_per_seed: dict[str, int] = dataclasses.field(default_factory=dict)


#: measured on this repository's 2-core CPU, one thread, one cell of each testbed at each configuration
COST_MODELS = {
    "known_score": CostModel(0.03, 1.3, ("overspread", "collapse")),
    "digits": CostModel(1.25, 2.0, ("digits",)),
    "sr": CostModel(1.45, 0.1, ("digits_x4",)),
    "sr_photos": CostModel(2.3, 0.1, ("photos_x2",), {"tuning": 2, "test": 5}),
}


# ---------------------------------------------------------------------------------------------------
# jobs


@dataclasses.dataclass(frozen=True)
class Job:
    """One method run at one sampler configuration, at every ω of the grid.

    Args:
        method: the reported method (``cfg``, an anchor, ``diffier``, ``diffier_capped``, a fixed DiffIER point).
        variant: ``base``; ``equal_cost:<diffier method>`` (steps scaled to that method's evaluations);
            ``at_cfg_1:skip`` (the tuned DiffIER with ``at_cfg_1 = skip``, at ω = 1 only).
        setting: the method's setting (its patch nodes).
        sampler: KSampler's sampler; steps: its steps at each ω (``(ω key, steps)`` pairs).
        at_cfg_1: the DiffIER nodes' ``at_cfg_1`` input at ω = 1 (None: the node default, ``skip``).
        omegas: where it runs.
    """

    method: str
    variant: str
    setting: Setting
    sampler: str
    steps: tuple[tuple[str, int], ...]
    at_cfg_1: str | None
    omegas: tuple[float, ...]

    def steps_at(self, omega: float) -> int:
        return dict(self.steps)[omega_key(omega)]

    def patches(self, omega: float, at_cfg_1_supported: bool) -> tuple:
        """The patch nodes at ``omega``: the DiffIER nodes get ``at_cfg_1`` at ω = 1 when the node offers it."""
        if self.at_cfg_1 is None or omega != 1.0 or not at_cfg_1_supported:
            return self.setting.patches
        return tuple((node, {**inputs, AT_CFG_1: self.at_cfg_1}) if node == NODE_IDS["diffier"] else (node, inputs)
                     for node, inputs in self.setting.patches)

    @property
    def name(self) -> str:
        return self.method if self.variant == "base" else f"{self.method}[{self.variant}]"


def _job(method: str, setting: Setting, config: SamplerConfig, omegas: Sequence[float], variant: str = "base",
         steps: dict[str, int] | None = None, at_cfg_1: str | None = None) -> Job:
    steps = steps or {omega_key(o): config.steps for o in omegas}
    return Job(method, variant, setting, config.sampler, tuple(sorted(steps.items())), at_cfg_1, tuple(omegas))


def tuning_jobs(quick: bool, omegas: Sequence[float], config: SamplerConfig) -> list[Job]:
    """Every setting of every method's grid at the tuning configuration (DiffIER with ``correct`` at ω = 1)."""
    jobs = []
    for method, grid in method_grids(quick).items():
        for setting in grid:
            jobs.append(_job(method, setting, config, omegas, at_cfg_1="correct" if method == "diffier" else None))
    return jobs


def test_jobs(chosen: dict[str, Setting], config: SamplerConfig, omegas: Sequence[float],
              equal_cost_steps_by_method: dict[str, dict[str, int]], quick: bool) -> list[Job]:
    """The test phase's jobs at ``config``: every method of :data:`METHODS` (the tuned ones at their ``chosen``
    setting), the tuned DiffIER with ``skip`` at ω = 1, and the equal-cost variants of :data:`EQUAL_COST`
    (``equal_cost_steps_by_method``: DiffIER method -> ω key -> steps)."""
    fixed = {"cfg": CFG, **{m: s[0] for m, s in method_grids(quick).items() if m in ("tcfg", "cfgzerostar")},
             **fixed_diffier_points()}
    settings = {**fixed, **chosen}
    jobs = [_job(m, settings[m], config, omegas, at_cfg_1="correct" if m in CORRECT_AT_CFG_1 else None)
            for m in METHODS]
    if 1.0 in omegas:
        jobs.append(_job("diffier", settings["diffier"], config, (1.0,), variant="at_cfg_1:skip", at_cfg_1="skip"))
    for target in EQUAL_COST.get(config.name, ()):
        steps = equal_cost_steps_by_method[target]
        for m in EQUAL_COST_METHODS:
            jobs.append(_job(m, settings[m], config, omegas, variant=f"equal_cost:{target}", steps=steps))
    return jobs


# ---------------------------------------------------------------------------------------------------
# selection


@dataclasses.dataclass(frozen=True)
class Curve:
    """A setting's points over ω (in ω order): adherence, quality and evaluations per sample and calls per step."""

    omegas: tuple[float, ...]
    adherence: tuple[float, ...]
    quality: tuple[float, ...]
    evals_per_sample: tuple[float, ...]
    calls_per_step: tuple[float, ...]


def adherence_levels(cfg_curve: Curve) -> tuple[tuple[float, float], ...]:
    """The adherence levels as ``(ω, adherence)``: plain CFG's adherence at the interior ω of the grid (not the first
    and last ω, so that sampling noise cannot put CFG's own test curve short of a level), sorted by adherence."""
    pairs = list(zip(cfg_curve.omegas, cfg_curve.adherence, strict=True))
    return tuple(sorted(pairs[1:-1] if len(pairs) > 2 else pairs, key=lambda p: p[1]))


def best_quality_at(adherence: Sequence[float], quality: Sequence[float], level: float,
                    lower_is_better: bool) -> float | None:
    """The best quality a curve reaches while its adherence is at least ``level`` (its Pareto frontier at ``level``):
    over the ω points with adherence ≥ ``level`` and the points where a segment between neighbouring ω crosses
    ``level`` (linear interpolation); None when the curve never reaches ``level``. Points with a non-finite value are
    left out, and so are the segments they end."""
    found = []
    pts = list(zip(adherence, quality, strict=True))
    ok = [math.isfinite(a) and math.isfinite(q) for a, q in pts]
    found += [q for (a, q), good in zip(pts, ok, strict=True) if good and a >= level]
    for k in range(len(pts) - 1):
        (a0, q0), (a1, q1) = pts[k], pts[k + 1]
        if ok[k] and ok[k + 1] and min(a0, a1) < level < max(a0, a1):
            found.append(q0 + (q1 - q0) * (level - a0) / (a1 - a0))
    if not found:
        return None
    return min(found) if lower_is_better else max(found)


def selection_score(curve: Curve, levels: Sequence[float], lower_is_better: bool, penalty: float) -> float:
    """Mean over ``levels`` of :func:`best_quality_at` (``penalty`` where the curve does not reach a level)."""
    values = []
    for level in levels:
        q = best_quality_at(curve.adherence, curve.quality, level, lower_is_better)
        values.append(penalty if q is None else q)
    return sum(values) / len(values)


@dataclasses.dataclass(frozen=True)
class Choice:
    """A method's chosen setting and every candidate's selection score (the tie rule's inputs included).

    Args:
        label: the chosen setting.
        scores: candidate label -> selection score.
        tied: the candidates tied with the best score (within the tolerance), cheapest first.
        candidates: the labels considered (capped: those within the cap).
    """

    label: str
    scores: dict[str, float]
    tied: tuple[str, ...]
    candidates: tuple[str, ...]


def is_capped(curve: Curve, steps: int) -> bool:
    """Whether a setting's evaluations per sample stay within :data:`CAP` × plain CFG's guided evaluations
    (``2 × steps``) at every ω."""
    return all(e <= CAP * 2 * steps + 1e-9 for e in curve.evals_per_sample)


def choose(curves: dict[str, Curve], cfg_curve: Curve, lower_is_better: bool,
           candidates: Sequence[str] | None = None) -> Choice:
    """The setting chosen by the frontier rule (module docstring) among ``candidates`` (default: every curve)."""
    labels = tuple(candidates if candidates is not None else curves)
    if not labels:
        raise ValueError("no candidate settings to choose from")
    levels = [a for _, a in adherence_levels(cfg_curve)]
    finite_cfg = [q for q in cfg_curve.quality if math.isfinite(q)]
    penalty = max(finite_cfg) if lower_is_better else min(finite_cfg)
    scores = {lab: selection_score(curves[lab], levels, lower_is_better, penalty) for lab in labels}
    sign = 1.0 if lower_is_better else -1.0
    best = min(sign * s for s in scores.values())
    tolerance = TIE_TOLERANCE * (max(finite_cfg) - min(finite_cfg))
    tied = [lab for lab in labels if sign * scores[lab] <= best + tolerance]

    def cost(lab: str) -> tuple[float, float, float, int]:
        c = curves[lab]
        return (sum(c.evals_per_sample) / len(c.evals_per_sample), sum(c.calls_per_step) / len(c.calls_per_step),
                sign * scores[lab], labels.index(lab))

    tied.sort(key=cost)
    return Choice(tied[0], scores, tuple(tied), labels)


def equal_cost_steps(diffier: Curve, cfg: Curve, base_steps: int) -> dict[str, int]:
    """Per ω, the steps that give plain CFG (or an anchor, which evaluates as plain CFG does) the DiffIER curve's
    evaluations per sample: ``round(base_steps × DiffIER's evaluations / plain CFG's)`` (at least ``base_steps``)."""
    return {omega_key(o): max(base_steps, round(base_steps * d / c))
            for o, d, c in zip(diffier.omegas, diffier.evals_per_sample, cfg.evals_per_sample, strict=True)}
