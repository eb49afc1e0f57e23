"""Testbed 2: guidance methods on the embedded digits demo model, scored by a held-out classifier.

    .venv/bin/python -m benchmarks.digits             # full run  -> docs/results/digits.json + PNGs
    .venv/bin/python -m benchmarks.digits --quick --out /tmp/digits   # CI smoke run (a couple of minutes)

Every method runs through ``benchmarks.harness`` (ComfyUI's KSampler node, methods as real ComfyUI
MODEL-patch nodes: RescaleCFG, APG, CFGZeroStar, DiffIERGuider, or the pack's DiffIER patch for
core-only options). The model is loaded by the pack's own ``DiffIERDemoModelLoader`` node. Each
(method, ω, seed) is one KSampler batch with an equal number of samples per digit.

Metrics (classifier from ``training/digits_data.py``, trained on the train split; features = its
64-d penultimate layer; references = the 1,000-image test split):

* ``fd``: Fréchet distance between sample and test features (lower is better);
* ``is``: Inception-Score analog exp E_x KL(p(y|x) || p(y)) (higher is better, max 10);
* ``accuracy``: fraction of samples the classifier assigns to the requested digit;
* ``precision``/``recall``/``density``/``coverage``: ``prdc.compute_prdc`` with k = 5 against test features;
* ``evals_per_sample``: model rows evaluated per sample (cond and uncond count one each); ``wall_s``.

Means over seeds with 95% t-intervals. To add a method (issue 8: equal-cost controls, chains), append
a ``harness.Method`` to ``sweep_methods()`` or ``grid_methods()``; chains are tuples of patch nodes.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness import DIFFIER_DEFAULTS, Harness, Method

log = logging.getLogger("benchmarks.digits")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "results"
MODEL_NAME = "digits_diffusion.safetensors"
SCHEMA_VERSION = 1
METRICS = ("fd", "is", "accuracy", "precision", "recall", "density", "coverage", "evals_per_sample", "wall_s")
OMEGAS = (1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0)


def _diffier(**overrides) -> dict[str, Any]:
    return {**DIFFIER_DEFAULTS, **overrides}


def sweep_methods() -> list[Method]:
    """Methods run at every ω: plain CFG, DiffIER variants at the node defaults, ComfyUI's CFG fixes."""
    core = {k: v for k, v in DIFFIER_DEFAULTS.items()}
    return [
        Method("cfg"),
        Method("diffier-consistency", (("DiffIERGuider", _diffier()),)),
        Method("diffier-consistency-condinner", core_diffier={**core, "inner_guidance": "cond"}),
        Method("diffier-paper-mean", (("DiffIERGuider", _diffier(mode="paper")),)),
        Method("diffier-paper-sum", core_diffier={**core, "mode": "paper", "reduction": "sum"}),
        Method("rescalecfg", (("RescaleCFG", {"multiplier": 0.7}),)),
        Method("apg", (("APG", {"eta": 1.0, "norm_threshold": 5.0, "momentum": 0.0}),)),
        Method("cfgzerostar", (("CFGZeroStar", {}),)),
    ]


def grid_methods() -> list[Method]:
    """DiffIER consistency over η × max_iters (run at ``grid_omegas`` only)."""
    out = []
    for eta in (0.05, 0.1, 0.25):
        for iters in (1, 2, 4):
            if (eta, iters) == (DIFFIER_DEFAULTS["eta"], DIFFIER_DEFAULTS["max_iters"]):
                continue  # that one is "diffier-consistency" in the sweep
            out.append(Method(f"diffier-consistency-eta{eta:g}-it{iters}",
                              (("DiffIERGuider", _diffier(eta=eta, max_iters=iters)),)))
    return out


@dataclasses.dataclass
class RunConfig:
    omegas: tuple[float, ...] = OMEGAS
    seeds: tuple[int, ...] = (0, 1, 2)
    per_class: int = 6
    steps: int = 20
    samplers: tuple[str, ...] = ("euler",)
    scheduler: str = "normal"
    grid_omegas: tuple[float, ...] = (3.0,)
    sweep: tuple[str, ...] = ()   # method names to run in the sweep (empty: all)
    # ω subsets for costly/secondary sweep methods (others run at every ω in ``omegas``)
    method_omegas: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=lambda: {
        "diffier-consistency-condinner": (1.5, 3.0, 7.5, 15.0),
        "diffier-paper-mean": (1.5, 3.0, 7.5, 15.0),
        "diffier-paper-sum": (1.5, 3.0, 7.5, 15.0),
    })
    grid: bool = True
    grid_png_omegas: tuple[float, ...] = (3.0, 10.0)


def quick_config() -> RunConfig:
    """CI smoke run: plain CFG over five ω (its sweet spot is near 1.5), the other methods at ω = 3 only."""
    others = ("diffier-consistency", "diffier-paper-mean", "rescalecfg", "apg", "cfgzerostar")
    return RunConfig(omegas=(1.0, 1.5, 2.0, 3.0, 15.0), seeds=(0,), per_class=8, steps=20,
                     sweep=("cfg",) + others, method_omegas={m: (3.0,) for m in others},
                     grid=False, grid_omegas=(), grid_png_omegas=(3.0,))


# ----------------------------------------------------------------------------------------------
# data, classifier and metrics


def _load_digits_data():
    name = "_diffier_digits_data"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "training" / "digits_data.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` and ``b`` ([N, D])."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # near-singular products at small sample counts are expected
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eps = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def inception_score(probs: np.ndarray) -> float:
    """exp E_x KL(p(y|x) || p(y)) with p(y) the marginal over the sample set."""
    p = np.clip(probs, 1e-12, 1.0)
    marginal = p.mean(0, keepdims=True)
    return float(np.exp((p * (np.log(p) - np.log(marginal))).sum(1).mean()))


class Scorer:
    """Classifier features of the test split, and the metrics of a batch of generated digits."""

    def __init__(self) -> None:
        dd = _load_digits_data()
        self.classifier = dd.load_classifier()
        data = dd.load_split()
        self.data = data
        feats, probs = self.classifier.embed(data["x_test"])
        self.test_features = feats.numpy().astype(np.float64)
        self.test_accuracy = float((probs.argmax(-1) == data["y_test"]).float().mean())

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """``images`` [N, 28, 28] in [0, 1]; ``labels`` the requested digits."""
        from prdc import compute_prdc

        feats, probs = self.classifier.embed(images)
        f = feats.numpy().astype(np.float64)
        prdc = compute_prdc(real_features=self.test_features, fake_features=f, nearest_k=5)
        return {"fd": frechet_distance(f, self.test_features), "is": inception_score(probs.numpy()),
                "accuracy": float((probs.argmax(-1) == labels).float().mean()),
                **{k: float(v) for k, v in prdc.items()}}

    def reference(self) -> dict[str, float]:
        """The metrics of real train-split digits (same count as the test split): the floor/ceiling."""
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(self.data["x_train"].shape[0], generator=g)[:self.test_features.shape[0]]
        return self.score(self.data["x_train"][idx], self.data["y_train"][idx])


def _file_metadata(path: Path, key: str) -> dict[str, Any]:
    """A JSON entry of a safetensors file's metadata (training hyperparameters, losses, timings)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    info = json.loads(meta.get(key, "{}"))
    info.pop("loss_curve", None)
    return {"file": path.name, "bytes": path.stat().st_size, **info}


def ci95(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval); half-width 0 for a single value."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


# ----------------------------------------------------------------------------------------------
# the run


def all_jobs(cfg: RunConfig) -> list[tuple[Method, float, str]]:
    """``(method, ω, group)`` in report order."""
    sweep = [m for m in sweep_methods() if not cfg.sweep or m.name in cfg.sweep]
    jobs = [(m, w, "sweep") for m in sweep for w in cfg.omegas if w in cfg.method_omegas.get(m.name, cfg.omegas)]
    if cfg.grid:
        jobs += [(m, w, "grid") for m in grid_methods() for w in cfg.grid_omegas]
    return jobs


class DigitsBench:
    def __init__(self, config: RunConfig, share: DigitsBench | None = None) -> None:
        """Args: config: the run; share: a bench whose harness, model and scorer to reuse (another sample count)."""
        self.config = config
        self.h = share.h if share else Harness()
        self.dm = self.h.pack.nodes.demo_models
        (self.model,) = (share.model,) if share else self.h.run_node("DiffIERDemoModelLoader", model_name=MODEL_NAME)
        self.scorer = share.scorer if share else Scorer()
        self.labels = torch.arange(10).repeat_interleave(config.per_class)
        inner = self.model.model
        self.positive = self.dm.digits_conditioning(inner, self.labels.tolist())
        self.negative = self.dm.digits_conditioning(inner, self.dm.NULL_CLASS, batch=self.labels.numel())
        self.grids: dict[tuple[str, float, str], torch.Tensor] = {}

    def run_one(self, method: Method, omega: float, seed: int, sampler: str) -> dict[str, float]:
        cfg = self.config
        latent = self.dm.digits_empty_latent(self.labels.numel())
        res = self.h.sample(self.model, method, positive=self.positive, negative=self.negative, latent=latent,
                            seed=seed, steps=cfg.steps, cfg=omega, sampler=sampler, scheduler=cfg.scheduler)
        images = self.dm.digits_to_unit(res.samples)
        if seed == cfg.seeds[0] and omega in cfg.grid_png_omegas:
            self.grids[(method.name, omega, sampler)] = images
        metrics = self.scorer.score(images, self.labels)
        nonfinite = int((~torch.isfinite(res.samples)).any(dim=(1, 2, 3)).sum())
        return {**metrics, "evals_per_sample": res.evals_per_sample, "wall_s": res.wall_s,
                "nonfinite_samples": nonfinite}

    def run(self, shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
        """All jobs, or every ``n``-th starting at ``i`` for ``shard = (i, n)`` (merge with ``--merge``)."""
        cfg = self.config
        jobs = all_jobs(cfg)[shard[0]::shard[1]]
        results = []
        t_start = time.perf_counter()
        for sampler in cfg.samplers:
            for i, (method, omega, group) in enumerate(jobs):
                per_seed = [self.run_one(method, omega, seed, sampler) for seed in cfg.seeds]
                entry = {"method": method.name, "group": group, "omega": omega, "sampler": sampler,
                         "patches": [[n, p] for n, p in method.patches], "core_diffier": method.core_diffier,
                         "per_seed": per_seed, "mean": {}, "ci95": {}}
                for k in METRICS:
                    entry["mean"][k], entry["ci95"][k] = ci95([r[k] for r in per_seed])
                results.append(entry)
                log.info("[%d/%d %s] %-40s ω=%-5g FD %.2f±%.2f  IS %.2f  acc %.3f  evals %.0f  %.1fs", i + 1,
                         len(jobs), sampler, method.name, omega, entry["mean"]["fd"], entry["ci95"]["fd"],
                         entry["mean"]["is"], entry["mean"]["accuracy"], entry["mean"]["evals_per_sample"],
                         entry["mean"]["wall_s"])
        total = time.perf_counter() - t_start
        return {
            "schema_version": SCHEMA_VERSION,
            "testbed": "digits",
            "config": {**dataclasses.asdict(cfg), "model": MODEL_NAME, "samples_per_run": int(self.labels.numel()),
                       "metrics": list(METRICS), "prdc_nearest_k": 5, "reference_set": "test split (1000)"},
            "model": _file_metadata(self.dm.MODELS_DIR / MODEL_NAME, "diffier_demo.training"),
            "classifier": {"test_accuracy": self.scorer.test_accuracy,
                           **_file_metadata(_load_digits_data().CLASSIFIER_PATH, "diffier_digits.classifier")},
            "reference_real_train": self.scorer.reference(),
            "results": results,
            "total_wall_s": total,
            "torch_threads": torch.get_num_threads(),
        }


# ----------------------------------------------------------------------------------------------
# output


def plot_quality(report: dict, path: Path, sampler: str = "euler") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("fd", "FD (classifier features) ↓"), ("is", "IS analog ↑"), ("accuracy", "class accuracy ↑"),
              ("precision", "precision ↑"), ("recall", "recall ↑"), ("coverage", "coverage ↑")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    sweep = [r for r in report["results"] if r["group"] == "sweep" and r["sampler"] == sampler]
    names = list(dict.fromkeys(r["method"] for r in sweep))
    ref = report["reference_real_train"]
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for name in names:
            rows = sorted((r for r in sweep if r["method"] == name), key=lambda r: r["omega"])
            w = [r["omega"] for r in rows]
            ax.errorbar(w, [r["mean"][key] for r in rows], yerr=[r["ci95"][key] for r in rows], label=name,
                        marker="o", ms=3, capsize=2, lw=1.2, ls="--" if name.startswith("diffier") else "-")
        ax.axhline(ref[key], color="k", lw=0.8, ls=":", label="real digits (train)")
        ax.set_xscale("log")
        ax.set_xticks(report["config"]["omegas"])
        ax.set_xticklabels([f"{w:g}" for w in report["config"]["omegas"]])
        ax.set_xlabel("guidance scale ω")
        ax.set_title(title)
        if key == "fd":
            ax.set_yscale("log")
    axes.flat[0].legend(fontsize=7)
    cfg = report["config"]
    fig.suptitle(f"digits testbed: {sampler}, {cfg['steps']} steps, {cfg['samples_per_run']} samples × "
                 f"{len(cfg['seeds'])} seeds per point (mean ± 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_grids(grids: dict, config: RunConfig, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    order = [m.name for m in sweep_methods()]
    for omega in config.grid_png_omegas:
        for sampler in config.samplers:
            items = sorted(((name, img) for (name, w, s), img in grids.items() if w == omega and s == sampler),
                           key=lambda item: order.index(item[0]) if item[0] in order else len(order))
            if not items:
                continue
            cols = 4
            rows = math.ceil(len(items) / cols)
            fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.2, rows * 3.4), squeeze=False)
            for ax in axes.flat:
                ax.axis("off")
            for ax, (name, img) in zip(axes.flat, items, strict=False):
                per = config.per_class
                k = min(per, 8)
                sel = torch.stack([img[c * per:c * per + k] for c in range(10)])  # [10, k, 28, 28]
                grid = sel.permute(0, 2, 1, 3).reshape(10 * 28, k * 28)
                ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_title(name, fontsize=8)
            fig.suptitle(f"ω = {omega:g}, {sampler}, seed {config.seeds[0]} (row = requested digit)")
            fig.tight_layout()
            w_tag = f"{omega:g}".replace(".", "p")
            name = f"digits_samples_{sampler}_w{w_tag}.png"
            fig.savefig(out / name, dpi=90)
            plt.close(fig)
            files.append(name)
    return files


def _fmt(entry: dict, key: str, digits: int = 2) -> str:
    return f"{entry['mean'][key]:.{digits}f} ± {entry['ci95'][key]:.{digits}f}"


def paired_vs_cfg(report: dict, entry: dict, key: str) -> tuple[float, float] | None:
    """Paired (same seed = same initial noise) difference ``entry − cfg`` at the same ω and sampler:
    (mean, 95% half-width), or None for cfg itself / when cfg did not run at that ω."""
    ref = [r for r in report["results"] if r["method"] == "cfg" and r["omega"] == entry["omega"]
           and r["sampler"] == entry["sampler"]]
    if entry["method"] == "cfg" or not ref:
        return None
    return ci95([a[key] - b[key] for a, b in zip(entry["per_seed"], ref[0]["per_seed"], strict=True)])


def _mark(report: dict, entry: dict, key: str, lower_is_better: bool) -> str:
    d = paired_vs_cfg(report, entry, key)
    if d is None or d[1] == 0.0 or abs(d[0]) <= d[1]:
        return ""
    better = (d[0] < 0) == lower_is_better
    return " ▲" if better else " ▼"


def tables_markdown(report: dict, sampler: str = "euler") -> str:
    """Markdown tables of a report: FD and accuracy per method × ω, each method at its best-FD ω, the grid."""
    rows = [r for r in report["results"] if r["sampler"] == sampler]
    sweep = [r for r in rows if r["group"] == "sweep"]
    names = list(dict.fromkeys(r["method"] for r in sweep))
    omegas = report["config"]["omegas"]
    lines = []
    for key, title, digits in (("fd", "FD ↓", 1), ("accuracy", "class accuracy ↑", 3), ("is", "IS analog ↑", 2),
                               ("recall", "recall ↑", 3)):
        lines += [f"**{title}** (mean ± 95% CI over {len(report['config']['seeds'])} seeds; ▲/▼: paired 95% CI "
                  f"vs plain CFG at the same ω entirely better/worse)", "",
                  "| method | " + " | ".join(f"ω={w:g}" for w in omegas) + " |",
                  "|---|" + "---|" * len(omegas)]
        for name in names:
            cells = {r["omega"]: _fmt(r, key, digits) + _mark(report, r, key, key == "fd")
                     for r in sweep if r["method"] == name}
            lines.append(f"| {name} | " + " | ".join(cells.get(w, "") for w in omegas) + " |")
        lines.append("")
    cols = ("fd", "is", "accuracy", "precision", "recall", "density", "coverage")
    header = "| method | best ω | " + " | ".join(cols) + " | evals/sample | wall s/run |"
    lines += ["**Each method at its best-FD ω**", "", header, "|---|---|" + "---|" * (len(cols) + 2)]
    for name in names:
        best = min((r for r in sweep if r["method"] == name), key=lambda r: r["mean"]["fd"])
        lines.append(f"| {name} | {best['omega']:g} | " + " | ".join(_fmt(best, k, 1 if k == 'fd' else 3) for k in cols)
                     + f" | {best['mean']['evals_per_sample']:.0f} | {best['mean']['wall_s']:.1f} |")
    lines.append("")
    grid = [r for r in rows if r["group"] == "grid" or (r["method"] == "diffier-consistency"
                                                      and r["omega"] in report["config"]["grid_omegas"])]
    if any(r["group"] == "grid" for r in grid):
        for w in report["config"]["grid_omegas"]:
            lines += [f"**DiffIER consistency grid at ω = {w:g}** (plain CFG for reference)", "",
                      "| method | " + " | ".join(cols) + " | evals/sample | wall s/run |",
                      "|---|" + "---|" * (len(cols) + 2)]
            ref = [r for r in sweep if r["method"] == "cfg" and r["omega"] == w]
            for r in ref + sorted((g for g in grid if g["omega"] == w), key=lambda g: g["method"]):
                lines.append(f"| {r['method']} | " + " | ".join(_fmt(r, k, 1 if k == 'fd' else 3)
                                                             + _mark(report, r, k, k == "fd") for k in cols)
                             + f" | {r['mean']['evals_per_sample']:.0f} | {r['mean']['wall_s']:.1f} |")
            lines.append("")
    ref = report["reference_real_train"]
    lines.append("Real train-split digits vs the test split (the attainable level): "
                 + ", ".join(f"{k} {ref[k]:.3g}" for k in cols))
    return "\n".join(lines)


def finalize(report: dict, grids: dict, config: RunConfig, out: Path, stem: str) -> dict:
    """Plots, sample grids and the JSON of a complete report."""
    plots = []
    for sampler in config.samplers:
        name = f"{stem}_quality_vs_omega{'' if sampler == 'euler' else '_' + sampler}.png"
        plot_quality(report, out / name, sampler)
        plots.append(name)
    report["plots"] = plots
    report["sample_grids"] = save_grids(grids, config, out)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    log.info("wrote %s (%.0f s of sampling)", out / f"{stem}.json", report["total_wall_s"])
    return report


def _shard_paths(out: Path, stem: str, i: int, n: int) -> tuple[Path, Path]:
    base = f"{stem}.shard{i}of{n}"
    return out / f"{base}.json", out / f"{base}.grids.npz"


def merge_shards(out: Path, stem: str, n: int, config: RunConfig) -> dict:
    """Combine ``--shard i/n`` outputs (in report order), then plot; the shard files are removed."""
    reports, grids = [], {}
    for i in range(n):
        jpath, gpath = _shard_paths(out, stem, i, n)
        reports.append(json.loads(jpath.read_text()))
        with np.load(gpath) as z:
            for key in z.files:
                name, omega, sampler = json.loads(key)
                grids[(name, omega, sampler)] = torch.from_numpy(z[key])
    order = {(m.name, w, g): k for k, (m, w, g) in enumerate(all_jobs(config))}
    results = sorted((r for rep in reports for r in rep["results"]),
                     key=lambda r: (r["sampler"], order[(r["method"], r["omega"], r["group"])]))
    report = {**reports[0], "results": results, "total_wall_s": max(r["total_wall_s"] for r in reports),
              "shards": n, "sampling_cpu_s_all_shards": sum(r["total_wall_s"] for r in reports)}
    report = finalize(report, grids, config, out, stem)
    for i in range(n):
        for path in _shard_paths(out, stem, i, n):
            path.unlink()
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Digits testbed (issue 4, testbed 2)")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: few methods/ω, one seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default docs/results)")
    parser.add_argument("--samplers", default=None, help="comma-separated sampler names (default euler)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds")
    parser.add_argument("--per-class", type=int, default=None, help="samples per digit per run")
    parser.add_argument("--no-grid", action="store_true", help="skip the η × max_iters grid")
    parser.add_argument("--shard", default=None, help="i/n: run every n-th job from i (parallel processes)")
    parser.add_argument("--merge", type=int, default=None, help="n: merge the n shard outputs in --out")
    parser.add_argument("--tables", type=Path, default=None, help="print markdown tables of a report JSON and exit")
    args = parser.parse_args(argv)
    if args.tables:
        sys.stdout.write(tables_markdown(json.loads(args.tables.read_text())) + "\n")
        return {}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = quick_config() if args.quick else RunConfig()
    if args.samplers:
        cfg.samplers = tuple(args.samplers.split(","))
    if args.seeds:
        cfg.seeds = tuple(range(args.seeds))
    if args.per_class:
        cfg.per_class = args.per_class
    if args.no_grid:
        cfg.grid = False
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    stem = "digits_quick" if args.quick else "digits"
    if args.merge:
        return merge_shards(out, stem, args.merge, cfg)
    shard = tuple(int(v) for v in args.shard.split("/")) if args.shard else (0, 1)
    bench = DigitsBench(cfg)
    report = bench.run(shard)
    report["quick"] = bool(args.quick)
    if shard[1] == 1:
        return finalize(report, bench.grids, cfg, out, stem)
    jpath, gpath = _shard_paths(out, stem, *shard)
    jpath.write_text(json.dumps(report, indent=1))
    np.savez(gpath, **{json.dumps([n, w, s]): img.numpy() for (n, w, s), img in bench.grids.items()})
    log.info("wrote shard %s", jpath)
    return report


if __name__ == "__main__":
    main()
