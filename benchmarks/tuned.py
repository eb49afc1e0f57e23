"""Issue 14: every method tuned the same way, chosen on tuning seeds, reported on held-out test seeds.

One command per testbed (from the repository root)::

    .venv/bin/python -m benchmarks.tuned --testbed known_score      # -> docs/results/tuned_known_score.{json,png}
    .venv/bin/python -m benchmarks.tuned --testbed digits           # -> docs/results/tuned_digits.{json,png}
    .venv/bin/python -m benchmarks.tuned --testbed sr               # -> docs/results/tuned_sr.{json,png}
    .venv/bin/python -m benchmarks.tuned --testbed digits --quick --out /tmp/t   # CI smoke run (reduced grid)
    .venv/bin/python -m benchmarks.tuned --replot docs/results/tuned_digits.json --markdown

The protocol and the method grids live in :mod:`benchmarks.tuning` (one module for every testbed). This module
supplies the testbeds ("beds"): sampling through ComfyUI's KSampler with real patch nodes
(:mod:`benchmarks.harness`) and one score per run:

* ``known_score`` (:mod:`benchmarks.known_score` models, the beds of :mod:`benchmarks.cost_and_chains`): class-wise
  energy distance to exact samples, lower is better; groups are the two error regimes; a seed fixes the initial
  noise and the reference samples.
* ``digits`` (the embedded digits demo model): Fréchet distance of the held-out classifier's features to the test
  split, samples of all seeds pooled, lower is better; a seed fixes the initial noise.
* ``sr`` (the ``sr_digits_x4`` demo model): PSNR of the ×4 super-resolved digit against the HR digit, mean over
  images, higher is better; seed ``s`` uses test images ``[64 s, 64 s + n)`` and noise seed ``s``, so tuning and test
  seeds also use disjoint images.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import cost_and_chains as CC
from benchmarks import tuning as T
from benchmarks.harness import Harness

log = logging.getLogger("DiffIER.bench.tuned")

SCHEMA = "diffier.tuned/v1"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "results"
SR_STRIDE = 64   # images per seed slot of the SR test set (a seed uses the first n of its slot)

#: run sizes per testbed: full and quick
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "known_score": {
        "full": {"omegas": (1.5, 2.0, 3.0, 5.0, 7.5, 10.0), "tuning_seeds": [100, 101], "test_seeds": [0, 1, 2, 3],
                 "tuning_samples": 160, "test_samples": 240, "steps": 16, "reps": 1000},
        "quick": {"omegas": (2.0, 5.0), "tuning_seeds": [100], "test_seeds": [0], "tuning_samples": 80,
                  "test_samples": 120, "steps": 8, "reps": 200},
    },
    "digits": {
        "full": {"omegas": (1.5, 3.0, 5.0, 10.0), "tuning_seeds": [100, 101], "test_seeds": [0, 1, 2],
                 "tuning_samples": 40, "test_samples": 80, "steps": 10, "reps": 200},
        "quick": {"omegas": (3.0,), "tuning_seeds": [100], "test_seeds": [0], "tuning_samples": 20,
                  "test_samples": 30, "steps": 4, "reps": 50},
    },
    "sr": {
        "full": {"omegas": (1.5, 3.0, 5.0), "tuning_seeds": [10, 11], "test_seeds": [0, 1, 2],
                 "tuning_samples": 6, "test_samples": 12, "steps": 10, "reps": 1000},
        "quick": {"omegas": (3.0,), "tuning_seeds": [10], "test_seeds": [0], "tuning_samples": 4,
                  "test_samples": 4, "steps": 4, "reps": 200},
    },
}


# ---------------------------------------------------------------------------------------------------
# beds


class KnownScoreBed(CC.KnownScoreBed):
    """Known scores; the all-ω choice averages the energy-distance difference from plain CFG."""

    aggregate = "difference"
    score_label = "class-wise energy distance ↓"

    def __init__(self, quick: bool, samples: int, steps: int, regimes: list[str] | None = None) -> None:
        super().__init__(quick, None, samples, regimes, steps)


class DigitsBed(CC.DigitsBed):
    """Digits; the all-ω choice averages log(FD / FD of plain CFG)."""

    aggregate = "log_ratio"
    score_label = "FD (classifier features, pooled over seeds) ↓"

    def __init__(self, quick: bool, samples: int, steps: int, share: DigitsBed | None = None) -> None:
        if share is None:
            super().__init__(quick, None, samples, None, steps)
            return
        self.D = share.D
        self.cfgd = self.D.RunConfig(seeds=(0,), per_class=samples // 10, steps=steps)
        self.bench = self.D.DigitsBench(self.cfgd, share=share.bench)
        self.h, self.groups, self.seeds = self.bench.h, ["digits"], [0]
        self.base_steps, self.labels = steps, self.bench.labels


class SRBed:
    """Super-resolution on the digits ×4 demo model; score = mean PSNR (dB) over images, higher is better.

    Args:
        images: images per seed (at most :data:`SR_STRIDE`).
        steps: Euler steps.
        harness: a booted harness to share (None: boot one).
    """

    name = "sr"
    set_lower = False
    aggregate = "difference"
    score_label = "PSNR (dB) ↑"
    groups = ["digits_x4"]

    def __init__(self, images: int, steps: int, harness: Harness | None = None) -> None:
        from benchmarks import sr as S

        if not 0 < images <= SR_STRIDE:
            raise ValueError(f"images must be in 1..{SR_STRIDE}, got {images}")
        self.S = S
        self.h = harness or Harness()
        self.dm = self.h.pack.nodes.demo_models
        (self.model,) = self.h.run_node("DiffIERDemoModelLoader", model_name=S.MODELS["digits"])
        self.mconfig = self.model.model.diffier_demo_config
        self.images, self.base_steps = images, steps
        self._data: dict[int, tuple] = {}

    def config(self) -> dict[str, Any]:
        return {"samples": self.images, "steps": self.base_steps, "sampler": "euler", "scheduler": "normal",
                "model": self.S.MODELS["digits"], "images": f"test split, seed s uses [{SR_STRIDE}s, {SR_STRIDE}s+n)"}

    def data(self, seed: int) -> tuple:
        if seed not in self._data:
            hr_all, _ = self.S.test_set("digits", SR_STRIDE * (seed + 1))
            hr = hr_all[SR_STRIDE * seed: SR_STRIDE * seed + self.images]
            lr = self.dm.sr_degrade(hr, self.mconfig["scale"], self.mconfig["blur_sigma"])
            pos, neg = self.dm.sr_conditioning(self.dm.sr_condition_image(lr, self.mconfig))
            self._data[seed] = (hr, pos, neg)
        return self._data[seed]

    def run(self, group: str, job: T.Job, omega: float, seed: int, steps: int) -> dict[str, Any]:
        hr, pos, neg = self.data(seed)
        res = self.h.sample(self.model, job.method(), positive=pos, negative=neg,
                            latent=self.dm.sr_empty_latent(hr.shape[0], self.mconfig), seed=seed, steps=steps,
                            cfg=omega, sampler=job.sampler or "euler", scheduler="normal")
        finite = torch.isfinite(res.samples).reshape(res.samples.shape[0], -1).all(dim=1)
        out = ((torch.nan_to_num(res.samples.float(), nan=0.0, posinf=1.0, neginf=-1.0) + 1) / 2).clamp(0, 1)
        q = self.S.image_quality(out, hr)
        return {"set": float(q["psnr"].mean()), "sample": q["psnr"].double(), "ssim": float(q["ssim"].mean()),
                "nonfinite": int((~finite).sum()), "evals": res.evals_per_sample, "wall_s": res.wall_s}

    def pooled_set(self, runs: list[dict]) -> None:
        return None

    def set_bootstrap(self, runs_a: list[dict], runs_b: list[dict], reps: int) -> dict[str, float]:
        """Paired bootstrap over images of the mean PSNR difference."""
        ci = CC.bootstrap_mean_diff(torch.cat([r["sample"] for r in runs_a]),
                                    torch.cat([r["sample"] for r in runs_b]), reps)
        return {"mean": ci["mean"], "lo": ci["lo"], "hi": ci["hi"]}


def make_beds(testbed: str, quick: bool, size: dict[str, Any]) -> tuple[Any, Any]:
    """The tuning bed (fewer samples) and the test bed of ``testbed``."""
    if testbed == "known_score":
        return (KnownScoreBed(quick, size["tuning_samples"], size["steps"]),
                KnownScoreBed(quick, size["test_samples"], size["steps"]))
    if testbed == "digits":
        tune = DigitsBed(quick, size["tuning_samples"], size["steps"])
        return tune, DigitsBed(quick, size["test_samples"], size["steps"], share=tune)
    if testbed == "sr":
        tune = SRBed(size["tuning_samples"], size["steps"])
        return tune, SRBed(size["test_samples"], size["steps"], harness=tune.h)
    raise ValueError(f"testbed must be one of {sorted(SIZES)}, got {testbed!r}")


# ---------------------------------------------------------------------------------------------------
# the run


def _tqdm(**kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(file=sys.stderr, mininterval=5.0, **kwargs)


def run(testbed: str, quick: bool, overrides: dict[str, Any] | None = None, command: str = "") -> dict[str, Any]:
    """The whole protocol on one testbed; the JSON document."""
    t0 = time.perf_counter()
    size = {**SIZES[testbed]["quick" if quick else "full"], **(overrides or {})}
    grids = T.method_grids(quick)
    tune_bed, test_bed = make_beds(testbed, quick, size)
    proto = T.Protocol(tune_bed, test_bed, size["omegas"], size["tuning_seeds"], size["test_seeds"], grids,
                       size["reps"], progress=_tqdm)
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
    doc["summary"] = summary(doc)
    return doc


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """Per group and ω: the best method on the test seeds (its tuned per-ω setting), and how each compares."""
    lower = doc["metric"]["lower_is_better"]
    out: dict[str, Any] = {}
    for group, res in doc["results"].items():
        out[group] = {}
        for o in doc["omegas"]:
            cands = {n: m["test"][o]["score"] for n, m in res["methods"].items()}
            cands.update({c: e[o]["score"] for c, e in res["chains"].items()})
            pick = min if lower else max
            best = pick(cands, key=lambda n: T._finite(cands[n], lower))
            alone = {n: v for n, v in cands.items() if n in res["methods"]}
            best_alone = pick(alone, key=lambda n: T._finite(alone[n], lower))
            out[group][o] = {"best": best, "best_score": cands[best], "best_single_method": best_alone,
                             "best_single_score": alone[best_alone], "cfg": res["methods"]["cfg"]["test"][o]["score"]}
    return out


# ---------------------------------------------------------------------------------------------------
# outputs


def _mark(ci: dict[str, Any] | None) -> str:
    if not ci:
        return ""
    return {"better": " ▲", "worse": " ▼", "tie": ""}[ci["sig"]]


def _d(ci: dict[str, Any]) -> str:
    return f"{ci['mean']:+.3g} [{ci['lo']:+.3g}, {ci['hi']:+.3g}]"


def markdown(doc: dict[str, Any]) -> str:
    """Markdown tables of a tuned document (scores on the test seeds; Δ = paired difference vs plain CFG)."""
    lines = [f"### tuned {doc['testbed']}{' (quick)' if doc['quick'] else ''}: {doc['metric']['label']}",
             f"tuning seeds {doc['tuning_seeds']} × {doc['tuning_samples']} samples, test seeds {doc['test_seeds']} × "
             f"{doc['test_samples']} samples; budget ≤ {doc['budget']['max_settings_per_method']} settings per method "
             f"{doc['budget']['settings_per_method']}; runtime {doc['runtime_s']['total']:.0f} s",
             "▲/▼: paired bootstrap 95 % interval of the difference vs plain CFG at the same ω entirely better/worse."]
    for group, res in doc["results"].items():
        lines.append(f"\n#### {group}: each method at its per-ω tuned setting (test seeds)\n")
        lines.append("| method | " + " | ".join(f"ω={o}" for o in doc["omegas"]) + " | evals/sample |")
        lines.append("|---|" + "---|" * (len(doc["omegas"]) + 1))
        for name, m in res["methods"].items():
            cells = [f"{m['test'][o]['score']:.3f}{_mark(m['test'][o].get('vs_cfg'))}" for o in doc["omegas"]]
            ev = "/".join(f"{m['test'][o]['evals_per_sample']:.0f}" for o in doc["omegas"])
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {ev} |")
        for title, key in (("chains (each part at its per-ω tuned setting)", "chains"),
                           ("equal-cost controls (DiffIER's tuned evaluations as more steps)", "controls")):
            lines.append(f"\n#### {group}: {title}\n")
            lines.append("| | " + " | ".join(f"ω={o}" for o in doc["omegas"]) + " | evals/sample |")
            lines.append("|---|" + "---|" * (len(doc["omegas"]) + 1))
            for name, by_o in res[key].items():
                cells = [f"{by_o[o]['score']:.3f}{_mark(by_o[o].get('vs_cfg'))}" for o in doc["omegas"]]
                ev = "/".join(f"{by_o[o]['evals_per_sample']:.0f}" for o in doc["omegas"])
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {ev} |")
        lines.append(f"\n#### {group}: Δ vs plain CFG (test seeds, paired bootstrap 95 %)\n")
        lines.append("| method | " + " | ".join(f"ω={o}" for o in doc["omegas"]) + " |")
        lines.append("|---|" + "---|" * len(doc["omegas"]))
        for name, m in res["methods"].items():
            if name == "cfg":
                continue
            lines.append(f"| {name} | " + " | ".join(_d(m["test"][o]["vs_cfg"]) for o in doc["omegas"]) + " |")
        lines.append(f"\n#### {group}: chosen settings (on the tuning seeds)\n")
        lines.append("| method | " + " | ".join(f"ω={o}" for o in doc["omegas"]) + " | all-ω | all-ω on test: "
                     "Δ vs CFG per ω |")
        lines.append("|---|" + "---|" * (len(doc["omegas"]) + 2))
        for name, m in res["methods"].items():
            if name == "cfg":
                continue
            d = ", ".join(f"{m['test_all_omega'][o]['vs_cfg']['mean']:+.3g}{_mark(m['test_all_omega'][o]['vs_cfg'])}"
                          for o in doc["omegas"])
            lines.append(f"| {name} | " + " | ".join(f"`{m['chosen_per_omega'][o]}`" for o in doc["omegas"])
                         + f" | `{m['chosen_all_omega']}` | {d} |")
    return "\n".join(lines)


COLOURS = {"cfg": "black", "diffier": "tab:blue", "apg": "tab:green", "rescalecfg": "tab:orange",
           "epsilon_scaling": "tab:purple", "cfgzerostar": "tab:red", "tcfg": "tab:brown",
           "diffier→apg": "tab:olive", "apg→diffier": "tab:green", "diffier→cfgzerostar": "tab:red",
           "rescalecfg→diffier": "tab:orange", "euler": "grey", "dpmpp_2m": "tab:cyan", "uni_pc": "tab:pink"}


def plot(doc: dict[str, Any], path: Path) -> Path:
    """Quality vs ω, each method at its tuned setting (test seeds), and the paired differences vs plain CFG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    omegas = [float(o) for o in doc["omegas"]]
    groups = doc["groups"]
    fig, axes = plt.subplots(len(groups), 3, figsize=(17, 4.8 * len(groups) + 0.8), squeeze=False)
    for r, group in enumerate(groups):
        res = doc["results"][group]
        ax = axes[r][0]
        for name, m in res["methods"].items():
            ys = [m["test"][o]["score"] for o in doc["omegas"]]
            ax.plot(omegas, ys, marker="o", ms=3, lw=2.0 if name in ("cfg", "diffier") else 1.2,
                    color=COLOURS.get(name), label=name)
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
                d = [by_o[o]["vs_cfg"] for o in doc["omegas"]]
                mean = [v["mean"] for v in d]
                err = [[max(0.0, v["mean"] - v["lo"]) for v in d], [max(0.0, v["hi"] - v["mean"]) for v in d]]
                key = name.removeprefix("cfg ")
                ax.errorbar(omegas, mean, yerr=err, ls=ls, marker="o" if ls != ":" else None, ms=3, lw=1.1,
                            capsize=2, color=COLOURS.get(key), label=name if ls != ":" else None)
            ax.axhline(0.0, color="grey", lw=0.8)
            better = "< 0" if doc["metric"]["lower_is_better"] else "> 0"
            ax.set_title(f"{group}: {title}\n({better}: better than CFG)", fontsize=8.5)
        for ax in axes[r]:
            _robust_ylim(ax)
            ax.set_xscale("log")
            ax.set_xticks(omegas)
            ax.set_xticklabels([f"{o:g}" for o in omegas], fontsize=7)
            ax.minorticks_off()
            ax.set_xlabel("guidance weight ω", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6.5)
    fig.suptitle(f"tuned {doc['testbed']}: every method tuned on seeds {doc['tuning_seeds']}, reported on seeds "
                 f"{doc['test_seeds']} (≤ {doc['budget']['max_settings_per_method']} settings each; "
                 "off-frame: diverged)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _robust_ylim(ax: Any) -> None:
    """Keep the bulk of the curves readable: a diverging method (CFGZeroStar on known scores) runs off-frame."""
    import numpy as np

    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()] or [np.zeros(1)])
    ys = ys[np.isfinite(ys)]
    if ys.size < 4:
        return
    q1, q3 = np.quantile(ys, [0.25, 0.75])
    span = max(q3 - q1, 1e-6)
    lo, hi = max(ys.min(), q1 - 3.0 * span), min(ys.max(), q3 + 3.0 * span)
    pad = 0.08 * (hi - lo or 1.0)
    ax.set_ylim(lo - pad, hi + pad)


def json_default(o: Any) -> Any:
    """``json.dumps`` ``default``: tensors as lists."""
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tuned", description=__doc__.split("\n\n")[0])
    p.add_argument("--testbed", choices=sorted(SIZES), default="known_score")
    p.add_argument("--quick", action="store_true", help="reduced grid and sizes (CI smoke run)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default docs/results)")
    p.add_argument("--omegas", nargs="+", type=float)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--replot", type=Path, help="redraw the PNG (and --markdown) from an existing JSON")
    p.add_argument("--markdown", action="store_true", help="print the Markdown tables")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    if args.replot is not None:
        doc = json.loads(args.replot.read_text())
        if args.markdown:
            sys.stdout.write(markdown(doc) + "\n")
        log.info("wrote %s", plot(doc, (args.out or args.replot.parent) / (args.replot.stem + ".png")))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = args.out or DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = {"omegas": tuple(args.omegas)} if args.omegas else {}
    command = "python -m benchmarks.tuned " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                   else sys.argv[1:]))
    try:
        doc = run(args.testbed, args.quick, overrides, command)
    finally:
        from scripts import comfy_inprocess

        comfy_inprocess.release_models()
    stem = f"tuned_{args.testbed}{'_quick' if args.quick else ''}"
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(doc, indent=1, allow_nan=True, default=json_default))
    png = plot(doc, out_dir / f"{stem}.png")
    if args.markdown:
        sys.stdout.write(markdown(doc) + "\n")
    log.info("wrote %s and %s (%.0f s)", json_path, png, doc["runtime_s"]["total"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
