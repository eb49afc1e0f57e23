"""What a sweep writes from its job records: ``sweep.json`` (per-image and per-cell metrics, per-server
timing), the image grids (rows ω, columns methods; ``grid.png`` is the first prompt and seed, ``grids/``
has one per prompt and seed) and ``metrics.png`` (each metric vs ω, one line per method)."""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import metrics
from .runner import Job, JobStore

log = logging.getLogger("DiffIER.sweep")

PSNR_CAP = 100.0  # identical images (PSNR = inf) are written as 100 dB: JSON has no infinity
REF_KEY = re.compile(r"^(p\d+_s(?:\d+|x)_\d+)")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
PLOTTED = (("clipped_fraction", "clipped-pixel fraction"), ("mean_saturation", "mean saturation"),
           ("diversity", "diversity across seeds (RMS)"), ("exec_s_per_image", "seconds per image (server)"),
           ("psnr", "PSNR vs reference (dB)"), ("ssim", "SSIM vs reference"),
           ("fd", "pixel-statistics FD vs reference"))
NOTES = {
    "clipped_fraction": "share of channel values at 0 or 255 (blown-out or crushed), per image",
    "mean_saturation": "mean HSV saturation (max-min)/max over pixels, per image",
    "diversity": "mean pairwise RMS distance in [0, 1] units between the 64x64 area-downsampled images of one "
                 "prompt over seeds (and batch items); per cell: per prompt, and their mean",
    "wall_s_per_image": "client wall time from POST /prompt to the last image downloaded, divided by the job's "
                        "images (includes queue wait)",
    "exec_s_per_image": "the server's own execution_start to execution_success time, divided by the job's images",
    "psnr": "PSNR in dB against the reference image with the same key (p<prompt>_s<seed>_<batch index>); "
            "identical images are written as 100",
    "ssim": "SSIM (Gaussian window 11, sigma 1.5, per channel) against the same reference image",
    "fd": f"Frechet distance of 4x4 RGB thumbnails (48 pixel statistics, NOT Inception FID) between a cell's images "
          f"and all reference images; only with >= {metrics.FD_MIN_IMAGES} images on each side",
}


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_reference(folder: Path) -> dict[str, np.ndarray]:
    """Reference images of ``folder``: ``{key: image}`` for names starting ``p<prompt>_s<seed>_<k>``, and
    every image under ``"#<name>"`` otherwise (those count for FD only)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--reference {folder}: not a folder")
    refs = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            m = REF_KEY.match(path.stem)
            refs[m.group(1) if m else f"#{path.relative_to(folder).as_posix()}"] = load_rgb(path)
    if not refs:
        raise FileNotFoundError(f"--reference {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    return refs


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def collect(jobs: list[Job], store: JobStore, reference: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """The ``sweep.json`` content for the current set of jobs (records of earlier runs included)."""
    images, failed, cells = [], [], defaultdict(list)
    arrays: dict[int, np.ndarray] = {}
    for job in jobs:
        rec = store.load(job.id)
        if rec is None or rec.get("status") != "done":
            failed.append({"job": job.id, "method": job.method, "omega": job.omega, "key": job.key(),
                           "error": (rec or {}).get("error", "not run")})
            continue
        for k, img in enumerate(rec["images"]):
            entry = {"job": job.id, "method": job.method, "omega": job.omega, "key": f"{job.key()}_{k}",
                     "prompt_index": job.prompt_index, "seed": job.seed, "path": img["path"],
                     "server": rec["server"], "clipped_fraction": img["clipped_fraction"],
                     "mean_saturation": img["mean_saturation"], "wall_s_per_image": rec["wall_s_per_image"],
                     "exec_s_per_image": rec["exec_s_per_image"]}
            arr = load_rgb(store.root / img["path"])
            if reference is not None and entry["key"] in reference:
                try:
                    entry["psnr"] = min(metrics.psnr(arr, reference[entry["key"]]), PSNR_CAP)
                    entry["ssim"] = metrics.ssim(arr, reference[entry["key"]])
                except ValueError as exc:
                    log.warning("reference %s: %s", entry["key"], exc)
            arrays[len(images)] = arr
            images.append(entry)
            cells[(job.method, job.omega)].append(len(images) - 1)
    ref_features = None
    if reference is not None and len(reference) >= metrics.FD_MIN_IMAGES:
        ref_features = np.stack([metrics.features(im) for im in reference.values()])
    cell_rows = []
    for (method, omega), idx in cells.items():
        by_prompt = defaultdict(list)
        for i in idx:
            by_prompt[images[i]["prompt_index"]].append(arrays[i])
        div = {str(p): metrics.diversity(ims) for p, ims in sorted(by_prompt.items())}
        row = {"method": method, "omega": omega, "images": len(idx),
               **{name: _mean([images[i].get(name) for i in idx]) for name in
                  ("clipped_fraction", "mean_saturation", "wall_s_per_image", "exec_s_per_image", "psnr", "ssim")},
               "diversity_per_prompt": div, "diversity": _mean(list(div.values()))}
        if ref_features is not None and len(idx) >= metrics.FD_MIN_IMAGES:
            row["fd"] = metrics.frechet_distance(np.stack([metrics.features(arrays[i]) for i in idx]), ref_features)
        cell_rows.append(row)
    servers = defaultdict(list)
    for e in images:
        servers[e["server"]].append(e)
    server_rows = {url: {"images": len(es), "jobs": len({e["job"] for e in es}),
                         "wall_s_per_image": _mean([e["wall_s_per_image"] for e in es]),
                         "exec_s_per_image": _mean([e["exec_s_per_image"] for e in es])}
                   for url, es in sorted(servers.items())}
    return {"images": images, "cells": cell_rows, "servers": server_rows, "failed": failed,
            "metric_notes": {k: v for k, v in NOTES.items()
                             if reference is not None or k not in ("psnr", "ssim", "fd")}}


# -- grid ---------------------------------------------------------------------------------------------------------

def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def make_grid(cells: dict[tuple[str, float], Path | None], methods: list[str], omegas: list[float],
              cell: int = 256, title: str = "") -> Image.Image:
    """Rows ω (ascending), columns methods; a missing or failed cell is grey with "failed".

    Args:
        cells: ``{(method, ω): image path or None}``.
        methods, omegas: the order of columns and rows.
        cell: the largest side of one tile in pixels.
        title: a line above the grid (the prompt and seed).
    """
    tiles: dict[tuple[str, float], Image.Image] = {}
    for key, path in cells.items():
        if path is not None:
            with Image.open(path) as im:
                tile = im.convert("RGB")
            if max(tile.size) > cell:
                tile.thumbnail((cell, cell), Image.Resampling.LANCZOS)
            elif max(tile.size) < cell // 2:  # tiny images (the digits demo is 96 px) are enlarged, pixel-exact
                factor = max(1, cell // max(tile.size))
                tile = tile.resize((tile.width * factor, tile.height * factor), Image.Resampling.NEAREST)
            tiles[key] = tile
    tw = max((t.width for t in tiles.values()), default=cell)
    th = max((t.height for t in tiles.values()), default=cell)
    font = _font(14)
    pad, left, top = 6, 70, 26 + (20 if title else 0)
    grid = Image.new("RGB", (left + len(methods) * (tw + pad), top + len(omegas) * (th + pad)), "white")
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((pad, 4), _fit(draw, title, font, grid.width - 2 * pad), fill="black", font=font)
    for c, method in enumerate(methods):
        draw.text((left + c * (tw + pad), top - 20), _fit(draw, method, font, tw), fill="black", font=font)
    for r, omega in enumerate(omegas):
        y = top + r * (th + pad)
        draw.text((pad, y + th // 2 - 7), f"cfg {omega:g}", fill="black", font=font)
        for c, method in enumerate(methods):
            x = left + c * (tw + pad)
            tile = tiles.get((method, omega))
            if tile is None:
                draw.rectangle((x, y, x + tw - 1, y + th - 1), fill=(160, 160, 160))
                draw.text((x + 6, y + th // 2 - 7), "failed", fill="black", font=font)
            else:
                grid.paste(tile, (x + (tw - tile.width) // 2, y + (th - tile.height) // 2))
    return grid


def write_grids(jobs: list[Job], store: JobStore, methods: list[str], omegas: list[float], out: Path,
                cell: int = 256) -> list[Path]:
    """``grids/<key>.png`` for every prompt and seed, and ``grid.png`` (the first); returns their paths."""
    by_key: dict[str, dict] = defaultdict(dict)
    titles: dict[str, str] = {}
    for job in jobs:
        rec = store.load(job.id)
        ok = rec is not None and rec.get("status") == "done" and rec.get("images")
        by_key[job.key()][(job.method, job.omega)] = store.root / rec["images"][0]["path"] if ok else None
        text = job.prompt_text if job.prompt_text is not None else "workflow prompt"
        titles[job.key()] = f"{job.key()}: {text}" + ("" if job.seed is None else f" · seed {job.seed}")
    (out / "grids").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (key, cells) in enumerate(by_key.items()):
        grid = make_grid(cells, methods, sorted(omegas), cell, titles[key])
        path = out / "grids" / f"{key}.png"
        grid.save(path)
        paths.append(path)
        if i == 0:
            grid.save(out / "grid.png")
    return paths


# -- plot ---------------------------------------------------------------------------------------------------------

def write_plot(summary: dict[str, Any], methods: list[str], path: Path) -> Path | None:
    """``metrics.png``: one panel per metric that has values, x = ω, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = summary["cells"]
    panels = [(k, title) for k, title in PLOTTED if any(c.get(k) is not None for c in cells)]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels, strict=False):
        for method in methods:
            pts = sorted((c["omega"], c[key]) for c in cells if c["method"] == method and c.get(key) is not None)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("ω (CFG weight)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
