"""Issue 8 — DiffIER at equal cost and in combination with ComfyUI's CFG fixes.

One command per testbed (from the repository root)::

    .venv/bin/python -m benchmarks.cost_and_chains --testbed known_score   # -> docs/results/*known_score* JSON + 2 PNGs
    .venv/bin/python -m benchmarks.cost_and_chains --testbed digits
    .venv/bin/python -m benchmarks.cost_and_chains --testbed known_score --quick --out /tmp/cc   # CI smoke run
    .venv/bin/python -m benchmarks.cost_and_chains --replot docs/results/cost_and_chains_known_score.json --markdown

Two questions, both answered with common random numbers (a seed fixes the initial noise of every method,
and for ``known_score`` the exact reference samples too, so sample ``i`` of every method starts from the same
noise and differences are paired per sample):

* **Equal cost.** Every DiffIER setting spends extra model evaluations. For each setting and ω the plain-CFG
  control uses the same number of evaluations per sample, spent on more Euler steps:
  ``control_steps = round(diffier_evals / 2)`` (CFG evaluates cond + uncond once per step at ω ≠ 1; the DiffIER
  evaluations are measured by the harness on seed 0 at that ω). Reported: the paired difference (DiffIER − control,
  and DiffIER − plain CFG at the base step count) of a per-sample quality score with a paired bootstrap 95 %
  interval over samples, and of the set-level metric with a paired bootstrap over samples and a seed-level t-interval.
* **Chains.** Through the real nodes, at ω ∈ {1.5, 2, 3, 5, 7.5, 10}: DiffIER alone; APG, RescaleCFG and
  CFGZeroStar alone; APG → DiffIERGuider; RescaleCFG → DiffIERGuider; DiffIERGuider → CFGZeroStar (post-CFG order),
  each with DiffIER's guided inner evaluation (``diffier``) and with the nodes' defaults (``diffier-cond``,
  ``inner_guidance="cond"``). Each chain is compared (paired) with its anchor alone, with the same DiffIER setting
  alone and with plain CFG.

Per-sample scores: ``known_score`` — the exact conditional log-density log q(x | c) per dimension (higher is
better; note it rewards contraction toward the modes, so read it with the set metric); ``digits`` — the held-out
classifier's log-probability of the requested digit. Set metrics: ``known_score`` — class-wise energy distance to
exact samples (lower is better); ``digits`` — Fréchet distance of classifier features to the test split, computed on
the samples of all seeds pooled (lower is better).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import metrics as M
from benchmarks.harness import DIFFIER_DEFAULTS, Harness, Method

log = logging.getLogger("DiffIER.bench.cost_and_chains")

SCHEMA = "diffier.cost_and_chains/v1"
OMEGAS: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 7.5, 10.0)
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "results"

APG = ("APG", {"eta": 1.0, "norm_threshold": 5.0, "momentum": 0.0})
RESCALE = ("RescaleCFG", {"multiplier": 0.7})
ZERO = ("CFGZeroStar", {})


def _node(**overrides: Any) -> tuple[str, dict[str, Any]]:
    return ("DiffIERGuider", {**DIFFIER_DEFAULTS, **overrides})


@dataclasses.dataclass(frozen=True)
class Spec:
    """A benchmarked method. ``kind``: ``cfg``, ``diffier`` (an equal-cost setting), ``anchor``, ``chain``,
    ``control`` (plain CFG with ``steps`` steps); ``anchor`` names a chain's anchor method."""

    name: str
    kind: str
    patches: tuple[tuple[str, dict[str, Any]], ...] = ()
    core_diffier: dict[str, Any] | None = None
    anchor: str | None = None
    diffier_alone: str | None = None  # a chain's DiffIER setting run alone (its "vs DiffIER alone" comparison)
    steps: int | None = None          # None: the run's base step count
    control_of: str | None = None

    def method(self) -> Method:
        return Method(self.name, self.patches, self.core_diffier)

    def describe(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["patches"] = [[n, p] for n, p in self.patches]
        return d


DIFFIER = "diffier(eta=.05,it=4)"            # guided inner evaluation (inner_guidance="cfg"), the paper's reading
DIFFIER_COND = "diffier-cond(eta=.05,it=4)"  # the nodes' defaults (inner_guidance="cond")


def diffier_settings() -> list[Spec]:
    """DiffIER settings that get an equal-cost plain-CFG control."""
    return [
        Spec(DIFFIER, "diffier", (_node(),)),
        Spec("diffier(eta=.05,it=1)", "diffier", (_node(max_iters=1),)),
        Spec(DIFFIER_COND, "diffier", (_node(inner_guidance="cond"),)),
        Spec("diffier(eta=.05,it=4,win=.5-1)", "diffier", (_node(start_percent=0.5),)),
    ]


def chain_specs() -> list[Spec]:
    """The anchors alone and DiffIER chained with each (real nodes, in ComfyUI's order), with the guided inner
    evaluation (``diffier``) and with the nodes' defaults (``diffier-cond``)."""
    cond = _node(inner_guidance="cond")
    return [
        Spec("apg", "anchor", (APG,)),
        Spec("rescalecfg(0.7)", "anchor", (RESCALE,)),
        Spec("cfgzerostar", "anchor", (ZERO,)),
        Spec("apg→diffier", "chain", (APG, _node()), anchor="apg", diffier_alone=DIFFIER),
        Spec("rescalecfg→diffier", "chain", (RESCALE, _node()), anchor="rescalecfg(0.7)", diffier_alone=DIFFIER),
        Spec("diffier→cfgzerostar", "chain", (_node(), ZERO), anchor="cfgzerostar", diffier_alone=DIFFIER),
        Spec("apg→diffier-cond", "chain", (APG, cond), anchor="apg", diffier_alone=DIFFIER_COND),
        Spec("rescalecfg→diffier-cond", "chain", (RESCALE, cond), anchor="rescalecfg(0.7)",
             diffier_alone=DIFFIER_COND),
        Spec("diffier-cond→cfgzerostar", "chain", (cond, ZERO), anchor="cfgzerostar", diffier_alone=DIFFIER_COND),
    ]


# ---------------------------------------------------------------------------------------------------
# statistics


def bootstrap_mean_diff(a: torch.Tensor, b: torch.Tensor, reps: int, seed: int = 0) -> dict[str, float]:
    """Paired bootstrap over samples of ``mean(a − b)``: mean and the 2.5 / 97.5 percentiles."""
    d = (a.double() - b.double()).reshape(-1)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, d.numel(), (reps, d.numel()), generator=g)
    boots = d[idx].mean(1)
    return {"mean": float(d.mean()), "lo": float(boots.quantile(0.025)), "hi": float(boots.quantile(0.975)),
            "n": d.numel()}


def seed_diff(a: list[float], b: list[float]) -> dict[str, float]:
    mean, ci = M.mean_ci([x - y for x, y in zip(a, b, strict=True)])
    return {"mean": mean, "ci95": ci}


def _stats(values: list[float]) -> dict[str, Any]:
    mean, ci = M.mean_ci(values)
    return {"mean": mean, "ci95": ci, "values": values}


# ---------------------------------------------------------------------------------------------------
# testbeds: sampling and scoring behind one interface


def _boot_ed(cell: dict, w: torch.Tensor) -> torch.Tensor:
    """Energy distance (without the reference-only term) of resampled generated sets; ``w``: counts [B, m]."""
    m = w.shape[1]
    xy = w @ cell["dxy"] / m
    # pairs of resampled positions that are distinct samples (a duplicate pair is no pair)
    xx = ((w @ cell["dxx"]) * w).sum(1) / (m * m - w.square().sum(1))
    return 2 * xy - xx


class KnownScoreBed:
    """Testbed 1 (:mod:`benchmarks.known_score`): groups are the error regimes."""

    name = "known_score"
    set_metric, set_label, set_lower = "energy_distance", "class-wise energy distance ↓", True
    sample_metric, sample_label = "logp", "exact log q(x|c) per dim ↑"

    def __init__(self, quick: bool, seeds: int | None, samples: int | None, regimes: list[str] | None,
                 steps: int | None = None) -> None:
        from benchmarks import known_score as KS

        self.KS = KS
        s = KS.Settings.quick_defaults() if quick else KS.Settings()
        if quick:
            s.samples, s.steps, s.regimes = 120, 8, ("overspread",)
        if seeds:
            s.seeds = seeds
        if samples:
            s.samples = samples
        if steps:
            s.steps = steps
        if regimes:
            s.regimes = tuple(regimes)
        self.settings = s
        self.h = Harness()
        self.bed = KS.Testbed(s)
        self.groups = list(s.regimes)
        self.seeds = list(range(s.seeds))
        self.base_steps = s.steps
        self.labels = self.bed.labels
        self._ref: dict[int, torch.Tensor] = {}

    def config(self) -> dict[str, Any]:
        s = self.settings
        return {"samples": s.samples, "seeds": s.seeds, "steps": s.steps, "sampler": s.sampler,
                "scheduler": s.scheduler, "latent_shape": list(s.latent_shape), "num_classes": s.num_classes,
                "regimes": {r: self.KS.REGIMES[r] for r in s.regimes}}

    def reference(self, seed: int) -> torch.Tensor:
        if seed not in self._ref:
            self._ref[seed] = self.bed.reference(seed)
        return self._ref[seed]

    def run(self, group: str, spec: Spec, omega: float, seed: int, steps: int) -> dict[str, Any]:
        s = self.settings
        n, k = s.samples, s.num_classes
        res = self.h.sample(self.bed.models[group], spec.method(), positive=self.KS.CM.positive(self.labels, k),
                            negative=self.KS.CM.negative(n, k), latent=self.KS.CM.latent(n, s.latent_shape),
                            seed=seed, steps=steps, cfg=omega, sampler=getattr(spec, "sampler", None) or s.sampler,
                            scheduler=s.scheduler)
        x = res.samples.reshape(n, -1).double()
        finite = torch.isfinite(x).all(dim=1)
        x = torch.where(finite.unsqueeze(1), x, torch.full_like(x, 1e6))   # a diverged sample scores terribly
        ref = self.reference(seed).double()
        truth = self.bed.truth
        logp = truth.log_prob(x.float(), 0.0, self.labels).double() / x.shape[1]
        # per class: mean distance of each generated sample to the reference, and generated-generated distances
        cells = []
        ed = 0.0
        for c in range(k):
            sel, rsel = self.labels == c, self.labels == c
            xc, yc = x[sel], ref[rsel]
            dxy = torch.cdist(xc, yc).mean(1)
            dxx = torch.cdist(xc, xc)
            dyy = torch.cdist(yc, yc)
            m, mr = xc.shape[0], yc.shape[0]
            yy = float((dyy.sum()) / (mr * (mr - 1)))
            cells.append({"dxy": dxy, "dxx": dxx, "yy": yy})
            ed += float(2 * dxy.mean() - dxx.sum() / (m * (m - 1)) - yy)
        acc = float((truth.classify(x.float()) == self.labels).float().mean())
        return {"set": ed / k, "sample": logp, "accuracy": acc, "nonfinite": int((~finite).sum()),
                "evals": res.evals_per_sample, "wall_s": res.wall_s, "cells": cells}

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

    def pooled_set(self, runs: list[dict]) -> float | None:
        return None

    @staticmethod
    def strip(run: dict) -> dict:
        return {k: v for k, v in run.items() if k not in ("cells", "sample")}

    def close(self) -> None:
        pass


class DigitsBed:
    """Testbed 2 (:mod:`benchmarks.digits`): one group; the demo model through the pack's loader node."""

    name = "digits"
    set_metric, set_label, set_lower = "fd", "FD (classifier features, pooled over seeds) ↓", True
    sample_metric, sample_label = "logp_class", "classifier log p(requested digit | x) ↑"

    def __init__(self, quick: bool, seeds: int | None, samples: int | None, regimes: list[str] | None,
                 steps: int | None = None) -> None:
        from benchmarks import digits as D

        self.D = D
        per_class = samples // 10 if samples else (2 if quick else 4)
        cfg = D.RunConfig(seeds=tuple(range(seeds or (1 if quick else 2))), per_class=per_class,
                          steps=steps or (6 if quick else 10))
        self.cfgd = cfg
        self.bench = D.DigitsBench(cfg)
        self.h = self.bench.h
        self.groups = ["digits"]
        self.seeds = list(cfg.seeds)
        self.base_steps = cfg.steps
        self.labels = self.bench.labels

    def config(self) -> dict[str, Any]:
        c = self.cfgd
        return {"samples": int(self.labels.numel()), "seeds": len(c.seeds), "steps": c.steps, "sampler": "euler",
                "scheduler": c.scheduler, "model": self.D.MODEL_NAME, "reference_set": "test split (1000)"}

    def run(self, group: str, spec: Spec, omega: float, seed: int, steps: int) -> dict[str, Any]:
        b = self.bench
        latent = b.dm.digits_empty_latent(self.labels.numel())
        res = self.h.sample(b.model, spec.method(), positive=b.positive, negative=b.negative, latent=latent,
                            seed=seed, steps=steps, cfg=omega, sampler=getattr(spec, "sampler", None) or "euler",
                            scheduler=self.cfgd.scheduler)
        finite = torch.isfinite(res.samples).reshape(res.samples.shape[0], -1).all(dim=1)
        images = b.dm.digits_to_unit(torch.nan_to_num(res.samples, nan=0.0, posinf=1.0, neginf=-1.0))
        feats, probs = b.scorer.classifier.embed(images)
        logp = probs.double().clamp_min(1e-12).log().gather(1, self.labels.reshape(-1, 1)).reshape(-1)
        f = feats.numpy().astype(np.float64)
        return {"set": self.D.frechet_distance(f, b.scorer.test_features), "sample": logp,
                "accuracy": float((probs.argmax(-1) == self.labels).float().mean()),
                "nonfinite": int((~finite).sum()), "evals": res.evals_per_sample, "wall_s": res.wall_s,
                "feats": f}

    def pooled_set(self, runs: list[dict]) -> float:
        return self.D.frechet_distance(np.concatenate([r["feats"] for r in runs]), self.bench.scorer.test_features)

    def set_bootstrap(self, runs_a: list[dict], runs_b: list[dict], reps: int) -> dict[str, float]:
        """Paired bootstrap over samples of the pooled FD difference (same sample indices for both methods)."""
        fa = np.concatenate([r["feats"] for r in runs_a])
        fb = np.concatenate([r["feats"] for r in runs_b])
        ref = self.bench.scorer.test_features
        rng = np.random.default_rng(1)
        boots = []
        for _ in range(reps):
            idx = rng.integers(0, fa.shape[0], fa.shape[0])
            boots.append(self.D.frechet_distance(fa[idx], ref) - self.D.frechet_distance(fb[idx], ref))
        return {"mean": self.D.frechet_distance(fa, ref) - self.D.frechet_distance(fb, ref),
                "lo": float(np.quantile(boots, 0.025)), "hi": float(np.quantile(boots, 0.975))}

    @staticmethod
    def strip(run: dict) -> dict:
        return {k: v for k, v in run.items() if k not in ("feats", "sample")}

    def close(self) -> None:
        pass


BEDS = {"known_score": KnownScoreBed, "digits": DigitsBed}


# ---------------------------------------------------------------------------------------------------
# the sweep


def _okey(omega: float) -> str:
    return f"{float(omega):g}"


def _sig(ci: dict[str, float], lower_is_better: bool) -> str:
    """``better``/``worse``/``tie`` from a (lo, hi) interval of a difference A − B."""
    lo, hi = ci["lo"], ci["hi"]
    if hi < 0:
        return "better" if lower_is_better else "worse"
    if lo > 0:
        return "worse" if lower_is_better else "better"
    return "tie"


def equal_cost_verdict(vs_cfg: str, vs_control: str) -> str:
    """One line per (setting, ω), from the set-metric comparisons."""
    if vs_cfg == "better":
        return {"better": "gain survives equal cost", "tie": "gain disappears at equal cost",
                "worse": "gain reverses at equal cost (more CFG steps are better)"}[vs_control]
    if vs_cfg == "worse":
        return "worse than plain CFG" + (" (and than its equal-cost control)" if vs_control == "worse" else "")
    return "no gain over plain CFG" + ("; beats its equal-cost control" if vs_control == "better" else "")


class Sweep:
    def __init__(self, bed, omegas: tuple[float, ...], reps: int, chains: bool = True,
                 frontier_factors: tuple[float, ...] = (2.0, 3.0, 4.5)) -> None:
        self.bed, self.omegas, self.reps, self.chains = bed, omegas, reps, chains
        self.frontier_factors = frontier_factors
        self.runs: dict[tuple[str, str, str], list[dict]] = {}     # (group, method, ω) -> per seed
        self.specs: dict[str, Spec] = {}
        self.control_steps: dict[tuple[str, str, str], int] = {}

    def _run(self, group: str, spec: Spec, omega: float) -> list[dict]:
        key = (group, spec.name, _okey(omega))
        if key not in self.runs:
            steps = spec.steps or self.bed.base_steps
            self.runs[key] = [self.bed.run(group, spec, omega, seed, steps) for seed in self.bed.seeds]
            self.specs.setdefault(spec.name, spec)
        return self.runs[key]

    def execute(self) -> None:
        base = Spec("cfg", "cfg")
        specs = diffier_settings() + (chain_specs() if self.chains else [])
        # plain CFG at more steps, at every ω: the cost–quality frontier of spending evaluations on steps
        specs += [Spec(f"cfg({round(self.bed.base_steps * f)} steps)", "control", steps=round(self.bed.base_steps * f))
                  for f in self.frontier_factors]
        total = len(self.bed.groups) * len(self.omegas)
        done = 0
        for group in self.bed.groups:
            for omega in self.omegas:
                t0 = time.perf_counter()
                self._run(group, base, omega)
                for spec in specs:
                    runs = self._run(group, spec, omega)
                    if spec.kind == "diffier":
                        evals = sum(r["evals"] for r in runs) / len(runs)   # mean over seeds
                        steps = max(1, round(evals / 2))
                        self.control_steps[(group, spec.name, _okey(omega))] = steps
                        ctrl = Spec(f"cfg({steps} steps)", "control", steps=steps)
                        self._run(group, ctrl, omega)
                done += 1
                log.info("[%d/%d] %s ω=%g done in %.0f s", done, total, group, omega, time.perf_counter() - t0)

    # -- summaries ------------------------------------------------------------------------------------
    def compare(self, group: str, a: str, b: str, okey: str) -> dict[str, Any]:
        ra, rb = self.runs[(group, a, okey)], self.runs[(group, b, okey)]
        bed = self.bed
        sample = bootstrap_mean_diff(torch.cat([r["sample"] for r in ra]), torch.cat([r["sample"] for r in rb]),
                                     self.reps)
        st = bed.set_bootstrap(ra, rb, self.reps if bed.name == "known_score" else max(50, self.reps // 10))
        return {"set": {**st, "seed": seed_diff([r["set"] for r in ra], [r["set"] for r in rb]),
                        "sig": _sig(st, bed.set_lower)},
                "sample": {**sample, "sig": _sig(sample, False)},
                "accuracy": seed_diff([r["accuracy"] for r in ra], [r["accuracy"] for r in rb])}

    def summarise(self) -> dict[str, Any]:
        bed = self.bed
        results: dict[str, Any] = {}
        for (group, name, okey), runs in self.runs.items():
            pooled = bed.pooled_set(runs)
            entry = {
                "set": _stats([r["set"] for r in runs]),
                "sample": _stats([float(r["sample"].mean()) for r in runs]),
                "accuracy": _stats([r["accuracy"] for r in runs]),
                "evals_per_sample": _stats([r["evals"] for r in runs]),
                "wall_s": _stats([r["wall_s"] for r in runs]),
                "nonfinite_samples": sum(r["nonfinite"] for r in runs),
                "steps": self.specs[name].steps or bed.base_steps,
            }
            if pooled is not None:
                entry["set_pooled"] = pooled
            results.setdefault(group, {}).setdefault(name, {})[okey] = entry
        equal_cost: dict[str, Any] = {}
        for (group, name, okey), steps in self.control_steps.items():
            ctrl = f"cfg({steps} steps)"
            vs_ctrl = self.compare(group, name, ctrl, okey)
            vs_cfg = self.compare(group, name, "cfg", okey)
            d_evals = results[group][name][okey]["evals_per_sample"]["mean"]
            c_evals = results[group][ctrl][okey]["evals_per_sample"]["mean"]
            equal_cost.setdefault(group, {}).setdefault(name, {})[okey] = {
                "diffier_evals": d_evals, "control": ctrl, "control_steps": steps, "control_evals": c_evals,
                "base_steps": bed.base_steps, "vs_control": vs_ctrl, "vs_cfg": vs_cfg,
                "verdict": equal_cost_verdict(vs_cfg["set"]["sig"], vs_ctrl["set"]["sig"]),
            }
        chains: dict[str, Any] = {}
        for group in bed.groups:
            for spec in self.specs.values():
                if spec.kind not in ("chain", "anchor"):
                    continue
                for omega in self.omegas:
                    okey = _okey(omega)
                    if (group, spec.name, okey) not in self.runs:
                        continue
                    row = {"vs_cfg": self.compare(group, spec.name, "cfg", okey)}
                    if spec.kind == "chain":
                        row["vs_anchor"] = self.compare(group, spec.name, spec.anchor, okey)
                        row["vs_diffier"] = self.compare(group, spec.name, spec.diffier_alone or DIFFIER, okey)
                    chains.setdefault(group, {}).setdefault(spec.name, {})[okey] = row
        return {"results": results, "equal_cost": equal_cost, "chains": chains,
                "frontier": frontier(results, bed.set_lower)}


def frontier(results: dict, lower: bool) -> dict[str, Any]:
    """Per group and method: the best-ω set metric and its cost (the points of the cost–quality plot)."""
    out: dict[str, Any] = {}
    for group, by_method in results.items():
        out[group] = {}
        for name, by_omega in by_method.items():
            pick = min if lower else max
            best = pick(by_omega, key=lambda o: by_omega[o]["set"]["mean"])
            b = by_omega[best]
            out[group][name] = {"best_omega": best, "set": b["set"]["mean"], "set_ci95": b["set"]["ci95"],
                                "sample": b["sample"]["mean"], "evals_per_sample": b["evals_per_sample"]["mean"],
                                "steps": b["steps"]}
    return out


def run(testbed: str, quick: bool, seeds: int | None = None, samples: int | None = None,
        regimes: list[str] | None = None, omegas: tuple[float, ...] | None = None,
        reps: int | None = None, chains: bool = True, steps: int | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    bed = BEDS[testbed](quick, seeds, samples, regimes, steps)
    omegas = omegas or ((2.0, 5.0) if quick else OMEGAS)
    factors = (2.0,) if quick else ((2.0, 4.0) if testbed == "digits" else (2.0, 3.0, 4.5))
    sweep = Sweep(bed, omegas, reps or (300 if quick else 2000), chains, factors)
    sweep.execute()
    doc = {"schema": SCHEMA, "testbed": testbed, "quick": quick, "config": bed.config(),
           "omegas": [_okey(o) for o in omegas], "groups": bed.groups,
           "set_metric": {"name": bed.set_metric, "label": bed.set_label, "lower_is_better": bed.set_lower},
           "sample_metric": {"name": bed.sample_metric, "label": bed.sample_label, "higher_is_better": True},
           "methods": [s.describe() for s in sweep.specs.values()],
           "per_run": {f"{g}|{n}|{o}": [bed.strip(r) for r in runs] for (g, n, o), runs in sweep.runs.items()}}
    doc.update(sweep.summarise())
    doc["verdicts"] = verdicts(doc)
    doc["runtime_s"] = time.perf_counter() - t0
    return doc


# ---------------------------------------------------------------------------------------------------
# tables and plots


def _ci(c: dict[str, float], digits: int = 3) -> str:
    return f"{c['mean']:+.{digits}f} [{c['lo']:+.{digits}f}, {c['hi']:+.{digits}f}]"


def _mark(sig: str) -> str:
    return {"better": " ▲", "worse": " ▼", "tie": ""}[sig]


_SHORT = {"gain survives equal cost": "**gain survives**", "gain disappears at equal cost": "gain disappears",
          "gain reverses at equal cost (more CFG steps are better)": "gain reverses",
          "no gain over plain CFG; beats its equal-cost control": "no gain (beats control)",
          "no gain over plain CFG": "no gain", "worse than plain CFG": "worse",
          "worse than plain CFG (and than its equal-cost control)": "worse (and than control)"}


def verdicts(doc: dict[str, Any]) -> dict[str, Any]:
    """Counts over ω per group: each DiffIER setting's equal-cost verdicts, each chain's ▲/▼ vs its anchor."""
    out: dict[str, Any] = {}
    for group in doc["groups"]:
        g = out.setdefault(group, {"equal_cost": {}, "chains": {}})
        for name, by_omega in doc["equal_cost"].get(group, {}).items():
            g["equal_cost"][name] = {o: e["verdict"] for o, e in by_omega.items()}
        for name, by_omega in doc["chains"].get(group, {}).items():
            for key in ("vs_anchor", "vs_diffier", "vs_cfg"):
                sigs = {o: row[key]["set"]["sig"] for o, row in by_omega.items() if key in row}
                if sigs:
                    g["chains"].setdefault(name, {})[key] = sigs
    return out


def markdown(doc: dict[str, Any]) -> str:
    sm, pm = doc["set_metric"], doc["sample_metric"]
    out = []
    for group, g in verdicts(doc).items():
        out.append(f"\n#### {doc['testbed']} / {group}: verdicts per ω (set metric)\n")
        out.append("| method | comparison | " + " | ".join(f"ω={o}" for o in doc["omegas"]) + " |")
        out.append("|---|---|" + "---|" * len(doc["omegas"]))
        for name, by_omega in g["equal_cost"].items():
            out.append(f"| {name} | equal cost | " + " | ".join(_SHORT.get(by_omega.get(o, ""), by_omega.get(o, ""))
                                                             for o in doc["omegas"]) + " |")
        for name, comps in g["chains"].items():
            for key, sigs in comps.items():
                cells = [{"better": "▲ better", "worse": "▼ worse", "tie": "tie"}.get(sigs.get(o), "")
                         for o in doc["omegas"]]
                out.append(f"| {name} | {key.replace('_', ' ')} | " + " | ".join(cells) + " |")
    for group in doc["groups"]:
        res = doc["results"][group]
        out.append(f"\n#### {doc['testbed']} / {group}: equal cost (DiffIER − plain CFG; ▲/▼ = 95% CI entirely "
                   f"better/worse)\n")
        out.append(f"Set metric: {sm['label']} (paired bootstrap over samples [2.5 %, 97.5 %]); per-sample: "
                   f"{pm['label']} (paired bootstrap over samples).\n")
        out.append("| setting | ω | evals DiffIER / control (steps) | Δset vs CFG@base | Δset vs equal-cost CFG | "
                   "Δset seed t-CI vs control | Δper-sample vs equal-cost CFG | verdict |")
        out.append("|---|---|---|---|---|---|---|---|")
        for name, by_omega in doc["equal_cost"].get(group, {}).items():
            for okey, e in by_omega.items():
                vc, vk = e["vs_cfg"], e["vs_control"]
                seed = vk["set"]["seed"]
                sci = "n/a" if math.isnan(seed["ci95"]) else f"{seed['mean']:+.3f} ± {seed['ci95']:.3f}"
                out.append(f"| {name} | {okey} | {e['diffier_evals']:.1f} / {e['control_evals']:.0f} "
                           f"({e['control_steps']}) | {_ci(vc['set'])}{_mark(vc['set']['sig'])} | "
                           f"{_ci(vk['set'])}{_mark(vk['set']['sig'])} | {sci} | "
                           f"{_ci(vk['sample'])}{_mark(vk['sample']['sig'])} | {e['verdict']} |")
        out.append(f"\n#### {doc['testbed']} / {group}: {sm['label']} per ω (mean ± 95% t-CI over seeds)\n")
        out.append("| method | evals/sample | " + " | ".join(f"ω={o}" for o in doc["omegas"]) + " |")
        out.append("|---|---|" + "---|" * len(doc["omegas"]))
        for name, by_omega in res.items():
            ev = np.mean([by_omega[o]["evals_per_sample"]["mean"] for o in by_omega])
            cells = []
            for o in doc["omegas"]:
                if o not in by_omega:
                    cells.append("")
                    continue
                st = by_omega[o]["set"]
                v = by_omega[o].get("set_pooled", st["mean"])
                ci = "" if math.isnan(st["ci95"]) or "set_pooled" in by_omega[o] else f" ± {st['ci95']:.3f}"
                cells.append(f"{v:.3f}{ci}")
            out.append(f"| {name} | {ev:.0f} | " + " | ".join(cells) + " |")
        if doc["chains"].get(group):
            out.append(f"\n#### {doc['testbed']} / {group}: chains (paired Δ{sm['name']}, bootstrap 95% CI; "
                       f"▲ = chain better)\n")
            out.append("| chain | ω | vs its anchor alone | vs DiffIER alone | vs plain CFG | Δper-sample vs anchor |")
            out.append("|---|---|---|---|---|---|")
            for name, by_omega in doc["chains"][group].items():
                for okey, row in by_omega.items():
                    if "vs_anchor" not in row:
                        continue
                    va = row["vs_anchor"]["set"]
                    out.append(f"| {name} | {okey} | {_ci(va)}{_mark(va['sig'])}"
                               f" | {_ci(row['vs_diffier']['set'])}{_mark(row['vs_diffier']['set']['sig'])} | "
                               f"{_ci(row['vs_cfg']['set'])}{_mark(row['vs_cfg']['set']['sig'])} | "
                               f"{_ci(row['vs_anchor']['sample'])}{_mark(row['vs_anchor']['sample']['sig'])} |")
        out.append(f"\n#### {doc['testbed']} / {group}: cost–quality frontier "
                   "(each method at its best ω; methods run at every ω)\n")
        out.append(f"| method | evals/sample | steps | best ω | {sm['name']} at best ω | {pm['name']} |")
        out.append("|---|---|---|---|---|---|")
        for name, f in sorted(doc["frontier"][group].items(), key=lambda kv: kv[1]["set"]):
            if len(res[name]) < len(doc["omegas"]):
                continue   # an equal-cost control run at one ω only: no best ω to speak of
            ci = "" if math.isnan(f["set_ci95"]) else f" ± {f['set_ci95']:.3f}"
            out.append(f"| {name} | {f['evals_per_sample']:.0f} | {f['steps']} | {f['best_omega']} | "
                       f"{f['set']:.3f}{ci} | {f['sample']:.3f} |")
    out.append(f"\nruntime: {doc.get('runtime_s', float('nan')):.0f} s")
    return "\n".join(out)


def _set_value(entry: dict) -> float:
    return entry.get("set_pooled", entry["set"]["mean"])


def plot(doc: dict[str, Any], out_dir: Path, suffix: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tb, sm, pm = doc["testbed"], doc["set_metric"], doc["sample_metric"]
    groups = doc["groups"]
    omegas = [float(o) for o in doc["omegas"]]
    kinds = {m["name"]: m["kind"] for m in doc["methods"]}
    colours = {"cfg": "black", DIFFIER: "tab:blue", "apg": "tab:green", "rescalecfg(0.7)": "tab:orange",
               "cfgzerostar": "tab:red", "apg→diffier": "tab:green", "rescalecfg→diffier": "tab:orange",
               "diffier→cfgzerostar": "tab:red", "diffier(eta=.05,it=1)": "tab:purple",
               DIFFIER_COND: "tab:brown", "diffier(eta=.05,it=4,win=.5-1)": "tab:cyan",
               "apg→diffier-cond": "tab:olive", "rescalecfg→diffier-cond": "tab:pink",
               "diffier-cond→cfgzerostar": "tab:gray"}
    paths = []

    # 1. quality vs ω: chains (set and per-sample metric), equal-cost differences
    fig, axes = plt.subplots(len(groups), 3, figsize=(17, 4.6 * len(groups) + 1.0), squeeze=False)
    for r, group in enumerate(groups):
        res = doc["results"][group]
        for name in ["cfg", DIFFIER, DIFFIER_COND, "apg", "rescalecfg(0.7)", "cfgzerostar", "apg→diffier",
                     "rescalecfg→diffier", "diffier→cfgzerostar", "apg→diffier-cond", "rescalecfg→diffier-cond",
                     "diffier-cond→cfgzerostar"]:
            if name not in res:
                continue
            ls = "--" if kinds.get(name) == "chain" else "-"
            xs = [o for o in omegas if _okeyf(o) in res[name]]
            for c, key in ((0, "set"), (1, "sample")):
                vals = [_set_value(res[name][_okeyf(o)]) if key == "set" else res[name][_okeyf(o)][key]["mean"]
                        for o in xs]
                cis = [res[name][_okeyf(o)][key]["ci95"] for o in xs]
                cis = [0.0 if (math.isnan(v) or (key == "set" and "set_pooled" in res[name][_okeyf(o)])) else v
                       for v, o in zip(cis, xs, strict=True)]
                axes[r][c].errorbar(xs, vals, yerr=cis, color=colours.get(name), ls=ls, marker="o", ms=3, lw=1.2,
                                    capsize=2, label=name)
        ax = axes[r][2]
        for name, by_omega in doc["equal_cost"].get(group, {}).items():
            xs = [o for o in omegas if _okeyf(o) in by_omega]
            for key, ls, lab in (("vs_control", "-", "vs equal-cost CFG"), ("vs_cfg", ":", "vs CFG@base steps")):
                d = [by_omega[_okeyf(o)][key]["set"] for o in xs]
                m = [v["mean"] for v in d]
                err = [[max(0.0, v["mean"] - v["lo"]) for v in d], [max(0.0, v["hi"] - v["mean"]) for v in d]]
                ax.errorbar(xs, m, yerr=err, color=colours.get(name), ls=ls, marker="s" if ls == "-" else None, ms=3,
                            lw=1.2, capsize=2, label=f"{name} {lab}")
        ax.axhline(0.0, color="grey", lw=0.8)
        titles = (f"{group}: {sm['label']}", f"{group}: {pm['label']} (CFGZeroStar off-frame if it diverges)",
                  f"{group}: Δ{sm['name']} DiffIER − CFG (paired 95% CI; < 0: DiffIER better)")
        sane = [res[n][o]["sample"]["mean"] for n in res if "cfgzerostar" not in n for o in res[n]]
        span = max(sane) - min(sane)
        axes[r][1].set_ylim(min(sane) - 0.15 * span, max(sane) + 0.15 * span)
        for c in range(3):
            a = axes[r][c]
            a.set_xscale("log")
            a.set_xticks(omegas)
            a.set_xticklabels([f"{o:g}" for o in omegas], fontsize=7)
            a.minorticks_off()
            a.set_xlabel("guidance weight ω", fontsize=8)
            a.set_title(titles[c], fontsize=9)
            a.grid(alpha=0.3)
        if tb == "known_score":
            lo = min(_set_value(res[n][o]) for n in res for o in res[n]) - 0.02
            axes[r][0].set_ylim(lo, max(0.8, lo + 0.1))
            axes[r][0].axhline(0.0, color="grey", lw=0.6)
        else:
            axes[r][0].set_yscale("log")
        axes[r][0].legend(fontsize=7)
        axes[r][2].legend(fontsize=6)
    fig.suptitle(f"{tb}: quality vs ω — chains through the real nodes (solid: alone, dashed: chained with DiffIER) "
                 f"and DiffIER vs its equal-cost CFG control", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = out_dir / f"cost_and_chains_{tb}_vs_omega{suffix}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)

    # 2. cost–quality frontier
    fig, axes = plt.subplots(1, len(groups), figsize=(7.5 * len(groups), 5.6), squeeze=False)
    for r, group in enumerate(groups):
        ax = axes[0][r]
        res, front = doc["results"][group], doc["frontier"][group]
        for name, by_omega in res.items():
            xs = [by_omega[o]["evals_per_sample"]["mean"] for o in by_omega]
            ys = [_set_value(by_omega[o]) for o in by_omega]
            colour = "grey" if kinds.get(name) in ("cfg", "control") else colours.get(name)
            ax.scatter(xs, ys, s=6, color=colour, alpha=0.25)
        line = sorted((n for n in front if kinds.get(n) in ("cfg", "control") and len(res[n]) == len(doc["omegas"])),
                      key=lambda n: front[n]["evals_per_sample"])
        ax.plot([front[n]["evals_per_sample"] for n in line], [_best_value(res, n, front) for n in line],
                color="black", marker="o", lw=1.5, label="plain CFG, more steps (best ω each)")
        for name, f in front.items():
            if kinds.get(name) in ("cfg", "control"):
                continue
            mk = "s" if kinds.get(name) == "diffier" else ("D" if kinds.get(name) == "chain" else "^")
            ax.scatter([f["evals_per_sample"]], [_best_value(res, name, front)], s=45, marker=mk,
                       color=colours.get(name), edgecolor="black", lw=0.5, zorder=3,
                       label=f"{name} (ω={f['best_omega']})")
        ax.set_xscale("log")
        ax.set_xlabel("model evaluations per sample (log)", fontsize=8)
        ax.set_ylabel(f"{sm['label']} at best ω", fontsize=8)
        if tb == "known_score":
            lo = min(_best_value(res, n, front) for n in front) - 0.03
            ax.set_ylim(lo, lo + 0.6)
            ax.axhline(0.0, color="grey", lw=0.6)
        else:
            ax.set_yscale("log")
        ax.set_title(f"{group}: cost–quality (big markers: best ω per method; dots: every ω;\n"
                     f"off-frame: diverged)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.suptitle(f"{tb}: quality vs model evaluations per sample", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path = out_dir / f"cost_frontier_{tb}{suffix}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)
    return paths


def _okeyf(o: float) -> str:
    return f"{o:g}"


def _best_value(res: dict, name: str, front: dict) -> float:
    return _set_value(res[name][front[name]["best_omega"]])


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One document from runs of the same testbed on disjoint groups (e.g. one process per regime)."""
    out = json.loads(json.dumps(docs[0]))
    for d in docs[1:]:
        if d["testbed"] != out["testbed"] or d["omegas"] != out["omegas"]:
            raise ValueError("merge needs runs of one testbed over the same ω")
        out["groups"] += [g for g in d["groups"] if g not in out["groups"]]
        for key in ("results", "equal_cost", "chains", "frontier"):
            out[key].update(d[key])
        out["per_run"].update(d["per_run"])
        known = {m["name"] for m in out["methods"]}
        out["methods"] += [m for m in d["methods"] if m["name"] not in known]
        if "regimes" in out["config"]:
            out["config"]["regimes"].update(d["config"]["regimes"])
        out["runtime_s"] = max(out["runtime_s"], d["runtime_s"])
    out["runtime_s_all_processes"] = sum(d["runtime_s"] for d in docs)
    out["verdicts"] = verdicts(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m benchmarks.cost_and_chains")
    p.add_argument("--testbed", choices=list(BEDS), default="known_score")
    p.add_argument("--quick", action="store_true", help="CI smoke subset (about a minute)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default docs/results)")
    p.add_argument("--seeds", type=int)
    p.add_argument("--samples", type=int, help="samples per run (digits: rounded down to a multiple of 10)")
    p.add_argument("--regimes", nargs="+", help="known_score: regimes to run")
    p.add_argument("--steps", type=int, help="base sampling steps")
    p.add_argument("--omegas", nargs="+", type=float)
    p.add_argument("--reps", type=int, help="bootstrap resamples")
    p.add_argument("--no-chains", action="store_true", help="equal-cost part only")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--replot", type=Path, help="redraw plots (and tables) from an existing JSON")
    p.add_argument("--markdown", action="store_true", help="print the Markdown tables")
    p.add_argument("--merge", nargs="+", type=Path, help="merge per-regime JSONs into --out (then plot)")
    p.add_argument("--tag", default="", help="suffix of the output file names (parallel per-regime processes)")
    args = p.parse_args(argv)
    if args.merge:
        doc = merge([json.loads(f.read_text()) for f in args.merge])
        out_dir = args.out or DEFAULT_OUT
        suffix = "_quick" if doc["quick"] else ""
        path = out_dir / f"cost_and_chains_{doc['testbed']}{suffix}.json"
        path.write_text(json.dumps(doc, indent=1, allow_nan=True))
        print(markdown(doc))
        print("wrote", path, *([] if args.no_plots else plot(doc, out_dir, suffix)))
        return 0
    if args.replot is not None:
        doc = json.loads(args.replot.read_text())
        if args.markdown:
            print(markdown(doc))
        if not args.no_plots:
            print("wrote", *plot(doc, args.out or args.replot.parent, "_quick" if doc["quick"] else ""))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    out_dir = args.out or DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        doc = run(args.testbed, args.quick, args.seeds, args.samples, args.regimes,
                  tuple(args.omegas) if args.omegas else None, args.reps, not args.no_chains, args.steps)
    finally:
        from scripts import comfy_inprocess

        comfy_inprocess.release_models()
    suffix = ("_quick" if args.quick else "") + args.tag
    json_path = out_dir / f"cost_and_chains_{args.testbed}{suffix}.json"
    json_path.write_text(json.dumps(doc, indent=1, allow_nan=True))
    paths = [] if args.no_plots else plot(doc, out_dir, suffix)
    print(markdown(doc))
    print("wrote", json_path, *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
