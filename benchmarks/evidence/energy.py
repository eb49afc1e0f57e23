"""Why the earlier known-score runs reported negative energy distances, measured.

The class-wise energy distance ``2E|X−Y| − E|X−X'| − E|Y−Y'|`` is ≥ 0, and its U-statistic estimate is unbiased, but
one estimate can fall below 0. The earlier runs (``benchmarks/tuned.py``, archived) scored each seed's 240 samples
(60 per class) against 240 exact samples drawn for that seed and shared by every method at that seed. This check
measures, over many fresh seeds:

1. ``null_old``: two independent exact sets in the old design: the estimator's mean (≈ 0: unbiased) and spread;
2. ``old_seed_offsets``: for each of the old test seeds 0–3, the mean estimate of many independent exact sets
   against that seed's reference: the shift its reference alone gives every method at that seed;
3. ``exact_model_old``: the exact-score model sampled through ComfyUI at ω = 1 (the old configuration, Euler 16
   steps, ``karras``): the estimate of a sampler with no model error (≥ 0 up to the discretisation);
4. ``diffier_old`` and ``diffier_old_test_seeds``: the old tuned DiffIER setting at ω = 10 in the over-spread regime
   on fresh seeds and on the old test seeds 0–3;
5. ``null_new`` and ``exact_model_new``: the same with this protocol's design (a fixed reference of 2,000 exact
   samples per class, 500 generated samples per class pooled over seeds, the test configuration: Euler 20 steps);
   ``exact_model_new_fine``: the exact model with 4× the steps (the discretisation floor shrinks).

``python -m benchmarks.evidence energy-check`` writes ``docs/results/evidence/energy_distance_check.json``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .. import metrics
from ..testbeds.base import PhaseSize
from ..testbeds.known_score import EXACT, KnownScoreBed
from ..tuning import diffier_node

__all__ = ["Summary", "EnergyCheck", "class_wise_energy_distance", "summarise", "energy_check"]

OLD_SAMPLES = 240
OLD_REFERENCE_SEED = 10_000          # the old runs' reference for seed s: generator seed 10 000 + s
OLD_DIFFIER = diffier_node(0.2, 4, "cond", (0.0, 0.5))     # the old tuned setting at ω = 10 (over-spread)
OLD_TEST_SEEDS = (0, 1, 2, 3)
OLD_TEST_DIFFIER_VALUES = (-0.0556, -0.0287, -0.0286, -0.037)   # docs/results/archive/tuned_known_score.json


@dataclasses.dataclass
class Summary:
    """The estimates of one experiment over seeds: mean, its 95 % interval, spread, share below 0."""

    seeds: int
    mean: float
    ci95: float
    sd: float
    share_negative: float
    values: list[float]


@dataclasses.dataclass
class EnergyCheck:
    """``energy_distance_check.json``."""

    schema: str
    quick: bool
    null_old: Summary
    old_seed_offsets: dict[str, Summary]
    exact_model_old: Summary
    diffier_old: Summary
    diffier_old_test_seeds: Summary
    diffier_old_reported: list[float]
    null_new: Summary
    exact_model_new: Summary
    exact_model_new_fine: Summary
    explanation: str
    runtime_s: float


def class_wise_energy_distance(x: torch.Tensor, y: torch.Tensor, labels_x: torch.Tensor,
                               labels_y: torch.Tensor) -> float:
    """The U-statistic energy distance per class, averaged over classes (the earlier runs' estimator)."""
    values = []
    for c in torch.unique(labels_x):
        xc, yc = x[labels_x == c].double(), y[labels_y == c].double()
        values.append(2 * float(torch.cdist(xc, yc).mean()) - metrics.pair_mean(torch.cdist(xc, xc).numpy())
                      - metrics.pair_mean(torch.cdist(yc, yc).numpy()))
    return float(np.mean(values))


def summarise(values: Sequence[float]) -> Summary:
    v = np.asarray(values, dtype=np.float64)
    sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return Summary(int(v.size), float(v.mean()), 1.96 * sd / math.sqrt(v.size), sd, float((v < 0).mean()),
                   [float(x) for x in v])


def energy_check(quick: bool, harness: Any = None, progress: Callable[..., Any] | None = None) -> EnergyCheck:
    """Run every experiment of the module docstring (``quick``: fewer seeds)."""
    t0 = time.perf_counter()
    seeds = 20 if quick else 200
    model_seeds = 8 if quick else 100
    new_seeds = 4 if quick else 40
    sizes = {"old": PhaseSize((0,), OLD_SAMPLES), "new": PhaseSize((0,), 500 * 4, 30_000)}
    bed = KnownScoreBed(sizes, ["overspread"], 200 if quick else 2000, harness)
    truth = bed.bed.truth
    labels = bed.labels(OLD_SAMPLES)
    bar = progress(total=seeds + 4 * 20 + 2 * model_seeds + len(OLD_TEST_SEEDS) + 2 * new_seeds + new_seeds // 2,
                   desc="energy check") if progress else None

    def tick() -> None:
        if bar is not None:
            bar.update(1)

    def old_reference(seed: int) -> torch.Tensor:
        return truth.sample(labels, torch.Generator().manual_seed(OLD_REFERENCE_SEED + seed))

    def exact_set(seed: int) -> torch.Tensor:
        return truth.sample(labels, torch.Generator().manual_seed(50_000 + seed))

    null_old = []
    for s in range(seeds):
        null_old.append(class_wise_energy_distance(exact_set(s), old_reference(2000 + s), labels, labels))
        tick()
    offsets = {}
    for seed in OLD_TEST_SEEDS:
        ref = old_reference(seed)
        vals = []
        for k in range(20):
            vals.append(class_wise_energy_distance(exact_set(90_000 + 100 * seed + k), ref, labels, labels))
            tick()
        offsets[str(seed)] = summarise(vals)

    def sampled(group: str, patches: tuple, omega: float, seed: int, steps: int, phase: str) -> torch.Tensor:
        run = bed.sample(group, patches, omega, seed, "euler", steps, phase)
        return torch.from_numpy(run.record.samples)

    exact_old, diffier_old = [], []
    for s in range(model_seeds):
        exact_old.append(class_wise_energy_distance(sampled(EXACT, (), 1.0, 2000 + s, 16, "old"),
                                                    old_reference(2000 + s), labels, labels))
        tick()
        diffier_old.append(class_wise_energy_distance(sampled("overspread", (OLD_DIFFIER,), 10.0, 2000 + s, 16, "old"),
                                                      old_reference(2000 + s), labels, labels))
        tick()
    diffier_test = []
    for s in OLD_TEST_SEEDS:
        diffier_test.append(class_wise_energy_distance(sampled("overspread", (OLD_DIFFIER,), 10.0, s, 16, "old"),
                                                       old_reference(s), labels, labels))
        tick()
    ref = bed.reference("new")
    ref_x = torch.cat(ref.per_class)
    ref_labels = torch.arange(4).repeat_interleave(ref.per_class[0].shape[0])
    new_labels = bed.labels(2000)
    null_new, exact_new = [], []
    for s in range(new_seeds):
        null_new.append(class_wise_energy_distance(
            truth.sample(new_labels, torch.Generator().manual_seed(70_000 + s)), ref_x, new_labels, ref_labels))
        tick()
        exact_new.append(class_wise_energy_distance(sampled(EXACT, (), 1.0, 3000 + s, 20, "new"), ref_x, new_labels,
                                                    ref_labels))
        tick()
    exact_fine = []
    for s in range(new_seeds // 2):
        exact_fine.append(class_wise_energy_distance(sampled(EXACT, (), 1.0, 3000 + s, 80, "new"), ref_x, new_labels,
                                                     ref_labels))
        tick()
    if bar is not None:
        bar.close()
    result = EnergyCheck("diffier.evidence.energy/v1", quick, summarise(null_old), offsets, summarise(exact_old),
                         summarise(diffier_old), summarise(diffier_test), list(OLD_TEST_DIFFIER_VALUES),
                         summarise(null_new), summarise(exact_new), summarise(exact_fine), "",
                         time.perf_counter() - t0)
    result.explanation = explain(result, bed.reference_per_class)
    return result


def explain(check: EnergyCheck, reference_per_class: int) -> str:
    """The finding in words, with the numbers of ``check``."""
    offsets = [o.mean for o in check.old_seed_offsets.values()]
    return (f"The estimator is unbiased: two independent exact sets in the old design give {check.null_old.mean:+.4f} "
            f"± {check.null_old.ci95:.4f} over {check.null_old.seeds} seeds, but one estimate spreads with SD "
            f"{check.null_old.sd:.4f} and is negative {100 * check.null_old.share_negative:.0f} % of the time. Every "
            "method at one seed shared that seed's 240 reference samples, so the reference's own draw shifted all of "
            f"them together: on the old test seeds 0–3 the shift was {', '.join(f'{v:+.4f}' for v in offsets)} "
            f"(mean {np.mean(offsets):+.4f}). The old tuned DiffIER at ω = 10 gives {check.diffier_old.mean:+.4f} ± "
            f"{check.diffier_old.ci95:.4f} on {check.diffier_old.seeds} fresh seeds and "
            f"{', '.join(f'{v:+.4f}' for v in check.diffier_old_test_seeds.values)} on seeds 0–3 (reported: "
            f"{', '.join(f'{v:+.4f}' for v in check.diffier_old_reported)}); the exact-score model itself gives "
            f"{check.exact_model_old.mean:+.4f} ± {check.exact_model_old.ci95:.4f}. So the negative values were "
            "sampling noise plus the shared reference offset of seeds 0–3 around a true distance that is small and "
            "positive (no better than the exact model's discretisation floor), not a bug in the estimator or a "
            "correlation between generated and reference samples; the old intervals resampled the generated samples "
            "only, so they left the reference's noise out. This protocol uses one fixed reference of "
            f"{reference_per_class} exact samples per class and 500 generated samples per class: the null spread "
            "falls to SD "
            f"{check.null_new.sd:.4f} (mean {check.null_new.mean:+.4f} ± {check.null_new.ci95:.4f}), and the exact "
            f"model gives {check.exact_model_new.mean:+.4f} ± {check.exact_model_new.ci95:.4f} with the test "
            f"configuration's 20 Euler steps and {check.exact_model_new_fine.mean:+.4f} ± "
            f"{check.exact_model_new_fine.ci95:.4f} with 80: the exact model's distance is the sampler's "
            "discretisation, and it shrinks with the steps. The reference is the same for every cell, so it adds one "
            "constant to every energy distance and none to a difference.")
