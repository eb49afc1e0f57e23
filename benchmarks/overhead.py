"""What DiffIER costs beyond the model evaluations it needs, measured side by side.

    python -m benchmarks.overhead            # full run (SD 2.1 768² latent, full-size UNet), ~15 min on 2 CPU cores
    python -m benchmarks.overhead --quick    # small sizes for CI, ~1 min

Writes ``docs/results/overhead.json`` and ``docs/results/overhead.png`` (or into ``--out``).

* kernel: DiffIER's own work per step (everything except model evaluations) on a 4×96×96 latent,
  batch 1 and 4, float32 and float16: ``paper`` at its iteration cap and the non-model part of
  ``consistency`` (its evaluator returns a precomputed tensor), against one batched cond+uncond
  evaluation of the full-size SD 2.1 UNet (random weights, ComfyUI's own classes) in the same run;
* host-device synchronisations per step (``benchmarks.instruments.SyncCounter``);
* peak memory DiffIER adds, in latent-sized buffers (``benchmarks.instruments.PeakMemory``);
* end to end: KSamplerDiffIER against KSampler on the same graph and seed with a small SD 2.1
  architecture model at 256², alternating A/B runs, medians, and model evaluations per sample.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import Harness
from benchmarks.instruments import ModelRows, PeakMemory, SyncCounter
from benchmarks.tuning import OVERHEAD_DIFFIER
from scripts.sd21_unet import SD21_UNET

log = logging.getLogger("DiffIER.bench.overhead")
RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def build_sd21(model_channels: int = 320, seed: int = 0):
    """An SD 2.1-architecture ModelPatcher (v-prediction) from ComfyUI's classes, seeded random weights."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm
    from comfy.model_base import ModelType

    class SD21(sm.SD20):
        unet_config = {**SD21_UNET, "model_channels": model_channels}
        unet_extra_config = {"num_heads": -1, "num_head_channels": 64 if model_channels >= 320 else 16}

        def model_type(self, state_dict, prefix=""):
            return ModelType.V_PREDICTION

    config = SD21(SD21.unet_config)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, "")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5)
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int, device: torch.device, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def kernel_rows(core, shape_hw: tuple[int, int], batches: list[int], dtypes: list[torch.dtype], max_iters: int,
                repeats: int, device: torch.device) -> list[dict[str, Any]]:
    """DiffIER's own per-step cost, syncs and memory, for each mode, batch and dtype."""
    rows = []
    for batch in batches:
        for dtype in dtypes:
            shape = (batch, 4, *shape_hw)
            g = torch.Generator(device=device).manual_seed(0)
            x = torch.randn(shape, generator=g, device=device).to(dtype)
            d = torch.randn(shape, generator=g, device=device).to(dtype)
            target = torch.randn(shape, generator=g, device=device).to(dtype)
            sigma = torch.full((batch,), 0.5, device=device)
            latent_bytes = x.numel() * x.element_size()
            for mode in ("paper", "consistency"):
                config = core.DiffIERSettings(mode=mode, threshold=0.0, max_iters=max_iters)
                noise = core.PerSampleNoise(list(range(batch)))

                def step(config=config, noise=noise, x=x, d=d, sigma=sigma, target=target):
                    with torch.inference_mode():
                        return core.diffier_step(x, d, *core.convention_scales(sigma, "eps"), config, noise,
                                                 evaluate=lambda xp: target)

                seconds = timed(step, repeats, device)
                with SyncCounter() as syncs:
                    step()
                with PeakMemory() as mem:
                    out, info = step()
                rows.append({
                    "mode": mode, "batch": batch, "dtype": str(dtype).replace("torch.", ""), "max_iters": max_iters,
                    "iterations_run": int(info.iterations.max()), "seconds": seconds,
                    "host_syncs_per_step": syncs.count,
                    "peak_bytes": mem.peak_bytes,
                    "peak_latent_buffers": mem.peak_bytes / latent_bytes,
                    "peak_float32_latent_buffers": mem.peak_bytes / (x.numel() * 4),
                    "keeps_autograd_graph": bool(out.requires_grad or out.grad_fn is not None),
                })
                log.info("kernel %s", rows[-1])
    return rows


def unet_eval_seconds(patcher, shape_hw: tuple[int, int], batch: int, repeats: int,
                      device: torch.device) -> float:
    """One batched cond+uncond evaluation (2·batch rows) of the model, median seconds."""
    model = patcher.model.to(device)
    x = torch.randn(2 * batch, 4, *shape_hw, device=device)
    sigma = torch.full((2 * batch,), 1.0, device=device)
    context = torch.randn(2 * batch, 77, 1024, device=device)

    def evaluate():
        with torch.inference_mode():
            model.apply_model(x, sigma, c_crossattn=context)

    return timed(evaluate, repeats, device, warmup=0 if device.type == "cpu" else 1)


def end_to_end(h: Harness, patcher, size: int, steps: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    """KSampler vs KSamplerDiffIER (paper, consistency) on the same graph and seed, alternating runs.

    An ``APPLY_MODEL`` wrapper times every model call, so each run splits into model time and the
    rest; DiffIER's own overhead is its non-model time beyond plain KSampler's, relative to its
    model time (robust to a busy machine, unlike a per-evaluation estimate).
    """
    g = torch.Generator().manual_seed(1)
    positive = [[torch.randn(1, 77, 1024, generator=g), {}]]
    negative = [[torch.randn(1, 77, 1024, generator=g), {}]]
    latent = {"samples": torch.zeros(1, 4, size // 8, size // 8)}
    meter = ModelRows()
    model = meter.on(patcher)
    common = {"model": model, "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
              "scheduler": "normal", "positive": positive, "negative": negative, "latent_image": latent,
              "denoise": 1.0}
    variants = {
        "ksampler": ("KSampler", {}),
        "diffier-paper": ("KSamplerDiffIER", {**OVERHEAD_DIFFIER, "mode": "paper"}),
        "diffier-consistency": ("KSamplerDiffIER", dict(OVERHEAD_DIFFIER)),
    }
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    info: dict[str, Any] = {}
    for rep in range(repeats + 1):                     # rep 0 warms up (model load, caches); A/B/C, A/B/C, ...
        for name, (node, extra) in variants.items():
            meter.reset()
            t0 = time.perf_counter()
            out = h.run_node(node, **common, **extra)
            wall = time.perf_counter() - t0
            if rep == 0:
                continue
            runs[name].append({"wall": wall, "model": meter.seconds, "rows": meter.rows})
            if len(out) > 1:
                summary = json.loads(out[1])
                info[name] = {"mean_iterations_per_step": summary["mean_iterations"],
                              "extra_model_evals": summary["extra_model_evals"]}

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    base_wall = med("ksampler", "wall")
    base_rest = statistics.median(r["wall"] - r["model"] for r in runs["ksampler"])
    result = {"size": size, "steps": steps, "repeats": repeats, "methods": {}}
    for name in variants:
        rest = statistics.median(r["wall"] - r["model"] for r in runs[name])
        result["methods"][name] = {
            "median_seconds": med(name, "wall"), "seconds": [r["wall"] for r in runs[name]],
            "ratio_to_ksampler": med(name, "wall") / base_wall,
            "model_seconds": med(name, "model"), "non_model_seconds": rest,
            "model_rows_per_sample": runs[name][0]["rows"],
            "diffier_non_model_overhead_fraction": (rest - base_rest) / med(name, "model"),
            # the wall-time ratio with this method's model time replaced by KSampler's: what DiffIER's
            # own work costs, free of the run-to-run noise in model time on a shared machine
            "ratio_at_equal_model_time": (base_wall + rest - base_rest) / base_wall
            if runs[name][0]["rows"] == runs["ksampler"][0]["rows"] else None,
            **info.get(name, {}),
        }
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels, ratios = [], []
    for row in result["kernel"]:
        labels.append(f"{row['mode']}\nB={row['batch']} {row['dtype']}")
        ratios.append(100 * row["ratio_to_unet_eval"])
    ax1.bar(range(len(ratios)), ratios, color=["#4c72b0" if "paper" in lbl else "#dd8452" for lbl in labels])
    ax1.axhline(1.0, color="k", ls="--", lw=1, label="goal: 1 %")
    ax1.set_xticks(range(len(labels)), labels, fontsize=7)
    ax1.set_ylabel("DiffIER's own work per step, % of one cond+uncond UNet eval")
    ax1.set_title(f"Correction kernel vs SD 2.1 UNet ({result['config']['kernel_latent']})")
    ax1.legend()
    e2e = result["end_to_end"]["methods"]
    names = list(e2e)
    ax2.bar(names, [e2e[n]["median_seconds"] for n in names], color=["#55a868", "#4c72b0", "#dd8452"])
    for i, n in enumerate(names):
        ax2.text(i, e2e[n]["median_seconds"], f"×{e2e[n]['ratio_to_ksampler']:.3f}\n"
                 f"{e2e[n]['model_rows_per_sample']:.0f} evals", ha="center", va="bottom", fontsize=8)
    ax2.set_ylabel("median wall time (s)")
    ax2.set_title(f"End to end, {result['end_to_end']['size']}² × {result['end_to_end']['steps']} steps")
    fig.suptitle(f"DiffIER overhead on {result['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for CI (about a minute)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for overhead.json/.png")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    h = Harness()
    torch.set_num_threads(args.threads)
    core = h.pack.diffier_core
    import comfy.model_management as mm

    device = mm.get_torch_device()
    if args.quick:
        hw, batches, dtypes, repeats, unet_channels = (32, 32), [1], [torch.float32], 3, 64
        e2e = {"size": 64, "steps": 2, "repeats": 1, "channels": 32}
    else:
        hw, batches, dtypes, repeats, unet_channels = (96, 96), [1, 4], [torch.float32, torch.float16], 5, 320
        e2e = {"size": 256, "steps": 10, "repeats": 3, "channels": 64}
    max_iters = OVERHEAD_DIFFIER["max_iters"]

    kernel = kernel_rows(core, hw, batches, dtypes, max_iters, repeats, device)
    unet = build_sd21(unet_channels)
    unet_seconds = {b: unet_eval_seconds(unet, hw, b, 2, device) for b in batches}
    for row in kernel:
        row["unet_eval_seconds"] = unet_seconds[row["batch"]]
        row["ratio_to_unet_eval"] = row["seconds"] / unet_seconds[row["batch"]]
    del unet
    small = build_sd21(e2e["channels"])
    end = end_to_end(h, small, e2e["size"], e2e["steps"], e2e["repeats"])
    result = {
        "schema": 1,
        "device": str(device) if device.type != "cpu" else f"cpu ({platform.processor() or platform.machine()}, "
                                                           f"{torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "quick": args.quick,
        "config": {"kernel_latent": f"4x{hw[0]}x{hw[1]}", "unet_model_channels": unet_channels,
                   "max_iters": max_iters, "end_to_end_model_channels": e2e["channels"]},
        "kernel": kernel,
        "end_to_end": end,
        "goals": {
            "paper_kernel_ratio_max": max(r["ratio_to_unet_eval"] for r in kernel if r["mode"] == "paper"),
            "consistency_kernel_ratio_per_eval_max": max(r["ratio_to_unet_eval"] / r["iterations_run"]
                                                         for r in kernel if r["mode"] == "consistency"),
            "paper_end_to_end_ratio": end["methods"]["diffier-paper"]["ratio_to_ksampler"],
            "paper_end_to_end_ratio_at_equal_model_time": end["methods"]["diffier-paper"]["ratio_at_equal_model_time"],
            "consistency_non_model_overhead": end["methods"]["diffier-consistency"][
                "diffier_non_model_overhead_fraction"],
            "max_host_syncs_per_step": {m: max(r["host_syncs_per_step"] for r in kernel if r["mode"] == m)
                                        for m in ("paper", "consistency")},
            "max_peak_float32_latent_buffers": max(r["peak_float32_latent_buffers"] for r in kernel),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overhead.json").write_text(json.dumps(result, indent=2))
    plot(result, args.out / "overhead.png")
    log.info("goals: %s", json.dumps(result["goals"], indent=2))
    log.info("wrote %s", args.out / "overhead.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
