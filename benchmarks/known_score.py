"""Testbed 1 — known scores: CFG fixes on a class-conditional GMM whose exact score is known.

One command (from the repository root)::

    .venv/bin/python -m benchmarks.known_score            # full run  -> docs/results/known_score.json + PNGs
    .venv/bin/python -m benchmarks.known_score --quick --out /tmp/ks   # CI smoke run (minutes)

The data are a class-conditional Gaussian mixture (:mod:`benchmarks.testbeds.gmm`); the "trained"
model is an imperfect copy of it (blurred, partly unconditional conditional branch) wrapped as a real
ComfyUI EPS model (:mod:`benchmarks.testbeds.comfy_model`). Every method runs through ComfyUI's
KSampler with its real patch nodes (:mod:`benchmarks.harness`). Metrics per (regime, method, ω, seed):
class-wise energy distance and k-NN precision/recall/density/coverage against exact samples, Bayes
class accuracy, spread ratio, the paper's Eq. 8 gap along the method's own trajectory (ε- and
score-space), evaluations per sample and wall time. Seeds give 95 % Student-t intervals; a seed fixes
the initial noise and the reference samples for every method (common random numbers), so paired
differences against plain CFG are reported too.

Extending (issue 8): a method is a :class:`Spec`; chains are several ``patches`` in order, an
equal-cost control is ``steps_factor``; add specs to :func:`method_specs` and they flow through the
tables, JSON and plots.
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

import torch

from benchmarks import metrics as M
from benchmarks.harness import DIFFIER_DEFAULTS, Harness, Method
from benchmarks.testbeds import comfy_model as CM
from benchmarks.testbeds.eq9 import Eq9Hook
from benchmarks.testbeds.gmm import GMM, make_gmm

log = logging.getLogger("DiffIER.bench.known_score")

SCHEMA = "diffier.known_score/v1"
OMEGAS: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0)
#: imperfect-model settings (``GMM.blurred`` keyword arguments) per error regime
REGIMES: dict[str, dict[str, float]] = {
    # variances ×2 plus 0.03 in every dimension, 30 % of the conditional is unconditional:
    # samples are too spread at every ω; CFG's sweet spot trades class accuracy against extra spread.
    "overspread": {"var_scale": 2.0, "var_add": 0.03, "mean_shrink": 0.0, "leak": 0.3},
    # exact variances, component means pulled 30 % toward the class mean, 50 % unconditional leak:
    # low ω mixes classes, high ω collapses the within-class diversity (spread ratio < 1, recall falls).
    "collapse": {"var_scale": 1.0, "var_add": 0.0, "mean_shrink": 0.3, "leak": 0.5},
}
PRIMARY = "energy_distance"
METRICS: tuple[str, ...] = (
    "energy_distance", "precision", "recall", "density", "coverage", "class_accuracy", "spread_ratio",
    "gap_eps", "gap_score", "gap_eps_mean", "evals_per_sample", "wall_s",
)
LOWER_IS_BETTER = {"energy_distance", "gap_eps", "gap_score", "gap_eps_mean", "evals_per_sample", "wall_s"}
FREE = "free"   # the ω key of methods that choose their own ω (Eq. 9, the exact-model reference)


@dataclasses.dataclass(frozen=True)
class Spec:
    """One benchmarked method.

    Attributes:
        name: label in tables and plots.
        family: ``cfg``, ``diffier-consistency``, ``diffier-paper``, ``comfy`` (built-in node),
            ``eq9`` or ``reference``.
        patches: real ComfyUI MODEL-patch nodes applied in order (chains: several entries).
        core_diffier: ``DiffIERConfig`` options the node does not expose (see ``harness.Method``).
        eq9: ``(error, reduction)`` of an Eq. 9 adaptive-ω hook, or None.
        omega_free: the method ignores the sweep's ω (run once, reported under ``"free"``).
        exact_model: sample the exact mixture instead of the imperfect model (discretisation floor).
        steps_factor: sampling steps relative to the run's ``steps`` (equal-cost controls).
        quick: part of the ``--quick`` subset.
    """

    name: str
    family: str
    patches: tuple[tuple[str, dict[str, Any]], ...] = ()
    core_diffier: dict[str, Any] | None = None
    eq9: tuple[str, str] | None = None
    omega_free: bool = False
    exact_model: bool = False
    steps_factor: float = 1.0
    quick: bool = False

    def describe(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["patches"] = [[node, inputs] for node, inputs in self.patches]
        return d


def _diffier(**overrides: Any) -> tuple[tuple[str, dict[str, Any]], ...]:
    return (("DiffIERGuider", {**DIFFIER_DEFAULTS, **overrides}),)


def method_specs() -> list[Spec]:
    """Every method of the sweep (the ``quick`` ones form the CI subset)."""
    return [
        Spec("cfg", "cfg", quick=True),
        Spec("cfg(5x steps)", "cfg-equal-cost", steps_factor=5.0),
        Spec("diffier-cons(eta=.05,it=4)", "diffier-consistency", _diffier(), quick=True),
        Spec("diffier-cons(eta=.05,it=1)", "diffier-consistency", _diffier(max_iters=1)),
        Spec("diffier-cons(eta=.2,it=1)", "diffier-consistency", _diffier(eta=0.2, max_iters=1)),
        Spec("diffier-cons(eta=.2,it=4)", "diffier-consistency", _diffier(eta=0.2, max_iters=4)),
        Spec("diffier-cons(eta=.05,it=4,win=0-.5)", "diffier-consistency", _diffier(end_percent=0.5)),
        Spec("diffier-cons(eta=.05,it=4,win=.5-1)", "diffier-consistency", _diffier(start_percent=0.5)),
        Spec("diffier-cons-cond(eta=.05,it=4)", "diffier-consistency",
             core_diffier={"mode": "consistency", "eta": 0.05, "threshold": 1e-3, "max_iters": 4,
                           "inner_guidance": "cond"}),
        Spec("diffier-paper(mean)", "diffier-paper", _diffier(mode="paper"), quick=True),
        Spec("diffier-paper(sum)", "diffier-paper",
             core_diffier={"mode": "paper", "eta": 0.05, "threshold": 1e-3, "max_iters": 4, "reduction": "sum"}),
        Spec("rescalecfg(0.7)", "comfy", (("RescaleCFG", {"multiplier": 0.7}),), quick=True),
        Spec("apg(eta=1,r=5)", "comfy", (("APG", {"eta": 1.0, "norm_threshold": 5.0, "momentum": 0.0}),),
             quick=True),
        Spec("cfgzerostar", "comfy", (("CFGZeroStar", {}),), quick=True),
        Spec("eq9-oracle", "eq9", eq9=("oracle", "sample"), omega_free=True, quick=True),
        Spec("eq9-oracle(batch)", "eq9", eq9=("oracle", "batch"), omega_free=True),
        Spec("eq9-estimate", "eq9", eq9=("estimate", "sample"), omega_free=True, quick=True),
        Spec("eq9-estimate(batch)", "eq9", eq9=("estimate", "batch"), omega_free=True),
        Spec("exact-model", "reference", omega_free=True, exact_model=True, quick=True),
    ]


@dataclasses.dataclass
class Settings:
    quick: bool = False
    samples: int = 320          # generated (and reference) samples per run, classes round-robin
    seeds: int = 4
    steps: int = 16
    sampler: str = "euler"
    scheduler: str = "karras"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    latent_shape: tuple[int, int, int] = (4, 8, 8)
    num_classes: int = 4
    comps_per_class: int = 3
    gmm_seed: int = 0
    knn_k: int = 5
    omegas: tuple[float, ...] = OMEGAS
    regimes: tuple[str, ...] = tuple(REGIMES)
    method_filter: tuple[str, ...] = ()

    @classmethod
    def quick_defaults(cls) -> Settings:
        return cls(quick=True, samples=200, seeds=2, steps=12)


# ---------------------------------------------------------------------------------------------------
# one run


class Testbed:
    """The true mixture, one imperfect ComfyUI model per regime, and the exact-model patcher."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        dim = math.prod(settings.latent_shape)
        self.truth: GMM = make_gmm(num_classes=settings.num_classes, comps_per_class=settings.comps_per_class,
                                   dim=dim, seed=settings.gmm_seed)
        kw = {"latent_shape": settings.latent_shape, "sigma_min": settings.sigma_min,
              "sigma_max": settings.sigma_max}
        self.models = {r: CM.make_patcher(self.truth.blurred(**REGIMES[r]), **kw) for r in settings.regimes}
        self.exact = CM.make_patcher(self.truth, **kw)
        n = settings.samples
        self.labels = torch.arange(n) % settings.num_classes

    def reference(self, seed: int) -> torch.Tensor:
        return self.truth.sample(self.labels, torch.Generator().manual_seed(10_000 + seed))


def _method_for(spec: Spec, h: Harness, bed: Testbed, seed: int) -> tuple[Method, Eq9Hook | None]:
    hook = None
    extra = None
    if spec.eq9 is not None:
        import importlib

        adaptive = importlib.import_module(h.pack.__name__ + ".diffier_core.adaptive")
        hook = Eq9Hook(adaptive, spec.eq9[0], spec.eq9[1], bed.truth, bed.labels, seed=seed)
        extra = hook.apply
    return Method(spec.name, spec.patches, spec.core_diffier, extra), hook


def run_one(h: Harness, bed: Testbed, regime: str, spec: Spec, omega: float, seed: int,
            reference: torch.Tensor) -> dict[str, Any]:
    """Sample one batch and score it: metric values, the per-step gap and (Eq. 9) the ω trace."""
    s = bed.settings
    n, k = s.samples, s.num_classes
    method, hook = _method_for(spec, h, bed, seed)
    model = bed.exact if spec.exact_model else bed.models[regime]
    steps = max(1, round(s.steps * spec.steps_factor))
    res = h.sample(model, method, positive=CM.positive(bed.labels, k), negative=CM.negative(n, k),
                   latent=CM.latent(n, s.latent_shape), seed=seed, steps=steps, cfg=omega, sampler=s.sampler,
                   scheduler=s.scheduler, record=True)
    x = res.samples.reshape(n, -1).float()
    labels = bed.labels
    if not bool(torch.isfinite(x).all()):
        raise RuntimeError(f"{spec.name} at omega={omega} produced non-finite samples ({regime}, seed {seed})")
    out: dict[str, Any] = {
        "energy_distance": M.classwise(M.energy_distance, x, labels, reference, labels),
        "class_accuracy": float((bed.truth.classify(x) == labels).float().mean()),
        "spread_ratio": M.classwise(M.spread_ratio, x, labels, reference, labels),
        "evals_per_sample": res.evals_per_sample,
        "wall_s": res.wall_s,
    }
    out.update(M.classwise(lambda fake, real: M.precision_recall(real, fake, s.knn_k), x, labels, reference,
                           labels))
    sigmas, gap_eps, gap_score = [], [], []
    for rec in res.trajectory:
        sigma = rec["sigma"]
        xt = rec["x"].reshape(n, -1).float()
        exact = bed.truth.denoise_rows(xt, torch.full((n,), sigma), labels)
        g = M.denoiser_gap(rec["denoised"], exact, sigma)
        sigmas.append(sigma)
        gap_eps.append(g["eps"])
        gap_score.append(g["score"])
    out["gap_eps"] = sum(gap_eps)
    out["gap_score"] = sum(gap_score)
    out["gap_eps_mean"] = sum(gap_eps) / max(1, len(gap_eps))
    per_step = {"sigma": sigmas, "eps": gap_eps, "score": gap_score}
    if hook is not None:
        per_step["omega"] = [t["omega"] for t in hook.trace]
        per_step["omega_oracle"] = [t["omega_oracle"] for t in hook.trace]
    return {"metrics": out, "per_step": per_step}


# ---------------------------------------------------------------------------------------------------
# the sweep


def _omegas_for(spec: Spec, settings: Settings) -> list[float | str]:
    return [FREE] if spec.omega_free else list(settings.omegas)


def _cfg_value(spec: Spec, omega: float | str) -> float:
    if spec.exact_model:
        return 1.0          # the exact conditional needs no guidance
    # Eq. 9 replaces the guided output but needs ComfyUI to evaluate both branches: any cfg ≠ 1 does.
    return 2.0 if omega == FREE else float(omega)


def _okey(omega: float | str) -> str:
    return FREE if omega == FREE else f"{float(omega):g}"


def selected_specs(settings: Settings) -> list[Spec]:
    specs = [sp for sp in method_specs() if sp.quick or not settings.quick]
    if settings.method_filter:
        specs = [sp for sp in specs if sp.name == "cfg" or any(f in sp.name for f in settings.method_filter)]
    return specs


def run_sweep(settings: Settings, h: Harness | None = None) -> dict[str, Any]:
    """Run every (regime, method, ω, seed); return the JSON-ready result document."""
    t0 = time.perf_counter()
    h = h or Harness()
    bed = Testbed(settings)
    specs = selected_specs(settings)
    raw: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    total = sum(len(_omegas_for(sp, settings)) for sp in specs) * len(settings.regimes) * settings.seeds
    done = 0
    for regime in settings.regimes:
        raw[regime] = {sp.name: {_okey(o): [] for o in _omegas_for(sp, settings)} for sp in specs}
        for seed in range(settings.seeds):
            reference = bed.reference(seed)
            for sp in specs:
                for omega in _omegas_for(sp, settings):
                    raw[regime][sp.name][_okey(omega)].append(
                        run_one(h, bed, regime, sp, _cfg_value(sp, omega), seed, reference))
                    done += 1
                log.info("[%d/%d] %s seed %d %s", done, total, regime, seed, sp.name)
    doc = summarise(raw, specs, settings)
    doc["runtime_s"] = time.perf_counter() - t0
    return doc


def _stats(values: list[float]) -> dict[str, Any]:
    mean, ci = M.mean_ci(values)
    return {"mean": mean, "ci95": ci, "values": values}


def summarise(raw: dict, specs: list[Spec], settings: Settings) -> dict[str, Any]:
    results: dict[str, Any] = {}
    per_step: dict[str, Any] = {}
    paired: dict[str, Any] = {}
    for regime, by_method in raw.items():
        results[regime], per_step[regime], paired[regime] = {}, {}, {}
        for name, by_omega in by_method.items():
            results[regime][name] = {}
            per_step[regime][name] = {}
            for okey, runs in by_omega.items():
                results[regime][name][okey] = {m: _stats([r["metrics"][m] for r in runs]) for m in METRICS}
                steps = [r["per_step"] for r in runs]
                per_step[regime][name][okey] = {
                    key: [sum(s[key][i] for s in steps) / len(steps) for i in range(len(steps[0][key]))]
                    for key in steps[0]
                }
        # paired (same seed: same initial noise and reference) differences against plain CFG
        cfg = by_method.get("cfg", {})
        for name, by_omega in by_method.items():
            if name == "cfg":
                continue
            paired[regime][name] = {}
            for okey, runs in by_omega.items():
                if okey not in cfg:
                    continue
                diffs = {m: [r["metrics"][m] - c["metrics"][m] for r, c in zip(runs, cfg[okey], strict=True)]
                         for m in (PRIMARY, "class_accuracy", "recall", "gap_eps")}
                paired[regime][name][okey] = {m: _stats(v) for m, v in diffs.items()}
    doc = {
        "schema": SCHEMA,
        "quick": settings.quick,
        "config": {
            **{k: v for k, v in dataclasses.asdict(settings).items() if k not in ("method_filter",)},
            "dim": math.prod(settings.latent_shape),
            "regime_params": {r: REGIMES[r] for r in settings.regimes},
            "primary_metric": PRIMARY,
            "lower_is_better": sorted(LOWER_IS_BETTER),
            "torch": torch.__version__,
        },
        "methods": [sp.describe() for sp in specs],
        "omegas": [_okey(o) for o in settings.omegas],
        "metrics": list(METRICS),
        "results": results,
        "paired_vs_cfg": paired,
        "per_step": per_step,
    }
    doc["summary"] = summary_table(doc)
    return doc


def summary_table(doc: dict[str, Any]) -> dict[str, Any]:
    """Per regime and method: best ω and its primary metric, mean over ω > 1, value at the largest ω."""
    out: dict[str, Any] = {}
    omegas = [o for o in doc["omegas"]]
    for regime, by_method in doc["results"].items():
        out[regime] = {}
        for name, by_omega in by_method.items():
            keys = [o for o in omegas if o in by_omega] or [FREE]
            vals = {o: by_omega[o][PRIMARY]["mean"] for o in keys}
            best = min(vals, key=vals.get)
            guided = [vals[o] for o in keys if o != FREE and float(o) > 1.0] or list(vals.values())
            out[regime][name] = {
                "best_omega": best,
                "best": vals[best],
                "best_ci95": by_omega[best][PRIMARY]["ci95"],
                "mean_over_omega_gt1": sum(guided) / len(guided),
                "at_max_omega": vals[keys[-1]],
                "class_accuracy_at_best": by_omega[best]["class_accuracy"]["mean"],
                "recall_at_best": by_omega[best]["recall"]["mean"],
                "evals_per_sample_at_best": by_omega[best]["evals_per_sample"]["mean"],
            }
        cfg = by_method.get("cfg")
        if cfg is not None:
            vals = [cfg[o][PRIMARY]["mean"] for o in omegas]
            interior = min(vals[1:-1])
            out[regime]["cfg_sweet_spot"] = {
                "metric": PRIMARY, "omega": omegas[vals.index(min(vals))],
                "interior_min": interior, "at_omega_1": vals[0], "at_max_omega": vals[-1],
                "has_sweet_spot": bool(interior < vals[0] and interior < vals[-1]),
            }
    return out


# ---------------------------------------------------------------------------------------------------
# plots and table


def plot(doc: dict[str, Any], out_dir: Path, suffix: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"cfg": ("k", "-", "o"), "cfg-equal-cost": ("dimgrey", "--", "o"),
              "diffier-consistency": (None, "-", "s"), "diffier-paper": (None, "--", "^"),
              "comfy": (None, ":", "D"), "eq9": (None, "-.", None), "reference": ("black", (0, (1, 3)), None)}
    families = {m["name"]: m["family"] for m in doc["methods"]}
    regimes = list(doc["results"])
    omegas = [float(o) for o in doc["omegas"]]
    panels = [("energy_distance", "energy distance ↓ (class-wise; clipped at 0.8)", True),
              ("class_accuracy", "class accuracy ↑", False),
              ("recall", "k-NN recall ↑", False), ("precision", "k-NN precision ↑", False),
              ("spread_ratio", "spread ratio (1 = exact)", False)]
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
               "tab:cyan", "navy", "darkgoldenrod", "teal", "magenta", "lime", "maroon"]
    coloured = [n for n in families if styles[families[n]][0] is None]
    colours = {name: palette[i % len(palette)] for i, name in enumerate(coloured)}
    paths = []

    fig, axes = plt.subplots(len(regimes), len(panels), figsize=(4.2 * len(panels), 3.6 * len(regimes) + 1.2),
                             squeeze=False)
    for r, regime in enumerate(regimes):
        for c, (metric, title, logy) in enumerate(panels):
            ax = axes[r][c]
            for name, by_omega in doc["results"][regime].items():
                colour, ls, marker = styles[families[name]]
                colour = colour or colours[name]
                if FREE in by_omega:
                    st = by_omega[FREE][metric]
                    ax.axhline(st["mean"], color=colour, ls=ls, lw=1.2, label=name)
                    continue
                means = [by_omega[f"{o:g}"][metric]["mean"] for o in omegas]
                cis = [by_omega[f"{o:g}"][metric]["ci95"] for o in omegas]
                cis = [0.0 if math.isnan(v) else v for v in cis]
                ax.errorbar(omegas, means, yerr=cis, color=colour, ls=ls, marker=marker, ms=3, lw=1.2,
                            capsize=2, label=name)
            if metric == "spread_ratio":
                ax.axhline(1.0, color="grey", lw=0.6)
            ax.set_xscale("log")
            ax.set_xticks(omegas)
            ax.set_xticklabels([f"{o:g}" for o in omegas], fontsize=7)
            ax.minorticks_off()
            if logy:   # linear, clipped: the unbiased estimate can dip below 0; blow-ups leave the frame
                ax.set_ylim(-0.06, 0.8)
                ax.axhline(0.0, color="grey", lw=0.6)
            if metric == "spread_ratio":
                ax.set_yscale("log")
            ax.set_title(f"{regime}: {title}", fontsize=9)
            ax.set_xlabel("guidance weight ω", fontsize=8)
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    fig.suptitle("Known-score GMM testbed: quality vs ω (mean ± 95% CI over seeds; horizontal: ω-free methods)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.09 if len(labels) > 6 else 0.05, 1, 0.97))
    path = out_dir / f"known_score_quality_vs_omega{suffix}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    # gap per step at one representative ω, plus Eq. 9's ω*_t
    show_omega = "5" if "5" in doc["omegas"] else doc["omegas"][len(doc["omegas"]) // 2]
    fig, axes = plt.subplots(len(regimes), 3, figsize=(15, 3.8 * len(regimes) + 1.2), squeeze=False)
    for r, regime in enumerate(regimes):
        steps = doc["per_step"][regime]
        for name, by_omega in steps.items():
            key = FREE if FREE in by_omega else show_omega
            if key not in by_omega:
                continue
            ps = by_omega[key]
            colour, ls, _ = styles[families[name]]
            colour = colour or colours[name]
            axes[r][0].plot(ps["sigma"], ps["eps"], color=colour, ls=ls, lw=1.2, label=name)
            axes[r][1].plot(ps["sigma"], ps["score"], color=colour, ls=ls, lw=1.2, label=name)
            if "omega" in ps:
                axes[r][2].plot(ps["sigma"], ps["omega"], color=colour, ls=ls, lw=1.2, label=f"{name}: ω used")
                axes[r][2].plot(ps["sigma"], ps["omega_oracle"], color=colour, ls=":", lw=0.8,
                                label=f"{name}: oracle ω* on its path")
        for c, title in enumerate((f"ε-space gap E‖ε̂−ε*‖²/D (ω={show_omega})",
                                   f"score-space gap E‖ŝ−∇log q‖²/D (ω={show_omega})", "Eq. 9: mean ω*_t per step")):
            ax = axes[r][c]
            ax.set_xscale("log")
            ax.invert_xaxis()
            if c < 2:
                ax.set_yscale("log")
                ax.set_ylim(bottom=1e-8 if c == 0 else 1e-10)   # the exact model's ~1e-14 round-off is off-frame
            ax.set_title(f"{regime}: {title}", fontsize=9)
            ax.set_xlabel("σ (sampling runs left → right)", fontsize=8)
            ax.grid(alpha=0.3)
        axes[r][2].legend(fontsize=6)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    fig.suptitle("Known-score GMM testbed: the paper's Eq. 8 gap along each method's own trajectory", fontsize=10)
    fig.tight_layout(rect=(0, 0.09 if len(labels) > 6 else 0.05, 1, 0.97))
    path = out_dir / f"known_score_gap_per_step{suffix}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def format_table(doc: dict[str, Any]) -> str:
    lines = []
    for regime, by_method in doc["summary"].items():
        lines.append(f"\n== {regime} ==  (primary: class-wise energy distance, lower is better)")
        lines.append(f"{'method':34s} {'best ω':>7s} {'ED@best':>17s} {'mean ED ω>1':>12s} {'ED@ω_max':>9s} "
                     f"{'acc':>6s} {'recall':>6s} {'evals':>6s}")
        for name, row in by_method.items():
            if name == "cfg_sweet_spot":
                continue
            lines.append(f"{name:34s} {row['best_omega']:>7s} {row['best']:>9.4f} ±{row['best_ci95']:<7.4f}"
                         f"{row['mean_over_omega_gt1']:>12.4f} {row['at_max_omega']:>9.4f} "
                         f"{row['class_accuracy_at_best']:>6.3f} {row['recall_at_best']:>6.3f} "
                         f"{row['evals_per_sample_at_best']:>6.0f}")
        ss = by_method.get("cfg_sweet_spot")
        if ss:
            lines.append(f"plain CFG sweet spot: ω={ss['omega']} ({ss['interior_min']:.4f}; "
                         f"ω=1: {ss['at_omega_1']:.4f}, ω_max: {ss['at_max_omega']:.4f}) -> "
                         f"{'yes' if ss['has_sweet_spot'] else 'NO'}")
    lines.append(f"\nruntime: {doc.get('runtime_s', float('nan')):.0f} s")
    return "\n".join(lines)


def _fmt(st: dict[str, Any], digits: int = 3) -> str:
    ci = st["ci95"]
    return f"{st['mean']:.{digits}f}" + ("" if math.isnan(ci) else f" ± {ci:.{digits}f}")


def markdown_tables(doc: dict[str, Any]) -> str:
    """The evidence write-up's tables (Markdown) from a result document."""
    out = []
    omegas = doc["omegas"]
    for regime, by_method in doc["results"].items():
        summ = doc["summary"][regime]
        out.append(f"\n#### {regime}: best ω per method (class-wise energy distance ↓, mean ± 95% CI over seeds)\n")
        out.append("| method | best ω | ED at best ω | mean ED over ω>1 | ED at ω=15 | class acc. | recall | "
                   "spread | evals/sample | wall s/run |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for name, by_omega in by_method.items():
            row = summ[name]
            b = by_omega[row["best_omega"]]
            out.append(f"| {name} | {row['best_omega']} | {_fmt(b[PRIMARY])} | {row['mean_over_omega_gt1']:.3f} | "
                       f"{row['at_max_omega']:.3f} | {_fmt(b['class_accuracy'])} | {_fmt(b['recall'])} | "
                       f"{b['spread_ratio']['mean']:.2f} | {b['evals_per_sample']['mean']:.0f} | "
                       f"{b['wall_s']['mean']:.2f} |")
        for metric, title in ((PRIMARY, "energy distance ↓"), ("gap_eps", "Eq. 8 gap, ε-space, summed over steps ↓"),
                              ("class_accuracy", "class accuracy ↑"), ("recall", "k-NN recall ↑")):
            out.append(f"\n#### {regime}: {title} per ω (mean; ▲/▼ = paired 95% CI vs plain CFG better/worse)\n")
            out.append("| method | " + " | ".join(f"ω={o}" for o in omegas) + " |")
            out.append("|---|" + "---|" * len(omegas))
            for name, by_omega in by_method.items():
                if FREE in by_omega:
                    continue
                cells = []
                for o in omegas:
                    v = by_omega[o][metric]["mean"]
                    mark = ""
                    pair = doc["paired_vs_cfg"].get(regime, {}).get(name, {}).get(o, {}).get(metric)
                    if pair is not None and not math.isnan(pair["ci95"]):
                        lo, hi = pair["mean"] - pair["ci95"], pair["mean"] + pair["ci95"]
                        better_if_lower = metric in LOWER_IS_BETTER
                        if (hi < 0) if better_if_lower else (lo > 0):
                            mark = " ▲"
                        elif (lo > 0) if better_if_lower else (hi < 0):
                            mark = " ▼"
                    cells.append(f"{v:.3g}{mark}")
                out.append(f"| {name} | " + " | ".join(cells) + " |")
        free = [(n, b[FREE]) for n, b in by_method.items() if FREE in b]
        if free:
            out.append(f"\n#### {regime}: ω-free methods\n")
            out.append("| method | ED | class acc. | recall | spread | ε-gap | evals/sample |")
            out.append("|---|---|---|---|---|---|---|")
            for name, st in free:
                out.append(f"| {name} | {_fmt(st[PRIMARY])} | {_fmt(st['class_accuracy'])} | {_fmt(st['recall'])} | "
                           f"{st['spread_ratio']['mean']:.2f} | {st['gap_eps']['mean']:.3g} | "
                           f"{st['evals_per_sample']['mean']:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m benchmarks.known_score")
    p.add_argument("--quick", action="store_true", help="CI smoke subset (a few minutes)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default docs/results)")
    p.add_argument("--samples", type=int, help="samples per run")
    p.add_argument("--seeds", type=int, help="number of seeds")
    p.add_argument("--steps", type=int, help="sampling steps")
    p.add_argument("--regimes", nargs="+", choices=list(REGIMES))
    p.add_argument("--methods", nargs="+", default=(), help="only methods whose name contains one of these")
    p.add_argument("--omegas", nargs="+", type=float)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--replot", type=Path, help="only redraw the plots and table from an existing JSON")
    p.add_argument("--markdown", action="store_true", help="with --replot: print the Markdown tables")
    args = p.parse_args(argv)
    if args.replot is not None:
        doc = json.loads(args.replot.read_text())
        out_dir = args.out or args.replot.parent
        print(markdown_tables(doc) if args.markdown else format_table(doc))
        if not args.no_plots:
            print("wrote", *plot(doc, out_dir, "_quick" if doc["quick"] else ""))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    settings = Settings.quick_defaults() if args.quick else Settings()
    for field in ("samples", "seeds", "steps"):
        if getattr(args, field) is not None:
            setattr(settings, field, getattr(args, field))
    if args.regimes:
        settings.regimes = tuple(args.regimes)
    if args.omegas:
        settings.omegas = tuple(args.omegas)
    settings.method_filter = tuple(args.methods)
    out_dir = args.out or Path(__file__).resolve().parent.parent / "docs" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        doc = run_sweep(settings)
    finally:
        from scripts import comfy_inprocess

        comfy_inprocess.release_models()
    suffix = "_quick" if settings.quick else ""
    json_path = out_dir / f"known_score{suffix}.json"
    json_path.write_text(json.dumps(doc, indent=1, allow_nan=True))
    paths = [] if args.no_plots else plot(doc, out_dir, suffix)
    print(format_table(doc))
    print("wrote", json_path, *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
