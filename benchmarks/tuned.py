"""Every method tuned the same way, chosen on tuning seeds, reported on held-out test seeds.

One command per testbed (from the repository root)::

    .venv/bin/python -m benchmarks.tuned --testbed known_score      # -> docs/results/tuned_known_score.{json,png}
    .venv/bin/python -m benchmarks.tuned --testbed digits           # -> docs/results/tuned_digits.{json,png}
    .venv/bin/python -m benchmarks.tuned --testbed sr               # -> docs/results/tuned_sr.{json,png}
    .venv/bin/python -m benchmarks.tuned --testbed sr_photos        # -> docs/results/tuned_sr_photos.{json,png}
    .venv/bin/python -m benchmarks.tuned --testbed digits --quick --out /tmp/t   # CI smoke run (reduced grid)
    .venv/bin/python -m benchmarks.tuned --replot docs/results/tuned_digits.json --markdown

The protocol and the method grids live in :mod:`benchmarks.tuning` (one module for every testbed); the testbeds
("beds": sampling through ComfyUI's KSampler with real patch nodes, :mod:`benchmarks.harness`, and one score per
run) in :mod:`benchmarks.testbeds`; the report, plot and CLI helpers in :mod:`benchmarks.report`:

* ``known_score`` (:mod:`benchmarks.testbeds.known_score`): class-wise energy distance to exact samples, lower is
  better; groups are the two error regimes; a seed fixes the initial noise and the reference samples.
* ``digits`` (:mod:`benchmarks.testbeds.digits`, the embedded digits demo model): Fréchet distance of the held-out
  classifier's features to the test split, samples of all seeds pooled, lower is better; a seed fixes the noise.
* ``sr`` and ``sr_photos`` (:mod:`benchmarks.testbeds.sr`, the ``sr_digits_x4`` and ``sr_photos_x2`` demo models):
  PSNR of the super-resolved image against HR, mean over images, higher is better; tuning and test seeds use
  different images (digits: disjoint test images; photos: different crops of the held-out photos).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import report as R
from benchmarks import tuning as T

log = logging.getLogger("DiffIER.bench.tuned")

SCHEMA = "diffier.tuned/v1"

#: run sizes per testbed: full and quick (omegas, tuning seeds, test seeds, tuning/test samples, steps, reps)
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "known_score": {"full": R.size((1.5, 2.0, 3.0, 5.0, 7.5, 10.0), [100, 101], [0, 1, 2, 3], 160, 240, 16, 1000),
                    "quick": R.size((2.0, 5.0), [100], [0], 80, 120, 8, 200)},
    "digits": {"full": R.size((1.5, 3.0, 5.0, 10.0), [100, 101], [0, 1, 2], 40, 80, 10, 200),
               "quick": R.size((3.0,), [100], [0], 20, 30, 4, 50)},
    "sr": {"full": R.size((1.5, 3.0, 5.0), [10, 11], [0, 1, 2], 6, 12, 10, 1000),
           "quick": R.size((3.0,), [10], [0], 4, 4, 4, 200)},
    "sr_photos": {"full": R.size((1.5, 3.0, 5.0, 7.5), [10, 11], [0, 1, 2], 8, 16, 10, 1000),
                  "quick": R.size((3.0,), [10], [0], 4, 4, 4, 200)},
}


def make_beds(testbed: str, quick: bool, size: dict[str, Any], regimes: list[str] | None = None) -> tuple[Any, Any]:
    """The tuning bed (fewer samples) and the test bed of ``testbed`` (sharing one harness and model).

    Args:
        testbed: a key of :data:`SIZES`; quick: a CI run; size: :func:`benchmarks.report.size`'s dict.
        regimes: the known-score regimes (None: the default ones).
    """
    if testbed == "known_score":
        from benchmarks.testbeds.known_score import KnownScoreBed

        tune = KnownScoreBed(size["tuning_samples"], size["steps"], regimes, quick)
        return tune, KnownScoreBed(size["test_samples"], size["steps"], regimes, quick, harness=tune.h)
    if testbed == "digits":
        from benchmarks.testbeds.digits import DigitsBed

        tune = DigitsBed(size["tuning_samples"], size["steps"])
        return tune, DigitsBed(size["test_samples"], size["steps"], share=tune)
    if testbed in ("sr", "sr_photos"):
        from benchmarks.testbeds.sr import SRBed

        tune = SRBed(testbed, size["tuning_samples"], size["steps"])
        return tune, SRBed(testbed, size["test_samples"], size["steps"], harness=tune.h)
    raise ValueError(f"testbed must be one of {sorted(SIZES)}, got {testbed!r}")


# ---------------------------------------------------------------------------------------------------
# the run


def run(testbed: str, quick: bool, overrides: dict[str, Any] | None = None, command: str = "") -> dict[str, Any]:
    """The whole protocol on one testbed; the JSON document."""
    t0 = time.perf_counter()
    size = R.sized(SIZES, testbed, quick, overrides)
    grids = T.method_grids(quick)
    tune_bed, test_bed = make_beds(testbed, quick, size)
    proto = T.Protocol(tune_bed, test_bed, size["omegas"], size["tuning_seeds"], size["test_seeds"], grids,
                       size["reps"], progress=R.progress)
    proto.tune()
    proto.test()
    groups = proto.summarise()
    runtime = time.perf_counter() - t0
    budget = T.QUICK_BUDGET if quick else T.BUDGET
    doc = {
        "schema": SCHEMA, "testbed": testbed, "quick": quick, "command": command,
        "omegas": [T.okey(o) for o in size["omegas"]], "groups": list(test_bed.groups),
        "metric": {"label": test_bed.score_label, "lower_is_better": test_bed.set_lower,
                   "all_omega_aggregate": test_bed.aggregate},
        "tuning_seeds": list(size["tuning_seeds"]), "test_seeds": list(size["test_seeds"]),
        "tuning_samples": size["tuning_samples"], "test_samples": size["test_samples"],
        "bootstrap_reps": size["reps"],
        "config": {"tuning": tune_bed.config(), "test": test_bed.config()},
        "budget": {"max_settings_per_method": budget,
                   "settings_per_method": {n: len(g) for n, g in grids.items()},
                   "note": "every method gets at most this many settings, each run at every ω on the same tuning "
                           "seeds and samples; methods with fewer real knobs run all of them (no padding)"},
        "methods": {n: {"grid": [s.describe() for s in g], "n_settings": len(g), "knobs_note": T.KNOBS_NOTE[n]}
                    for n, g in grids.items()},
        "chains": {c: list(parts) for c, parts in T.CHAINS},
        "control_samplers": list(T.CONTROL_SAMPLERS),
        "results": groups,
        "runtime_s": {"tuning": proto.timing["tuning_s"], "test": proto.timing["test_s"], "total": runtime},
        "torch_threads": torch.get_num_threads(),
    }
    if hasattr(test_bed, "bicubic"):
        doc["bicubic_on_test_seeds"] = test_bed.bicubic(size["test_seeds"])
    doc["summary"] = summary(doc)
    return doc


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """Per group and ω: the best method on the test seeds (its tuned per-ω setting), and how each compares."""
    lower = doc["metric"]["lower_is_better"]
    pick = min if lower else max
    out: dict[str, Any] = {}
    for group, res in doc["results"].items():
        out[group] = {}
        for o in doc["omegas"]:
            cands = {n: m["test"][o]["score"] for n, m in res["methods"].items()}
            cands.update({c: e[o]["score"] for c, e in res["chains"].items()})
            best = pick(cands, key=lambda n: T._finite(cands[n], lower))
            alone = {n: v for n, v in cands.items() if n in res["methods"]}
            best_alone = pick(alone, key=lambda n: T._finite(alone[n], lower))
            out[group][o] = {"best": best, "best_score": cands[best], "best_single_method": best_alone,
                             "best_single_score": alone[best_alone], "cfg": res["methods"]["cfg"]["test"][o]["score"]}
    return out


# ---------------------------------------------------------------------------------------------------
# outputs


def _score_rows(by_name: dict[str, dict[str, Any]], omegas: list[str]) -> list[str]:
    """``| name | score per ω (▲/▼ vs CFG) | evaluations per ω |`` rows."""
    rows = []
    for name, by_o in by_name.items():
        cells = [f"{by_o[o]['score']:.3f}{R.mark(by_o[o].get('vs_cfg'))}" for o in omegas]
        ev = "/".join(f"{by_o[o]['evals_per_sample']:.0f}" for o in omegas)
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {ev} |")
    return rows


def markdown(doc: dict[str, Any]) -> str:
    """Markdown tables of a tuned document (scores on the test seeds; Δ = paired difference vs plain CFG)."""
    omegas = doc["omegas"]
    cols = [f"ω={o}" for o in omegas]
    lines = [f"### tuned {doc['testbed']}{' (quick)' if doc['quick'] else ''}: {doc['metric']['label']}",
             f"tuning seeds {doc['tuning_seeds']} × {doc['tuning_samples']} samples, test seeds {doc['test_seeds']} × "
             f"{doc['test_samples']} samples; budget ≤ {doc['budget']['max_settings_per_method']} settings per method "
             f"{doc['budget']['settings_per_method']}; runtime {doc['runtime_s']['total']:.0f} s",
             "▲/▼: paired bootstrap 95 % interval of the difference vs plain CFG at the same ω entirely better/worse."]
    if "bicubic_on_test_seeds" in doc:
        b = doc["bicubic_on_test_seeds"]
        lines.append(f"Reference: bicubic upsampling of the LR inputs on the test images: PSNR {b['psnr']:.3f} dB, "
                     f"SSIM {b['ssim']:.3f}.")
    for group, res in doc["results"].items():
        lines.append(f"\n#### {group}: each method at its per-ω tuned setting (test seeds)\n")
        lines += R.table_head("method", cols + ["evals/sample"])
        lines += _score_rows({n: m["test"] for n, m in res["methods"].items()}, omegas)
        for title, key in (("chains (each part at its per-ω tuned setting)", "chains"),
                           ("equal-cost controls (DiffIER's tuned evaluations as more steps)", "controls")):
            lines.append(f"\n#### {group}: {title}\n")
            lines += R.table_head("", cols + ["evals/sample"])
            lines += _score_rows(res[key], omegas)
        lines.append(f"\n#### {group}: Δ vs plain CFG (test seeds, paired bootstrap 95 %)\n")
        lines += R.table_head("method", cols)
        lines += [f"| {name} | " + " | ".join(R.delta(m["test"][o]["vs_cfg"]) for o in omegas) + " |"
                  for name, m in res["methods"].items() if name != "cfg"]
        lines.append(f"\n#### {group}: chosen settings (on the tuning seeds)\n")
        lines += R.table_head("method", cols + ["all-ω", "all-ω on test: Δ vs CFG per ω"])
        for name, m in res["methods"].items():
            if name == "cfg":
                continue
            d = ", ".join(f"{m['test_all_omega'][o]['vs_cfg']['mean']:+.3g}{R.mark(m['test_all_omega'][o]['vs_cfg'])}"
                          for o in omegas)
            lines.append(f"| {name} | " + " | ".join(f"`{m['chosen_per_omega'][o]}`" for o in omegas)
                         + f" | `{m['chosen_all_omega']}` | {d} |")
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> Path:
    """Quality vs ω, each method at its tuned setting (test seeds), and the paired differences vs plain CFG."""
    plt = R.pyplot()
    omegas = [float(o) for o in doc["omegas"]]
    groups = doc["groups"]
    fig, axes = plt.subplots(len(groups), 3, figsize=(17, 4.8 * len(groups) + 0.8), squeeze=False)
    better = "< 0" if doc["metric"]["lower_is_better"] else "> 0"
    for r, group in enumerate(groups):
        res = doc["results"][group]
        ax = axes[r][0]
        for name, m in res["methods"].items():
            ys = [m["test"][o]["score"] for o in doc["omegas"]]
            ax.plot(omegas, ys, marker="o", ms=3, lw=2.0 if name in ("cfg", "diffier") else 1.2,
                    color=R.COLOURS.get(name), label=name)
        ax.set_title(f"{group}: {doc['metric']['label']}, per-ω tuned settings (test seeds)", fontsize=9)
        for c, (title, series) in enumerate((
                ("Δ vs plain CFG (paired 95 % CI): methods at per-ω (solid) and all-ω (dotted) setting",
                 [(n, m["test"], "-") for n, m in res["methods"].items() if n != "cfg"]
                 + [(n, m["test_all_omega"], ":") for n, m in res["methods"].items() if n != "cfg"]),
                ("Δ vs plain CFG: chains (solid) and equal-cost controls (dashed)",
                 [(n, e, "-") for n, e in res["chains"].items()] + [(f"cfg {n}", e, "--")
                                                                    for n, e in res["controls"].items()])), 1):
            ax = axes[r][c]
            for name, by_o, ls in series:
                R.errorbar_delta(ax, omegas, [by_o[o]["vs_cfg"] for o in doc["omegas"]], ls=ls,
                                 marker="o" if ls != ":" else None, ms=3, lw=1.1,
                                 color=R.COLOURS.get(name.removeprefix("cfg ")), label=name if ls != ":" else None)
            ax.axhline(0.0, color="grey", lw=0.8)
            ax.set_title(f"{group}: {title}\n({better}: better than CFG)", fontsize=8.5)
        for ax in axes[r]:
            R.robust_ylim(ax)
            R.omega_axis(ax, omegas, fontsize=7)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6.5)
    fig.suptitle(f"tuned {doc['testbed']}: every method tuned on seeds {doc['tuning_seeds']}, reported on seeds "
                 f"{doc['test_seeds']} (≤ {doc['budget']['max_settings_per_method']} settings each; "
                 "off-frame: diverged)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = R.parser("python -m benchmarks.tuned", __doc__, list(SIZES))
    p.add_argument("--omegas", nargs="+", type=float)
    args = p.parse_args(argv)
    out_dir, command = R.start(args, log, "benchmarks.tuned", argv)
    if args.replot is not None:
        doc = json.loads(args.replot.read_text())
        if args.markdown:
            sys.stdout.write(markdown(doc) + "\n")
        log.info("wrote %s", plot(doc, (args.out or args.replot.parent) / (args.replot.stem + ".png")))
        return 0
    overrides = {"omegas": tuple(args.omegas)} if args.omegas else {}
    doc = R.run_released(run, args.testbed, args.quick, overrides, command)
    json_path = out_dir / f"tuned_{args.testbed}{'_quick' if args.quick else ''}.json"
    R.emit(doc, json_path, plot, markdown(doc) if args.markdown else None, log, doc["runtime_s"]["total"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
