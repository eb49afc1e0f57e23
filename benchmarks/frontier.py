"""Cheap DiffIER: quality vs model evaluations per image, chosen on tuning seeds, reported on test seeds.

One command per testbed (from the repository root)::

    .venv/bin/python -m benchmarks.frontier --testbed known_score   # -> docs/results/frontier_known_score.{json,png}
    .venv/bin/python -m benchmarks.frontier --testbed digits        # -> docs/results/frontier_digits.{json,png}
    .venv/bin/python -m benchmarks.frontier --choose                # -> docs/results/frontier_presets.json (+ PNGs)
    .venv/bin/python -m benchmarks.frontier --testbed known_score --quick --out /tmp/f   # CI smoke run

Every point is one DiffIER setting (cond inner evaluation unless said otherwise) or plain CFG with more steps:

* ``quality``: the node defaults (η 0.05, 4 iterations, every step): full DiffIER, the reference gain;
* fewer iterations (1 or 2) with a larger η; a window of steps (``start_percent``/``end_percent``); correcting only
  every k-th guided call (``stride``, :class:`nodes.patch.DiffIERPatch`); the guided (``cfg``) inner evaluation;
* plain CFG with 1.2×, 1.5×, 2× and 3× the steps (the same evaluations spent on the sampler instead).

The protocol and the DiffIER points are :mod:`benchmarks.tuning`'s (its :class:`~benchmarks.tuning.Protocol` runs
and scores every job; :func:`~benchmarks.tuning.frontier_variants` lists the points), the beds
:mod:`benchmarks.testbeds`' (:func:`benchmarks.tuned.make_beds`): every point runs at every ω on the *tuning* seeds
and on the disjoint *test* seeds; choices (the cheapest-setting picks per budget, and the presets of
``diffier_core.presets`` via ``--choose``) use only the tuning seeds; the test seeds report. For a point ``s`` the
*gain* over plain CFG at the same steps is the bed's all-ω aggregate (:func:`benchmarks.tuning.all_omega_value`:
mean over ω of the energy-distance difference on known scores, of −log(FD / FD of CFG) on digits), sign set so that
larger is better; ``share`` = gain(s) / gain(quality). ``evals_ratio`` = model rows per sample / plain CFG's at the
same steps (2 per step); ``wall_time_ratio`` = the point's summed sampling wall time / plain CFG's, in the same run,
jobs interleaved per ω.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import report as R
from benchmarks import tuned as TB
from benchmarks import tuning as T

log = logging.getLogger("DiffIER.bench.frontier")

SCHEMA = "diffier.frontier/v1"
TESTBEDS = ("known_score", "digits")
#: evaluation budgets of the cheap presets (× plain CFG at the same steps)
BUDGETS = {"balanced": 1.5, "fast": 1.2}
#: the equal-cost controls: plain CFG with this many times the steps
CONTROL_FACTORS = (1.2, 1.5, 2.0, 3.0)

#: run sizes (:func:`benchmarks.report.size`: omegas, tuning seeds, test seeds, tuning/test samples, steps, reps)
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "known_score": {"full": R.size((2.0, 3.0, 5.0, 7.5), [100, 101], [0, 1, 2, 3], 160, 240, 16, 500),
                    "quick": R.size((3.0,), [100], [0], 80, 80, 8, 50)},
    "digits": {"full": R.size((2.0, 4.0, 7.5), [100, 101], [0, 1, 2], 40, 60, 10, 200),
               "quick": R.size((3.0,), [100], [0], 20, 20, 4, 30)},
}
#: the group of each testbed the frontier runs (known scores: the regime where DiffIER helps at all ω; in the
#: ``collapse`` regime DiffIER is worse than plain CFG at ω ≥ 3, so there is no gain to keep, docs/EVIDENCE.md)
GROUPS = {"known_score": "overspread", "digits": "digits"}


# ---------------------------------------------------------------------------------------------------
# points


@dataclasses.dataclass(frozen=True)
class StrideJob(T.Job):
    """A DiffIER point with ``stride`` > 1: :class:`nodes.patch.DiffIERPatch` applied as the node applies it.

    Args:
        variant: the point.
        pack: the loaded pack module (``Harness.pack``).
    """

    variant: T.Variant | None = None
    pack: Any = None

    def method(self) -> Any:
        from benchmarks.harness import Method

        v, pack = self.variant, self.pack
        settings = pack.diffier_core.DiffIERSettings(mode="consistency", eta=v.eta,
                                                     threshold=T.DIFFIER_FIXED["threshold"], max_iters=v.max_iters,
                                                     start_percent=v.start, end_percent=v.end,
                                                     inner_guidance=v.inner, stride=v.stride)

        def apply(model: Any) -> Any:
            return pack.nodes.patch.DiffIERPatch(settings).apply(model)

        return Method(self.name, (), extra=apply)


def job_of(v: T.Variant, pack: Any) -> T.Job:
    """The runnable job: the real DiffIERGuider node for ``stride`` 1, the node's patch class otherwise."""
    if v.stride == 1:
        return T.Job(v.label, (T.diffier_node(v.eta, v.max_iters, v.inner, (v.start, v.end)),))
    return StrideJob(v.label, variant=v, pack=pack)


def control_steps(base: int, quick: bool) -> list[int]:
    """Step counts of the plain-CFG controls (distinct, above ``base``)."""
    factors = (1.5,) if quick else CONTROL_FACTORS
    return sorted({max(base + 1, round(base * f)) for f in factors})


# ---------------------------------------------------------------------------------------------------
# beds


def make_beds(testbed: str, quick: bool, size: dict[str, Any]) -> tuple[Any, Any]:
    """Tuning and test beds (:func:`benchmarks.tuned.make_beds`), on the frontier's group (:data:`GROUPS`)."""
    if testbed not in TESTBEDS:
        raise ValueError(f"testbed must be one of {list(TESTBEDS)}, got {testbed!r}")
    return TB.make_beds(testbed, quick, size, regimes=[GROUPS[testbed]] if testbed == "known_score" else None)


# ---------------------------------------------------------------------------------------------------
# scoring


def gain(scores: dict[str, float], cfg: dict[str, float], lower: bool, aggregate: str) -> float:
    """Gain over plain CFG, larger is better: −(all-ω aggregate) for a lower-is-better score, + otherwise."""
    value = T.all_omega_value(scores, cfg, aggregate)
    return -value if lower else value


def share(g: float, g_quality: float) -> float:
    """``g`` as a fraction of the quality point's gain (NaN when quality has no gain to keep)."""
    return g / g_quality if g_quality > 0 and math.isfinite(g) else float("nan")


def pick_under_budget(points: dict[str, dict[str, Any]], budget: float, phase: str = "tuning") -> str | None:
    """The DiffIER point with the largest ``phase`` share among those within ``budget`` × plain CFG's evaluations."""
    ok = {lab: p for lab, p in points.items()
          if p["kind"] == "diffier" and p[phase]["evals_ratio"] <= budget + 1e-9 and math.isfinite(p[phase]["share"])}
    return max(ok, key=lambda lab: ok[lab][phase]["share"]) if ok else None


# ---------------------------------------------------------------------------------------------------
# the run


def run(testbed: str, quick: bool, overrides: dict[str, Any] | None = None, command: str = "") -> dict[str, Any]:
    """Every point on tuning then test seeds; the JSON document."""
    t0 = time.perf_counter()
    size = R.sized(SIZES, testbed, quick, overrides)
    tune_bed, test_bed = make_beds(testbed, quick, size)
    group = GROUPS[testbed]
    tune_bed.groups = test_bed.groups = [group]
    proto = T.Protocol(tune_bed, test_bed, size["omegas"], size["tuning_seeds"], size["test_seeds"], {},
                       size["reps"])
    pack = test_bed.h.pack
    vs = T.frontier_variants(quick)
    jobs: dict[str, tuple[str, T.Job, Any]] = {"cfg": ("cfg", T.Job("cfg"), None)}
    for steps in control_steps(size["steps"], quick):
        name = f"cfg[{steps} steps]"
        jobs[name] = ("control", T.Job(name, steps=steps), steps)
    for v in vs:
        jobs[v.label] = ("diffier", job_of(v, pack), v)
    timing: dict[str, float] = {}
    for phase in ("tuning", "test"):
        tp = time.perf_counter()
        bar = R.progress(total=len(size["omegas"]) * len(jobs), desc=f"{testbed} {phase}")
        for omega in size["omegas"]:
            for _, job, _ in jobs.values():
                proto._run(phase, group, job, omega, bar)
        bar.close()
        timing[f"{phase}_s"] = time.perf_counter() - tp
    tb = time.perf_counter()
    points = summarise(proto, group, jobs, size)
    timing["bootstrap_s"] = time.perf_counter() - tb
    timing["total_s"] = time.perf_counter() - t0
    picks = {name: pick_under_budget(points, b) for name, b in BUDGETS.items()}
    return {
        "schema": SCHEMA, "testbed": testbed, "group": group, "quick": quick, "command": command,
        "omegas": [T.okey(o) for o in size["omegas"]],
        "metric": {"label": test_bed.score_label, "lower_is_better": test_bed.set_lower,
                   "all_omega_aggregate": test_bed.aggregate},
        "tuning_seeds": list(size["tuning_seeds"]), "test_seeds": list(size["test_seeds"]),
        "tuning_samples": size["tuning_samples"], "test_samples": size["test_samples"], "steps": size["steps"],
        "bootstrap_reps": size["reps"], "config": {"tuning": tune_bed.config(), "test": test_bed.config()},
        "budgets": BUDGETS,
        "definitions": {
            "gain": "all-ω aggregate of the score vs plain CFG at the same steps (mean over ω of the difference, or "
                    "of log(score / CFG's)), sign set so that larger is better",
            "share": "gain / gain of the quality point (node defaults), same phase",
            "evals_ratio": "model rows per sample / plain CFG's at the same steps (2 per step), same phase",
            "wall_time_ratio": "summed sampling wall time over ω and seeds / plain CFG's, same phase and run",
            "share_ci95_approx": "test share ± the per-ω paired-bootstrap half-widths combined as independent, "
                                 "over the quality gain taken as exact (difference aggregate only)",
        },
        "points": points,
        "picks_on_tuning": picks,
        "runtime_s": timing,
        "torch_threads": torch.get_num_threads(),
    }


def summarise(proto: T.Protocol, group: str, jobs: dict[str, tuple[str, T.Job, Any]],
              size: dict[str, Any]) -> dict[str, Any]:
    """Per point and phase: scores, evaluations, wall time, gain and share; per-ω paired intervals on test."""
    omegas = [T.okey(o) for o in size["omegas"]]
    lower, agg = proto.test_bed.set_lower, proto.test_bed.aggregate
    phases: dict[str, dict[str, Any]] = {}
    for phase in ("tuning", "test"):
        runs = proto.runs
        cfg_scores = {o: proto.score(phase, group, "cfg", o) for o in omegas}
        cfg_evals = _mean([r["evals"] for o in omegas for r in runs[(phase, group, "cfg", o)]])
        cfg_wall = sum(r["wall_s"] for o in omegas for r in runs[(phase, group, "cfg", o)])
        per: dict[str, Any] = {}
        for name in jobs:
            scores = {o: proto.score(phase, group, name, o) for o in omegas}
            evals = _mean([r["evals"] for o in omegas for r in runs[(phase, group, name, o)]])
            wall = sum(r["wall_s"] for o in omegas for r in runs[(phase, group, name, o)])
            per[name] = {"scores": scores, "gain": gain(scores, cfg_scores, lower, agg),
                         "evals_per_sample": evals, "evals_ratio": evals / cfg_evals,
                         "wall_s": wall, "wall_time_ratio": wall / cfg_wall,
                         "nonfinite_samples": sum(r["nonfinite"] for o in omegas
                                                  for r in runs[(phase, group, name, o)])}
        q = next(n for n, (kind, _, v) in jobs.items() if kind == "diffier" and v.family == "quality")
        for name in per:
            per[name]["share"] = share(per[name]["gain"], per[q]["gain"])
        phases[phase] = per
    points: dict[str, Any] = {}
    for name, (kind, _, extra) in jobs.items():
        p: dict[str, Any] = {"kind": kind, "tuning": phases["tuning"][name], "test": phases["test"][name]}
        if kind == "diffier":
            p["family"], p["settings"] = extra.family, extra.settings()
        elif kind == "control":
            p["family"], p["settings"] = "cfg_steps", {"steps": extra, "sampler": "euler"}
        else:
            p["family"], p["settings"] = "cfg", {"steps": size["steps"], "sampler": "euler"}
        p["test"]["per_omega"] = {o: proto.entry("test", group, name, o) for o in omegas}
        for o in omegas:
            p["test"]["per_omega"][o].pop("setting", None)
        p["test"]["share_ci95_approx"] = _share_ci(p, phases["test"], jobs, omegas, agg)
        points[name] = p
    return points


def _share_ci(p: dict[str, Any], test: dict[str, Any], jobs: dict, omegas: list[str], agg: str) -> list[float] | None:
    """Approximate 95 % interval of the test share (difference aggregate only; see ``definitions``)."""
    if p["kind"] == "cfg" or agg != "difference":
        return None
    q = next(n for n, (kind, _, v) in jobs.items() if kind == "diffier" and v.family == "quality")
    gq = test[q]["gain"]
    if not gq > 0:
        return None
    hw = [(c["hi"] - c["lo"]) / 2 for c in (p["test"]["per_omega"][o]["vs_cfg"] for o in omegas)]
    half = math.sqrt(sum(h * h for h in hw)) / len(hw) / gq
    s = p["test"]["share"]
    return [s - half, s + half]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


# ---------------------------------------------------------------------------------------------------
# presets across testbeds


#: two points whose smallest tuning shares differ by less than this fraction of the best are tied (see :func:`choose`)
TIE = 0.02


def choose(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The presets: per budget, the DiffIER point within budget on every testbed (tuning evaluations) whose
    smallest tuning share over the testbeds is largest; points within TIE (2 %) of that best are tied, and the tie
    goes to the larger mean tuning share over the testbeds. Its test numbers as measured."""
    labels = set.intersection(*(set(d["points"]) for d in docs.values()))
    out: dict[str, Any] = {"testbeds": sorted(docs), "rule": choose.__doc__.replace("\n    ", " ").strip(),
                           "presets": {}}
    for name, budget in BUDGETS.items():
        ok = [lab for lab in sorted(labels)
              if all(d["points"][lab]["kind"] == "diffier"
                     and d["points"][lab]["tuning"]["evals_ratio"] <= budget + 1e-9 for d in docs.values())]
        if not ok:
            out["presets"][name] = None
            continue
        worst = {lab: min(_finite(d["points"][lab]["tuning"]["share"]) for d in docs.values()) for lab in ok}
        mean = {lab: sum(_finite(d["points"][lab]["tuning"]["share"]) for d in docs.values()) / len(docs) for lab in ok}
        top = max(worst.values())
        tied = [lab for lab in ok if worst[lab] >= top - TIE * abs(top)]
        best = max(tied, key=lambda lab: mean[lab])
        ref = next(iter(docs.values()))["points"][best]
        out["presets"][name] = {
            "label": best, "budget": budget, "settings": ref["settings"],
            "per_testbed": {tb: _preset_numbers(d["points"][best]) for tb, d in docs.items()},
            "tied_on_smallest_share": tied,
            "target_met": all(d["points"][best]["test"]["share"] >= 0.8 for d in docs.values()),
        }
    return out


def _preset_numbers(p: dict[str, Any]) -> dict[str, Any]:
    """What a preset's tooltip and the README quote: measured cost and share of the gain kept."""
    return {"tuning_share": p["tuning"]["share"], "tuning_evals_ratio": p["tuning"]["evals_ratio"],
            "test_share": p["test"]["share"], "share_ci95_approx": p["test"]["share_ci95_approx"],
            "evals_ratio": p["test"]["evals_ratio"], "wall_time_ratio": p["test"]["wall_time_ratio"]}


def _finite(v: float) -> float:
    return v if math.isfinite(v) else -math.inf


# ---------------------------------------------------------------------------------------------------
# outputs


FAMILIES = ("quality", "iterations", "window", "stride", "inner", "cfg_steps", "cfg")
PRESET_COLOURS = {"balanced": "tab:red", "fast": "tab:pink"}


def plot(doc: dict[str, Any], path: Path, presets: dict[str, Any] | None = None) -> Path:
    """Share of quality's gain vs evaluations (test seeds) with the presets marked; Δ vs plain CFG per ω."""
    plt = R.pyplot()
    pts = doc["points"]
    front = pareto(pts)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(15, 5.6))
    for fam in FAMILIES:
        colour = R.COLOURS[fam]
        sel = [(lab, p) for lab, p in pts.items() if p["family"] == fam]
        if not sel:
            continue
        xs = [p["test"]["evals_ratio"] for _, p in sel]
        ys = [p["test"]["share"] for _, p in sel]
        style = "--" if fam == "cfg_steps" else ""
        ax.plot(xs, ys, "o" + style if style else "o", color=colour, label=fam, ms=5)
        for (lab, p), x, y in zip(sel, xs, ys, strict=True):
            ci = p["test"].get("share_ci95_approx")
            if ci:
                ax.plot([x, x], ci, color=colour, lw=0.7, alpha=0.6)
            if lab in front or fam in ("cfg_steps", "quality"):
                ax.annotate(lab.removeprefix("diffier(").removesuffix(")"), (x, y), fontsize=6, alpha=0.85,
                            xytext=(3, 2), textcoords="offset points")
    for name, pr in (presets or {}).items():
        if pr and pr["label"] in pts:
            p = pts[pr["label"]]
            ax.plot(p["test"]["evals_ratio"], p["test"]["share"], "*", ms=16, mfc="none", mec="red", mew=1.5)
            ax.annotate(f"preset {name}", (p["test"]["evals_ratio"], p["test"]["share"]), color="red", fontsize=8,
                        xytext=(6, -10), textcoords="offset points")
    for b in BUDGETS.values():
        ax.axvline(b, color="red", lw=0.7, ls=":")
    ax.axhline(0.8, color="red", lw=0.7, ls=":")
    ax.axhline(0.0, color="grey", lw=0.7)
    ax.axhline(1.0, color="tab:blue", lw=0.7, ls=":")
    ax.set_xlabel("model evaluations per image / plain CFG at the same steps")
    ax.set_ylabel("share of the quality preset's gain over plain CFG (test seeds)")
    ax.set_title(f"{doc['testbed']} ({doc['group']}): {doc['metric']['label']}, gain = all-ω "
                 f"{doc['metric']['all_omega_aggregate']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    omegas = [float(o) for o in doc["omegas"]]
    show = ["cfg[" in lab or pts[lab]["family"] == "quality" for lab in pts]
    chosen = {pr["label"] for pr in (presets or {}).values() if pr}
    for (lab, p), s in zip(pts.items(), show, strict=True):
        if p["kind"] == "cfg" or not (s or lab in chosen):
            continue
        name = next((n for n, pr in (presets or {}).items() if pr and pr["label"] == lab), None)
        R.errorbar_delta(ax2, omegas, [p["test"]["per_omega"][o]["vs_cfg"] for o in doc["omegas"]], marker="o",
                         ms=3, lw=1.6 if name else 1.0, ls="--" if p["kind"] == "control" else "-",
                         color=PRESET_COLOURS.get(name, R.COLOURS[p["family"]]),
                         label=(f"preset {name}: " if name else "") + lab)
    ax2.axhline(0.0, color="grey", lw=0.8)
    R.omega_axis(ax2, omegas)
    better = "< 0" if doc["metric"]["lower_is_better"] else "> 0"
    ax2.set_title(f"Δ score vs plain CFG (paired bootstrap 95 %, test seeds; {better}: better)", fontsize=9)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=6.5)
    fig.suptitle(f"frontier {doc['testbed']}: tuning seeds {doc['tuning_seeds']}, test seeds {doc['test_seeds']}, "
                 f"{doc['steps']} Euler steps; runtime {doc['runtime_s']['total_s']:.0f} s", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def pareto(points: dict[str, dict[str, Any]], phase: str = "test") -> set[str]:
    """Labels of the points no other point beats on both cost (fewer evaluations) and share (labelled in the plot)."""
    out = set()
    for lab, p in points.items():
        e, s = p[phase]["evals_ratio"], p[phase]["share"]
        if not math.isfinite(s):
            continue
        if not any(q[phase]["evals_ratio"] <= e and q[phase]["share"] > s for q in points.values()):
            out.add(lab)
    return out


def markdown(doc: dict[str, Any]) -> str:
    """One table: every point's evaluations, wall time and share (tuning, test) and per-ω Δ on test."""
    lines = [f"### frontier {doc['testbed']} ({doc['group']}): {doc['metric']['label']}",
             "| point | evals × CFG | wall × CFG | share (tuning) | share (test) | "
             + " | ".join(f"Δ ω={o}" for o in doc["omegas"]) + " |",
             "|---|---|---|---|---|" + "---|" * len(doc["omegas"])]
    for lab, p in doc["points"].items():
        te = p["test"]
        d = " | ".join("" if p["kind"] == "cfg" else
                       f"{te['per_omega'][o]['vs_cfg']['mean']:+.3g}{R.mark(te['per_omega'][o]['vs_cfg'])}"
                       for o in doc["omegas"])
        lines.append(f"| {lab} | {te['evals_ratio']:.2f} | {te['wall_time_ratio']:.2f} | "
                     f"{p['tuning']['share']:.2f} | {te['share']:.2f} | {d} |")
    return "\n".join(lines)


def _presets_path(out_dir: Path, quick: bool) -> Path:
    return out_dir / f"frontier_presets{'_quick' if quick else ''}.json"


def main(argv: list[str] | None = None) -> int:
    p = R.parser("python -m benchmarks.frontier", __doc__, TESTBEDS, replot=False)
    p.add_argument("--choose", action="store_true",
                   help="choose the presets from the frontier JSONs in --out (all testbeds); redraw their PNGs")
    args = p.parse_args(argv)
    out_dir, command = R.start(args, log, "benchmarks.frontier", argv)
    suffix = "_quick" if args.quick else ""
    if args.choose:
        docs = {tb: json.loads((out_dir / f"frontier_{tb}{suffix}.json").read_text()) for tb in TESTBEDS
                if (out_dir / f"frontier_{tb}{suffix}.json").exists()}
        if not docs:
            p.error(f"no frontier_<testbed>{suffix}.json in {out_dir}")
        chosen = choose(docs)
        _presets_path(out_dir, args.quick).write_text(json.dumps(chosen, indent=1, allow_nan=True))
        for tb, doc in docs.items():
            plot(doc, out_dir / f"frontier_{tb}{suffix}.png", chosen["presets"])
            if args.markdown:
                sys.stdout.write(markdown(doc) + "\n\n")
        log.info("wrote %s: %s", _presets_path(out_dir, args.quick),
                 {k: v and v["label"] for k, v in chosen["presets"].items()})
        return 0
    doc = R.run_released(run, args.testbed, args.quick, None, command)
    presets_file = _presets_path(out_dir, args.quick)
    presets = json.loads(presets_file.read_text())["presets"] if presets_file.exists() else None
    R.emit(doc, out_dir / f"frontier_{args.testbed}{suffix}.json", lambda d, path: plot(d, path, presets),
           markdown(doc) if args.markdown else None, log, doc["runtime_s"]["total_s"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
