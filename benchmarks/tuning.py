"""The one tuning protocol and the one method/setting registry of the tuned benchmarks.

Every testbed (``python -m benchmarks.tuned --testbed known_score|digits|sr|sr_photos``) runs the same protocol:

1. **Registry.** Each method declares a grid of settings (:func:`method_grids`), each setting a chain of real
   ComfyUI MODEL-patch nodes. Every method gets the same configuration budget (:data:`BUDGET` settings at most; the
   number is written to the JSON). A method with fewer real knobs is run on all of them and says so
   (``knobs_note``); nothing is padded.
2. **Tuning.** Every setting of every method (and plain CFG) runs at every ω on the *tuning* seeds (a cheap set: few
   seeds, fewer samples). Per ω the setting with the best tuning score is chosen (:func:`choose_per_omega`); the one
   setting best averaged over all ω is chosen too (:func:`choose_all_omega`: mean over ω of the score's difference
   from plain CFG, or of its log-ratio for a positive metric such as FD), i.e. what a user would leave on.
3. **Test.** Only the chosen settings run on the *test* seeds (disjoint from the tuning seeds), with paired bootstrap
   95 % intervals against plain CFG at the same ω, the same seeds and the same initial noise.
4. **Equal-cost controls.** At each ω, plain CFG given DiffIER's (tuned) evaluation count as more Euler steps, and
   dpmpp_2m and uni_pc with the same evaluation count.
5. **Chains** (DiffIER → APG, APG → DiffIER, DiffIER → CFGZeroStar, RescaleCFG → DiffIER), each component at its own
   per-ω tuned setting (tuned alone, not jointly).

This module is the one place where the benchmarks declare methods: node ids (:data:`NODE_IDS`), grids
(:func:`method_grids`), chains (:data:`CHAINS`), the cost frontier's DiffIER points (:func:`frontier_variants`) and
the overhead benchmark's DiffIER inputs (:data:`OVERHEAD_DIFFIER`).

A *bed* (:mod:`benchmarks.testbeds`) supplies sampling and scoring: ``run(group, job, omega, seed, steps)`` returning
``{"set": float, "evals": float, ...}``, ``pooled_set(runs)`` (or None: the score is the mean of ``set`` over
seeds), ``set_bootstrap(runs_a, runs_b, reps)`` (paired bootstrap of the score difference), ``set_lower`` and
``aggregate`` (``"difference"`` or ``"log_ratio"``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["BUDGET", "QUICK_BUDGET", "NODE_IDS", "OVERHEAD_DIFFIER", "Setting", "Job", "method_grids", "Variant",
           "frontier_variants", "choose_per_omega", "choose_all_omega", "Protocol", "okey", "significance"]

#: the configuration budget: settings tried per method (full and ``--quick`` runs)
BUDGET = 24
QUICK_BUDGET = 4
#: the ComfyUI node id of every method's MODEL-patch node (plain CFG has none); the sweep's aliases come from here
NODE_IDS = {"diffier": "DiffIERGuider", "apg": "APG", "rescalecfg": "RescaleCFG", "epsilon_scaling": "Epsilon Scaling",
            "cfgzerostar": "CFGZeroStar", "tcfg": "TCFG"}
#: DiffIER's fixed options in every setting (the node's defaults for the knobs not tuned)
DIFFIER_FIXED = {"mode": "consistency", "threshold": 1e-3}
KNOBS_NOTE = {
    "cfg": "reference: plain CFG has no knob besides ω",
    "apg": "eta × norm_threshold × momentum: the node's three knobs",
    "diffier": "eta × max_iters × inner_guidance × (start_percent, end_percent) window; mode = consistency, "
               "threshold = 1e-3 fixed",
    "rescalecfg": "multiplier is the node's only knob: fewer settings, not padded",
    "epsilon_scaling": "scaling_factor is the node's only knob: fewer settings, not padded",
    "cfgzerostar": "ComfyUI 0.3.75's CFGZeroStar node has no options: one setting",
    "tcfg": "ComfyUI 0.3.75's TCFG node has no options: one setting",
}


def okey(omega: float) -> str:
    """The JSON key of a guidance weight."""
    return f"{float(omega):g}"


@dataclasses.dataclass(frozen=True)
class Setting:
    """One configuration of one method: real ComfyUI MODEL-patch nodes applied in order.

    Args:
        method: registry name (``apg``, ``diffier``, ...).
        label: unique, readable name (``apg(eta=0,thr=2.5,mom=0)``).
        knobs: the tuned values.
        patches: ``((node_id, inputs), ...)``.
    """

    method: str
    label: str
    knobs: tuple[tuple[str, Any], ...]
    patches: tuple[tuple[str, dict[str, Any]], ...]

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "knobs": dict(self.knobs), "patches": [[n, p] for n, p in self.patches]}


@dataclasses.dataclass(frozen=True)
class Job:
    """A runnable configuration: patches, and optionally another step count or sampler (controls).

    Args:
        name: unique cache key and label.
        patches: real MODEL-patch nodes in order.
        steps: sampling steps (None: the bed's base steps).
        sampler: KSampler sampler name (None: the bed's).
    """

    name: str
    patches: tuple[tuple[str, dict[str, Any]], ...] = ()
    steps: int | None = None
    sampler: str | None = None

    def method(self) -> Any:
        """The ``benchmarks.harness.Method`` of this job (imported here: the harness needs ComfyUI's runtime)."""
        from .harness import Method

        return Method(self.name, self.patches)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _setting(method: str, short: str, knobs: dict[str, Any], patches: tuple) -> Setting:
    label = f"{short}(" + ",".join(f"{k}={_fmt(v)}" for k, v in knobs.items()) + ")" if knobs else short
    return Setting(method, label, tuple(knobs.items()), patches)


def _apg(eta: float, thr: float, mom: float) -> Setting:
    return _setting("apg", "apg", {"eta": eta, "thr": thr, "mom": mom},
                    ((NODE_IDS["apg"], {"eta": eta, "norm_threshold": thr, "momentum": mom}),))


def diffier_node(eta: float, it: int, inner: str, window: tuple[float, float]) -> tuple[str, dict[str, Any]]:
    """The DiffIERGuider node with these knobs (the other inputs fixed, :data:`DIFFIER_FIXED`)."""
    return (NODE_IDS["diffier"], {**DIFFIER_FIXED, "eta": eta, "max_iters": it, "start_percent": window[0],
                              "end_percent": window[1], "inner_guidance": inner})


#: the DiffIER node inputs of ``benchmarks.overhead`` (as its committed results ran): η 0.05, 4 iterations at every
#: step, the guided ("cfg") inner evaluation
OVERHEAD_DIFFIER: dict[str, Any] = diffier_node(0.05, 4, "cfg", (0.0, 1.0))[1]


def _diffier(eta: float, it: int, inner: str, window: tuple[float, float]) -> Setting:
    knobs = {"eta": eta, "it": it, "inner": inner, "win": f"{window[0]:g}-{window[1]:g}"}
    return _setting("diffier", "diffier", knobs, (diffier_node(eta, it, inner, window),))


def method_grids(quick: bool = False) -> dict[str, list[Setting]]:
    """Every method's declared grid (``quick``: the reduced CI grid, budget :data:`QUICK_BUDGET`)."""
    if quick:
        apg = [_apg(e, t, 0.0) for e, t in itertools.product((0.0, 1.0), (0.0, 5.0))]
        dif = [_diffier(e, 1, g, (0.0, 1.0)) for e, g in itertools.product((0.05, 0.2), ("cond", "cfg"))]
        rescale, eps = (0.5, 0.9), (1.001, 1.005)
    else:
        apg = [_apg(e, t, m) for e, t, m in itertools.product((0.0, 0.5, 1.0), (0.0, 2.5, 5.0, 10.0), (0.0, -0.5))]
        dif = [_diffier(e, it, g, w) for e, it, g, w in itertools.product(
            (0.05, 0.2), (1, 4), ("cond", "cfg"), ((0.0, 1.0), (0.0, 0.5), (0.5, 1.0)))]
        rescale, eps = (0.3, 0.5, 0.7, 0.9), (1.001, 1.003, 1.005, 1.01)
    grids = {
        "cfg": [_setting("cfg", "cfg", {}, ())],
        "apg": apg,
        "diffier": dif,
        "rescalecfg": [_setting("rescalecfg", "rescalecfg", {"mult": m}, ((NODE_IDS["rescalecfg"], {"multiplier": m}),))
                       for m in rescale],
        "epsilon_scaling": [_setting("epsilon_scaling", "eps", {"factor": f},
                                     ((NODE_IDS["epsilon_scaling"], {"scaling_factor": f}),)) for f in eps],
        "cfgzerostar": [_setting("cfgzerostar", "cfgzerostar", {}, ((NODE_IDS["cfgzerostar"], {}),))],
        "tcfg": [_setting("tcfg", "tcfg", {}, ((NODE_IDS["tcfg"], {}),))],
    }
    budget = QUICK_BUDGET if quick else BUDGET
    for name, grid in grids.items():
        if len(grid) > budget:
            raise ValueError(f"method {name!r} has {len(grid)} settings, over the budget of {budget}")
        if len({s.label for s in grid}) != len(grid):
            raise ValueError(f"method {name!r} has duplicate setting labels")
    return grids


@dataclasses.dataclass(frozen=True)
class Variant:
    """One DiffIER setting of the cost frontier (:mod:`benchmarks.frontier`).

    Args:
        family: ``quality``, ``iterations``, ``window``, ``stride`` or ``inner``.
        eta: step size; max_iters: inner iterations per corrected step.
        start, end: the ``start_percent``/``end_percent`` window.
        stride: correct every ``stride``-th guided call inside the window (1 = all).
        inner: ``cond`` or ``cfg`` inner evaluation.
    """

    family: str
    eta: float
    max_iters: int
    start: float = 0.0
    end: float = 1.0
    stride: int = 1
    inner: str = "cond"

    @property
    def label(self) -> str:
        parts = [f"eta={self.eta:g}", f"it={self.max_iters}"]
        if (self.start, self.end) != (0.0, 1.0):
            parts.append(f"win={self.start:g}-{self.end:g}")
        if self.stride != 1:
            parts.append(f"every={self.stride}")
        if self.inner != "cond":
            parts.append(f"inner={self.inner}")
        return "diffier(" + ",".join(parts) + ")"

    def settings(self) -> dict[str, Any]:
        """The DiffIER inputs of this point (``stride`` is the patch's; the node inputs are the rest)."""
        return {**DIFFIER_FIXED, "eta": self.eta, "max_iters": self.max_iters, "start_percent": self.start,
                "end_percent": self.end, "inner_guidance": self.inner, "stride": self.stride}



def frontier_variants(quick: bool = False) -> list[Variant]:
    """The DiffIER points of the cost frontier (:mod:`benchmarks.frontier`; ``quick``: the CI subset)."""
    quality = Variant("quality", 0.05, 4)
    if quick:
        return [quality, Variant("iterations", 0.3, 1), Variant("stride", 0.4, 1, stride=3)]
    out = [quality]
    out += [Variant("iterations", e, 1) for e in (0.05, 0.1, 0.2, 0.3, 0.45)]
    out += [Variant("iterations", e, 2) for e in (0.1, 0.2)]
    out += [Variant("window", 0.2, 4, 0.0, 0.5), Variant("window", 0.2, 2, 0.0, 0.5),
            Variant("window", 0.3, 1, 0.0, 0.5), Variant("window", 0.3, 1, 0.5, 1.0),
            Variant("window", 0.3, 1, 0.0, 0.3), Variant("window", 0.45, 1, 0.0, 0.3)]
    out += [Variant("stride", e, 1, stride=2) for e in (0.2, 0.35, 0.5)]
    out += [Variant("stride", 0.2, 2, stride=2)]
    out += [Variant("stride", e, 1, stride=3) for e in (0.3, 0.5, 0.7)]
    out += [Variant("stride", 0.5, 1, stride=4), Variant("stride", 0.45, 1, 0.0, 0.6, stride=2)]
    out += [Variant("inner", 0.2, 1, inner="cfg")]
    if len(out) > BUDGET:
        raise ValueError(f"{len(out)} DiffIER points, over the tuning budget of {BUDGET}")
    return out


# ---------------------------------------------------------------------------------------------------
# selection


def choose_per_omega(scores: dict[str, dict[str, float]], lower: bool) -> dict[str, str]:
    """Per ω the best setting. ``scores``: label → ω-key → tuning score. Ties go to the first label listed."""
    omegas = next(iter(scores.values())).keys()
    pick = min if lower else max
    return {o: pick(scores, key=lambda lab, o=o: _finite(scores[lab][o], lower)) for o in omegas}


def all_omega_value(scores: dict[str, float], cfg: dict[str, float], aggregate: str) -> float:
    """Mean over ω of the score relative to plain CFG: its difference, or the log of its ratio."""
    vals = []
    for o, v in scores.items():
        if aggregate == "log_ratio":
            vals.append(math.log(max(v, 1e-12) / max(cfg[o], 1e-12)) if math.isfinite(v) else math.inf)
        elif aggregate == "difference":
            vals.append(v - cfg[o])
        else:
            raise ValueError(f"aggregate must be 'difference' or 'log_ratio', got {aggregate!r}")
    return sum(vals) / len(vals)


def choose_all_omega(scores: dict[str, dict[str, float]], cfg: dict[str, float], lower: bool,
                     aggregate: str) -> tuple[str, dict[str, float]]:
    """The one setting best averaged over ω, and every setting's aggregate value."""
    agg = {lab: all_omega_value(s, cfg, aggregate) for lab, s in scores.items()}
    pick = min if lower else max
    return pick(agg, key=lambda lab: _finite(agg[lab], lower)), agg


def _finite(v: float, lower: bool) -> float:
    """NaN never wins."""
    if math.isnan(v):
        return math.inf if lower else -math.inf
    return v


def significance(ci: dict[str, float], lower: bool) -> str:
    """``better``/``worse``/``tie`` from the (lo, hi) interval of a difference A − B."""
    if ci["hi"] < 0:
        return "better" if lower else "worse"
    if ci["lo"] > 0:
        return "worse" if lower else "better"
    return "tie"


# ---------------------------------------------------------------------------------------------------
# the protocol


CHAINS = (  # name, (component methods in patch order)
    ("diffier→apg", ("diffier", "apg")),
    ("apg→diffier", ("apg", "diffier")),
    ("diffier→cfgzerostar", ("diffier", "cfgzerostar")),
    ("rescalecfg→diffier", ("rescalecfg", "diffier")),
)
CONTROL_SAMPLERS = ("euler", "dpmpp_2m", "uni_pc")


class Protocol:
    """Tune every method on the tuning bed, then test the chosen settings on the test bed.

    Args:
        tune_bed: bed for the tuning runs (fewer samples).
        test_bed: bed for the test runs.
        omegas: guidance weights.
        tuning_seeds: seeds of the tuning runs; test_seeds: of the test runs (must be disjoint).
        grids: :func:`method_grids` output.
        reps: bootstrap resamples.
        progress: ``tqdm``-like factory (``progress(total=, desc=)``) or None.
    """

    def __init__(self, tune_bed: Any, test_bed: Any, omegas: Sequence[float], tuning_seeds: Sequence[int],
                 test_seeds: Sequence[int], grids: dict[str, list[Setting]], reps: int,
                 progress: Callable[..., Any] | None = None) -> None:
        if set(tuning_seeds) & set(test_seeds):
            raise ValueError(f"tuning_seeds {list(tuning_seeds)} and test_seeds {list(test_seeds)} overlap")
        if not tuning_seeds or not test_seeds:
            raise ValueError("tuning_seeds and test_seeds must both be non-empty")
        self.tune_bed, self.test_bed = tune_bed, test_bed
        self.omegas = [float(o) for o in omegas]
        self.tuning_seeds, self.test_seeds = list(tuning_seeds), list(test_seeds)
        self.grids, self.reps = grids, reps
        self.progress = progress
        self.runs: dict[tuple[str, str, str, str], list[dict]] = {}   # (phase, group, job, ω) -> per seed
        self.timing: dict[str, float] = {}

    # -- running -------------------------------------------------------------------------------------
    def _run(self, phase: str, group: str, job: Job, omega: float, bar: Any = None) -> list[dict]:
        key = (phase, group, job.name, okey(omega))
        if key not in self.runs:
            bed = self.tune_bed if phase == "tuning" else self.test_bed
            seeds = self.tuning_seeds if phase == "tuning" else self.test_seeds
            steps = job.steps or bed.base_steps
            self.runs[key] = [bed.run(group, job, omega, s, steps) for s in seeds]
        if bar is not None:
            bar.update(1)
        return self.runs[key]

    def score(self, phase: str, group: str, name: str, o: str) -> float:
        runs = self.runs[(phase, group, name, o)]
        bed = self.tune_bed if phase == "tuning" else self.test_bed
        pooled = bed.pooled_set(runs)
        return float(pooled) if pooled is not None else sum(r["set"] for r in runs) / len(runs)

    def _bar(self, total: int, desc: str) -> Any:
        return self.progress(total=total, desc=desc) if self.progress else None

    def tune(self) -> dict[str, Any]:
        """Every setting at every ω on the tuning seeds; the choices per group and method."""
        t0 = time.perf_counter()
        groups = self.tune_bed.groups
        total = len(groups) * len(self.omegas) * sum(len(g) for g in self.grids.values())
        bar = self._bar(total, "tuning")
        for group in groups:
            for omega in self.omegas:
                for grid in self.grids.values():
                    for s in grid:
                        self._run("tuning", group, Job(s.label, s.patches), omega, bar)
        if bar is not None:
            bar.close()
        lower, agg = self.tune_bed.set_lower, self.tune_bed.aggregate
        choice: dict[str, Any] = {}
        for group in groups:
            cfg = {okey(o): self.score("tuning", group, "cfg", okey(o)) for o in self.omegas}
            for name, grid in self.grids.items():
                scores = {s.label: {okey(o): self.score("tuning", group, s.label, okey(o)) for o in self.omegas}
                          for s in grid}
                per_omega = choose_per_omega(scores, lower)
                best_all, agg_values = choose_all_omega(scores, cfg, lower, agg)
                choice.setdefault(group, {})[name] = {"scores": scores, "per_omega": per_omega,
                                                      "all_omega": best_all, "all_omega_values": agg_values}
        self.choice = choice
        self.timing["tuning_s"] = time.perf_counter() - t0
        return choice

    def _setting(self, method: str, label: str) -> Setting:
        return next(s for s in self.grids[method] if s.label == label)

    def test_jobs(self, group: str, o: str) -> dict[str, Job]:
        """The test-phase jobs at ω ``o`` (keys: roles such as ``apg@omega``, ``apg@all``, chains, controls)."""
        ch = self.choice[group]
        jobs: dict[str, Job] = {}
        for name in self.grids:
            for role, label in (("omega", ch[name]["per_omega"][o]), ("all", ch[name]["all_omega"])):
                s = self._setting(name, label)
                jobs[f"{name}@{role}"] = Job(s.label, s.patches)
        for chain, parts in CHAINS:
            settings = [self._setting(p, ch[p]["per_omega"][o]) for p in parts]
            patches = tuple(p for s in settings for p in s.patches)
            jobs[chain] = Job(f"{chain}[" + " + ".join(s.label for s in settings) + "]", patches)
        return jobs

    def control_steps(self, group: str, o: str) -> int:
        """Steps of the equal-cost controls: DiffIER's per-ω tuned evaluations per sample / 2 (cond + uncond)."""
        label = self.choice[group]["diffier"]["per_omega"][o]
        runs = self.runs[("tuning", group, label, o)]
        evals = sum(r["evals"] for r in runs) / len(runs)
        return max(self.test_bed.base_steps, round(evals / 2))

    def test(self) -> dict[str, Any]:
        """The chosen settings, chains and equal-cost controls on the test seeds, compared with plain CFG."""
        t0 = time.perf_counter()
        groups = self.test_bed.groups
        plan: dict[tuple[str, str], dict[str, Job]] = {}
        for group in groups:
            for omega in self.omegas:
                o = okey(omega)
                jobs = self.test_jobs(group, o)
                steps = self.control_steps(group, o)
                for sampler in CONTROL_SAMPLERS:
                    jobs[f"control:{sampler}"] = Job(f"cfg[{sampler},{steps} steps]", (), steps=steps,
                                                     sampler=sampler)
                plan[(group, o)] = jobs
        bar = self._bar(sum(len(j) for j in plan.values()), "test")
        for (group, o), jobs in plan.items():
            for job in jobs.values():
                self._run("test", group, job, float(o), bar)
        if bar is not None:
            bar.close()
        self.plan = plan
        self.timing["test_s"] = time.perf_counter() - t0
        return plan

    # -- summaries -----------------------------------------------------------------------------------
    def compare(self, phase: str, group: str, a: str, b: str, o: str) -> dict[str, Any]:
        """Paired bootstrap of score(a) − score(b) (same seeds, same initial noise)."""
        bed = self.tune_bed if phase == "tuning" else self.test_bed
        ci = bed.set_bootstrap(self.runs[(phase, group, a, o)], self.runs[(phase, group, b, o)], self.reps)
        return {**ci, "sig": significance(ci, bed.set_lower)}

    def entry(self, phase: str, group: str, name: str, o: str) -> dict[str, Any]:
        from . import metrics as M

        runs = self.runs[(phase, group, name, o)]
        per_seed = [r["set"] for r in runs]
        mean, ci = M.mean_ci(per_seed)
        out = {"setting": name, "score": self.score(phase, group, name, o), "per_seed": per_seed,
               "seed_mean": mean, "seed_ci95": ci,
               "evals_per_sample": sum(r["evals"] for r in runs) / len(runs),
               "wall_s": sum(r["wall_s"] for r in runs), "nonfinite_samples": sum(r["nonfinite"] for r in runs)}
        if name != "cfg":
            out["vs_cfg"] = self.compare(phase, group, name, "cfg", o)
        return out

    def summarise(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for group in self.test_bed.groups:
            methods: dict[str, Any] = {}
            chains: dict[str, Any] = {}
            controls: dict[str, Any] = {}
            for name in self.grids:
                ch = self.choice[group][name]
                tuning_table = {lab: {o: {"score": v, "evals_per_sample": self._evals("tuning", group, lab, o)}
                                      for o, v in by_o.items()} for lab, by_o in ch["scores"].items()}
                m = {"tuning_scores": tuning_table, "chosen_per_omega": ch["per_omega"],
                     "chosen_all_omega": ch["all_omega"], "all_omega_values": ch["all_omega_values"],
                     "tuning": {}, "test": {}, "test_all_omega": {}}
                for omega in self.omegas:
                    o = okey(omega)
                    m["tuning"][o] = self.entry("tuning", group, ch["per_omega"][o], o)
                    m["test"][o] = self.entry("test", group, self.plan[(group, o)][f"{name}@omega"].name, o)
                    m["test_all_omega"][o] = self.entry("test", group, self.plan[(group, o)][f"{name}@all"].name, o)
                methods[name] = m
            for omega in self.omegas:
                o = okey(omega)
                jobs = self.plan[(group, o)]
                for chain, parts in CHAINS:
                    e = self.entry("test", group, jobs[chain].name, o)
                    for p in parts:
                        e[f"vs_{p}"] = self.compare("test", group, jobs[chain].name, jobs[f"{p}@omega"].name, o)
                    chains.setdefault(chain, {})[o] = e
                for sampler in CONTROL_SAMPLERS:
                    job = jobs[f"control:{sampler}"]
                    e = self.entry("test", group, job.name, o)
                    e.update(steps=job.steps, sampler=sampler,
                             vs_diffier=self.compare("test", group, jobs["diffier@omega"].name, job.name, o))
                    controls.setdefault(sampler, {})[o] = e
            out[group] = {"methods": methods, "chains": chains, "controls": controls}
        return out

    def _evals(self, phase: str, group: str, name: str, o: str) -> float:
        runs = self.runs[(phase, group, name, o)]
        return sum(r["evals"] for r in runs) / len(runs)
