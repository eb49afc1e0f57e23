"""Testbed 3: guidance methods on the embedded super-resolution demo models (the paper's Table 2 analog).

    .venv/bin/python -m benchmarks.sr                           # full run -> docs/results/sr.json + PNGs
    .venv/bin/python -m benchmarks.sr --dataset digits           # one dataset (writes sr_digits.json)
    .venv/bin/python -m benchmarks.sr --merge                    # sr_digits.json + sr_photos.json -> sr.json + PNGs
    .venv/bin/python -m benchmarks.sr --quick --out /tmp/sr      # CI smoke run (about a minute)

Models (``models/``, trained by ``training/train_sr.py``, loaded by the pack's ``DiffIERDemoModelLoader``
node): ``sr_digits_x4`` (MNIST 7×7 → 28×28) and ``sr_photos_x2`` (16×16 → 32×32 patches of grey
``skimage.data`` photos; whole photos held out for testing). LR inputs: Gaussian blur, then area
downsampling (``demo_models.sr_degrade``). Conditioning comes from the pack's ``DiffIERDemoSRCondition``
node path (``demo_models.sr_conditioning``: LR bicubic-upsampled as the positive's concat image,
zeros as the negative's). Every method runs through ``benchmarks.harness`` (ComfyUI's KSampler node,
methods as real MODEL-patch nodes). Seed ``s`` uses test images ``[s·N, (s+1)·N)`` and noise seed ``s``,
so the 95 % t-intervals over seeds cover both data and sampling noise; every method sees the same
images and noise at a given seed, so ``delta_vs_cfg`` (method − plain CFG at the same ω and seed) is a
paired difference.

Metrics: ``psnr`` and ``ssim`` of the SR output against HR in [0, 1] (``torchmetrics``), per image then
averaged; for digits also ``accuracy`` (the digits classifier of ``benchmarks/assets`` recognises the HR
digit's label) and ``fd`` (Fréchet distance in that classifier's 64-d features between SR outputs and the
HR test digits of the same run; ``benchmarks.digits.frechet_distance``). Baselines: bicubic upsampling of
the LR input, and the HR images themselves (accuracy ceiling).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.digits import _file_metadata, _load_digits_data, frechet_distance
from benchmarks.harness import DIFFIER_DEFAULTS, Harness, Method
from benchmarks.metrics import mean_ci

log = logging.getLogger("benchmarks.sr")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "results"
SCHEMA_VERSION = 1
MODELS = {"digits": "sr_digits_x4.safetensors", "photos": "sr_photos_x2.safetensors"}
OMEGAS = (1.0, 1.5, 2.0, 3.0, 5.0, 7.5)
METRICS = {"digits": ("psnr", "ssim", "accuracy", "fd", "evals_per_sample", "wall_s"),
           "photos": ("psnr", "ssim", "evals_per_sample", "wall_s")}
GRID_OMEGAS = (3.0, 7.5)


def methods() -> list[Method]:
    """Plain CFG, DiffIER (consistency at the node defaults and stronger, paper mean), ComfyUI's CFG fixes."""
    return [
        Method("cfg"),
        Method("diffier-consistency", (("DiffIERGuider", dict(DIFFIER_DEFAULTS)),)),
        Method("diffier-consistency-eta0.2", (("DiffIERGuider", {**DIFFIER_DEFAULTS, "eta": 0.2}),)),
        Method("diffier-consistency-cond", (("DiffIERGuider", {**DIFFIER_DEFAULTS, "inner_guidance": "cond"}),)),
        Method("diffier-paper-mean", (("DiffIERGuider", {**DIFFIER_DEFAULTS, "mode": "paper"}),)),
        Method("rescalecfg", (("RescaleCFG", {"multiplier": 0.7}),)),
        Method("apg", (("APG", {"eta": 1.0, "norm_threshold": 5.0, "momentum": 0.0}),)),
        Method("cfgzerostar", (("CFGZeroStar", {}),)),
    ]


def control_methods() -> list[Method]:
    """Equal-cost controls (run on request with ``--methods``): plain CFG with the model evaluations per sample of
    DiffIER consistency at max_iters = 4 with 20 steps: 100 steps = 200 evaluations (``inner_guidance="cfg"``: 2
    per inner iteration), 60 steps = 120 evaluations (``inner_guidance="cond"``: 1 per inner iteration)."""
    return [Method("cfg-100steps"), Method("cfg-60steps")]


STEPS_OVERRIDE = {"cfg-100steps": 100, "cfg-60steps": 60}


@dataclasses.dataclass
class RunConfig:
    datasets: tuple[str, ...] = ("digits", "photos")
    omegas: tuple[float, ...] = OMEGAS
    seeds: tuple[int, ...] = (0, 1, 2)
    images_per_run: int = 24
    steps: int = 20
    sampler: str = "euler"
    scheduler: str = "normal"
    methods: tuple[str, ...] = ()      # empty: all
    grid_omegas: tuple[float, ...] = GRID_OMEGAS
    grid_images: int = 8


def quick_config() -> RunConfig:
    return RunConfig(omegas=(1.0, 3.0), seeds=(0,), images_per_run=6, steps=8, grid_omegas=(3.0,), grid_images=4)


# ----------------------------------------------------------------------------------------------
# data and metrics


def _sr_data():
    import importlib.util
    import sys

    name = "_diffier_sr_data"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "training" / "sr_data.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_set(dataset: str, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(hr [n, 1, H, H] in [0, 1], labels or None)``: held-out data in a fixed, seeded order."""
    data = _sr_data()
    if dataset == "digits":
        split = data.digits_split()
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(split["x_test"].shape[0], generator=g)[:n]
        return split["x_test"][idx].unsqueeze(1), split["y_test"][idx]
    hr, _names = data.test_photo_patches(n)
    return hr, None


def image_quality(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM of ``pred`` vs ``target`` (``[B, 1, H, W]`` in [0, 1], data range 1)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    p, t = pred.double().clamp(0, 1), target.double()
    psnr = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(p, t, data_range=1.0, reduction="none")
    return {"psnr": psnr.float(), "ssim": ssim.float()}


class DigitsScorer:
    """The digits classifier: accuracy against the HR labels and FD between SR and HR features."""

    def __init__(self) -> None:
        self.classifier = _load_digits_data().load_classifier()

    def score(self, images: torch.Tensor, hr: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        feats, probs = self.classifier.embed(images[:, 0])
        hr_feats, _ = self.classifier.embed(hr[:, 0])
        return {"accuracy": float((probs.argmax(-1) == labels).float().mean()),
                "fd": frechet_distance(feats.numpy().astype(np.float64), hr_feats.numpy().astype(np.float64))}


# ----------------------------------------------------------------------------------------------
# the run


class SRBench:
    def __init__(self, config: RunConfig, harness: Harness | None = None) -> None:
        self.config = config
        self.h = harness or Harness()
        self.dm = self.h.pack.nodes.demo_models
        self.digits_scorer = DigitsScorer()

    def _runs(self, dataset: str):
        """Per seed: ``(hr, labels, condition image)``."""
        cfg = self.config
        n = cfg.images_per_run
        hr_all, labels_all = test_set(dataset, n * (max(cfg.seeds) + 1))
        (model,) = self.h.run_node("DiffIERDemoModelLoader", model_name=MODELS[dataset])
        config = model.model.diffier_demo_config
        for seed in cfg.seeds:
            sl = slice(seed * n, (seed + 1) * n)
            hr = hr_all[sl]
            lr = self.dm.sr_degrade(hr, config["scale"], config["blur_sigma"])
            yield seed, model, config, hr, (None if labels_all is None else labels_all[sl]), lr

    def _metrics(self, dataset: str, out: torch.Tensor, hr: torch.Tensor, labels) -> dict[str, float]:
        q = {k: float(v.mean()) for k, v in image_quality(out, hr).items()}
        if dataset == "digits":
            q.update(self.digits_scorer.score(out, hr, labels))
        return q

    def run_dataset(self, dataset: str) -> dict[str, Any]:
        cfg = self.config
        ms = ([m for m in methods() + control_methods() if m.name in cfg.methods] if cfg.methods else methods())
        raw: dict[tuple[str, float], list[dict[str, float]]] = {}
        baselines: dict[str, list[dict[str, float]]] = {"bicubic": [], "hr": []}
        grid: dict[str, torch.Tensor] = {}
        model_info = None
        for seed, model, config, hr, labels, lr in self._runs(dataset):
            model_info = model_info or _file_metadata(self.dm.MODELS_DIR / MODELS[dataset], "diffier_demo.training")
            bicubic = ((self.dm.sr_upsample(lr * 2 - 1, config["hr_size"]) + 1) / 2).clamp(0, 1)
            baselines["bicubic"].append({"seed": seed, **self._metrics(dataset, bicubic, hr, labels)})
            if dataset == "digits":
                baselines["hr"].append({"seed": seed, **self.digits_scorer.score(hr, hr, labels)})
            if seed == 0:
                k = cfg.grid_images
                grid["LR"] = torch.nn.functional.interpolate(lr[:k], size=hr.shape[-2:], mode="nearest")
                grid["bicubic"], grid["HR"] = bicubic[:k], hr[:k]
            positive, negative = self.dm.sr_conditioning(self.dm.sr_condition_image(lr, config))
            for method in ms:
                for omega in cfg.omegas:
                    latent = self.dm.sr_empty_latent(hr.shape[0], config)
                    steps = STEPS_OVERRIDE.get(method.name, cfg.steps)
                    res = self.h.sample(model, method, positive=positive, negative=negative, latent=latent,
                                        seed=seed, steps=steps, cfg=omega, sampler=cfg.sampler,
                                        scheduler=cfg.scheduler)
                    out = ((res.samples.float() + 1) / 2).clamp(0, 1)
                    m = self._metrics(dataset, out, hr, labels)
                    m.update(seed=seed, evals_per_sample=res.evals_per_sample, wall_s=res.wall_s,
                             nonfinite_samples=int((~torch.isfinite(res.samples)).any(dim=(1, 2, 3)).sum()))
                    raw.setdefault((method.name, omega), []).append(m)
                    if seed == 0 and omega in cfg.grid_omegas:
                        grid[f"{method.name} ω={omega:g}"] = out[:cfg.grid_images]
                    log.info("%s %s ω=%g seed %d: PSNR %.2f SSIM %.3f (%.1f s)", dataset, method.name, omega, seed,
                             m["psnr"], m["ssim"], res.wall_s)
        rep = summarize(dataset, raw, baselines)
        rep.update(model=model_info, grid=grid)
        return rep

    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        report = {"schema_version": SCHEMA_VERSION, "config": dataclasses.asdict(self.config),
                  "methods": {m.name: [list(p) for p in m.patches] for m in methods()
                              if not self.config.methods or m.name in self.config.methods},
                  "datasets": {}}
        for ds in self.config.datasets:
            report["datasets"][ds] = self.run_dataset(ds)
        report["wall_s"] = time.perf_counter() - t0
        report["torch_threads"] = torch.get_num_threads()
        return report


def summarize(dataset: str, raw: dict, baselines: dict) -> dict[str, Any]:
    """Means, 95% t-intervals over seeds and paired deltas vs plain CFG from per-seed metrics.
    ``raw``: (method, ω) → per-seed dicts (with ``seed``); ``baselines``: name → per-seed dicts."""
    keys = list(METRICS[dataset])
    quality = [k for k in ("psnr", "ssim", "accuracy", "fd") if k in keys]
    results = []
    for (name, omega), runs in raw.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        entry = {"method": name, "omega": omega, "n_seeds": len(runs), "per_seed": runs,
                 "mean": {k: mean_ci([r[k] for r in runs])[0] for k in keys},
                 "ci95": {k: mean_ci([r[k] for r in runs])[1] for k in keys},
                 "nonfinite_samples": sum(r["nonfinite_samples"] for r in runs)}
        base = {r["seed"]: r for r in raw.get(("cfg", omega), [])}
        if base and name != "cfg":
            entry["delta_vs_cfg"] = {k: dict(zip(("mean", "ci95"), mean_ci(
                [r[k] - base[r["seed"]][k] for r in runs]), strict=True)) for k in quality}
        results.append(entry)
    base_summary = {name: {k: mean_ci([r[k] for r in runs])[0] for k in runs[0] if k != "seed"}
                    for name, runs in baselines.items() if runs}
    return {"results": results, "baselines": base_summary, "baselines_per_seed": baselines}


# ----------------------------------------------------------------------------------------------
# outputs


def _method_style(name: str) -> dict[str, Any]:
    return {"ls": "--" if name.startswith("diffier") else "-", "lw": 2.0 if name == "cfg" else 1.2}


def plot_quality(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(report["datasets"])
    panels = {"digits": [("psnr", "PSNR (dB) ↑"), ("ssim", "SSIM ↑"), ("accuracy", "classifier accuracy ↑"),
                         ("fd", "FD (classifier features) ↓")],
              "photos": [("psnr", "PSNR (dB) ↑"), ("ssim", "SSIM ↑")]}
    fig, axes = plt.subplots(len(datasets), 4, figsize=(18, 4.3 * len(datasets)), squeeze=False)
    omegas = report["config"]["omegas"]
    for row, ds in zip(axes, datasets, strict=True):
        rep = report["datasets"][ds]
        present = {r["method"] for r in rep["results"]}
        names = [m.name for m in methods() + control_methods() if m.name in present]
        colors = {m.name: f"C{i}" for i, m in enumerate(methods() + control_methods())}
        for i, ax in enumerate(row):
            if i >= len(panels[ds]):
                ax.axis("off")
                continue
            key, title = panels[ds][i]
            for name in names:
                rows = sorted((r for r in rep["results"] if r["method"] == name), key=lambda r: r["omega"])
                ax.errorbar([r["omega"] for r in rows], [r["mean"][key] for r in rows],
                            yerr=[r["ci95"][key] for r in rows], label=name, marker="o", ms=3, capsize=2,
                            color=colors[name], **_method_style(name))
            bic = rep["baselines"].get("bicubic", {}).get(key)
            if bic is not None:
                ax.axhline(bic, color="gray", lw=0.9, ls=":", label="bicubic")
            hr = rep["baselines"].get("hr", {}).get(key)
            if hr is not None and np.isfinite(hr) and key in ("accuracy",):
                ax.axhline(hr, color="k", lw=0.9, ls=":", label="HR (ceiling)")
            ax.set_xscale("log")
            ax.set_xticks(omegas)
            ax.set_xticklabels([f"{w:g}" for w in omegas])
            ax.minorticks_off()
            if key == "fd":
                ax.set_yscale("log")
            ax.set_xlabel("guidance scale ω")
            ax.set_title(f"{ds}: {title}")
        row[0].legend(fontsize=7)
    cfg = report["config"]
    fig.suptitle(f"SR testbed: {cfg['sampler']}, {cfg['steps']} steps, {cfg['images_per_run']} images × "
                 f"{len(cfg['seeds'])} seeds per point (mean ± 95% CI over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_grid(report: dict, grids: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """Rows: LR (nearest), bicubic, HR, each method at the grid ω; one panel per dataset. ``grids``:
    dataset → row label → ``[k, 1, H, W]`` in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [ds for ds in grids if grids[ds]]
    rows_per = [len(grids[ds]) for ds in datasets]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 0.42 * max(rows_per) + 1),
                             squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        labels, strips = [], []
        for label, imgs in grids[ds].items():
            t = torch.as_tensor(np.asarray(imgs, dtype=np.float32))[:, 0]     # [k, H, W]
            t = torch.nn.functional.pad(t, (1, 1, 1, 1), value=0.5)
            strips.append(torch.cat(list(t), dim=1))
            labels.append(label)
        img = torch.cat(strips, dim=0).numpy()
        h = img.shape[0] / len(strips)
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks([h * (i + 0.5) for i in range(len(labels))])
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xticks([])
        ax.set_title(f"{ds} (seed {report['config']['seeds'][0]})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tables_markdown(report: dict) -> str:
    """Markdown tables: per dataset, each metric as method × ω (mean ± 95% CI) and paired Δ vs CFG."""
    out = []
    omegas = report["config"]["omegas"]
    for ds, rep in report["datasets"].items():
        present = {r["method"] for r in rep["results"]}
        names = [m.name for m in methods() + control_methods() if m.name in present]
        by = {(r["method"], r["omega"]): r for r in rep["results"]}
        bic = rep["baselines"].get("bicubic", {})
        for key in [k for k in METRICS[ds] if k not in ("wall_s",)]:
            digits = 3 if key in ("ssim", "accuracy") else 2
            ref = f" (bicubic: {bic[key]:.{digits}f})" if key in bic else ""
            out.append(f"\n**{ds}: {key}**{ref}\n")
            out.append("| method | " + " | ".join(f"ω={w:g}" for w in omegas) + " |")
            out.append("|---|" + "---|" * len(omegas))
            for name in names:
                cells = []
                for w in omegas:
                    r = by.get((name, w))
                    cells.append("" if r is None else f"{r['mean'][key]:.{digits}f} ± {r['ci95'][key]:.{digits}f}")
                out.append(f"| {name} | " + " | ".join(cells) + " |")
            if key in ("psnr", "ssim"):
                out.append(f"\n*{ds}: Δ{key} vs plain CFG (paired, same images and noise)*\n")
                out.append("| method | " + " | ".join(f"ω={w:g}" for w in omegas) + " |")
                out.append("|---|" + "---|" * len(omegas))
                for name in names:
                    if name == "cfg":
                        continue
                    cells = []
                    for w in omegas:
                        d = by.get((name, w), {}).get("delta_vs_cfg", {}).get(key)
                        cells.append("" if d is None else f"{d['mean']:+.{digits + 1}f} ± {d['ci95']:.{digits + 1}f}")
                    out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _grid_path(out: Path, ds: str) -> Path:
    return out / f"sr_grid_{ds}.npz"


def finalize(report: dict, out: Path, stem: str = "sr") -> dict:
    """Write ``<stem>.json`` (grids go to ``sr_grid_<dataset>.npz`` as uint8, not into the JSON) and, for the
    merged report, the plots and tables."""
    out.mkdir(parents=True, exist_ok=True)
    grids = {}
    for ds, rep in report["datasets"].items():
        grid = rep.pop("grid", None)
        if grid:
            np.savez_compressed(_grid_path(out, ds), **{k: (v.numpy() * 255 + 0.5).astype(np.uint8)
                                                         for k, v in grid.items()})
        path = _grid_path(out, ds)
        if path.is_file():
            with np.load(path) as z:
                grids[ds] = {k: z[k].astype(np.float32) / 255.0 for k in z.files}
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, allow_nan=True))
    if stem == "sr":
        plot_quality(report, out / "sr_quality_vs_omega.png")
        save_grid(report, grids, out / "sr_grid.png")
        (out / "sr_tables.md").write_text(tables_markdown(report))
    log.info("wrote %s", out / f"{stem}.json")
    return report


def merge(out: Path) -> dict:
    """Merge ``sr_<dataset>*.json`` parts (one per dataset, or one per dataset and seed subset) into sr.json."""
    parts = [json.loads(p.read_text()) for ds in MODELS for p in sorted(out.glob(f"sr_{ds}*.json"))]
    report = dict(parts[0])
    report["datasets"] = {}
    seeds: set[int] = set()
    for ds in MODELS:
        mine = [p for p in parts if ds in p["datasets"]]
        if not mine:
            continue
        raw: dict[tuple[str, float], list] = {}
        baselines: dict[str, list] = {}
        for p in mine:
            rep = p["datasets"][ds]
            for r in rep["results"]:
                runs = [{"seed": seed, **run} for seed, run in zip(p["config"]["seeds"], r["per_seed"], strict=True)]
                have = {x["seed"] for x in raw.get((r["method"], r["omega"]), [])}
                raw.setdefault((r["method"], r["omega"]), []).extend(x for x in runs if x["seed"] not in have)
            if "baselines_per_seed" in rep:
                for name, runs in rep["baselines_per_seed"].items():
                    baselines.setdefault(name, []).extend(runs)
            else:   # parts written before per-seed baselines were kept: their means count once
                for name, means in rep["baselines"].items():
                    baselines.setdefault(name, []).append({"seed": -1, **means})
            seeds |= set(p["config"]["seeds"])
        for name, runs in baselines.items():   # once per seed; a legacy seed -1 mean only when no seed was kept
            by_seed = {x["seed"]: x for x in reversed(runs)}
            if len(by_seed) > 1:
                by_seed.pop(-1, None)
            baselines[name] = [by_seed[k] for k in sorted(by_seed)]
        report["datasets"][ds] = {"model": mine[0]["datasets"][ds]["model"], **summarize(ds, raw, baselines)}
    report["config"] = {**parts[0]["config"], "datasets": list(report["datasets"]), "seeds": sorted(seeds)}
    report["wall_s"] = sum(p["wall_s"] for p in parts)
    return finalize(report, out)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--dataset", choices=sorted(MODELS), help="run one dataset only (writes sr_<dataset>.json)")
    parser.add_argument("--merge", action="store_true", help="merge sr_digits.json and sr_photos.json into sr.json")
    parser.add_argument("--seeds", type=lambda v: tuple(int(x) for x in v.split(",")),
                        help="comma-separated seed subset (with --dataset; writes sr_<dataset>_s<seeds>.json)")
    parser.add_argument("--methods", type=lambda v: tuple(v.split(",")), help="comma-separated method names")
    parser.add_argument("--omegas", type=lambda v: tuple(float(x) for x in v.split(",")), help="comma-separated ω")
    parser.add_argument("--tag", default="", help="suffix of the part file name (sr_<dataset><tag>.json)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.merge:
        return merge(args.out)
    config = quick_config() if args.quick else RunConfig()
    stem = "sr"
    if args.dataset:
        config = dataclasses.replace(config, datasets=(args.dataset,))
        stem = f"sr_{args.dataset}"
    if args.seeds:
        config = dataclasses.replace(config, seeds=args.seeds)
        stem += "_s" + "-".join(str(v) for v in args.seeds)
    if args.methods:
        config = dataclasses.replace(config, methods=args.methods)
    if args.omegas:
        config = dataclasses.replace(config, omegas=args.omegas)
    stem += args.tag
    bench = SRBench(config)
    torch.set_num_threads(args.threads)
    report = bench.run()
    report["quick"] = bool(args.quick)
    return finalize(report, args.out, stem=stem)


if __name__ == "__main__":
    main()
