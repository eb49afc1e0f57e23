"""DiffIER on a GPU: the checks that matter there, host-device syncs counted by CUDA, per-step cost, end to end.

    bash benchmarks/gpu_check.sh --device cuda --out DIR      # on a GPU machine, with the bundle (see that script)
    python -m benchmarks.gpu_check --device cpu --quick --out DIR   # the same code on the CPU, small sizes

Everything runs in one in-process ComfyUI with this pack loaded as ComfyUI loads it, on a random-weight SD 2.1
768-v UNet built on the device with ComfyUI's own classes (``sd21_unet``; no weights are read or shipped):

* ``checks``: DiffIER's correction in float32, float16 and bfloat16 (the core on device latents, and KSampler
  (DiffIER) with the UNet in each dtype); the three node routes bit-identical for a seed; batch independence;
  non-finite predictions passed through and non-finite corrections discarded;
* ``syncs``: host-device synchronisations per step, as CUDA reports them (``torch.cuda.set_sync_debug_mode``,
  every one with the Python line that caused it; on the CPU the host reads of ``instruments.SyncCounter`` stand in),
  for ``paper``, ``consistency`` and each preset, in the core step alone and in whole KSampler runs;
* ``kernel``: DiffIER's own time per step (CUDA events) against one batched cond + uncond evaluation of the UNet
  at 768² (4×96×96 latent), batch 1 and 4, float16 and bfloat16;
* ``end_to_end``: KSampler against KSampler (DiffIER) at ``quality``, ``balanced`` and ``fast``, 20 steps, same
  seed, alternating runs, medians, with the peak device memory of each;
* ``samplers``: every ComfyUI sampler with DiffIER in both grad modes (last: its length is open-ended).

The JSON (``overhead_cuda.json``, or ``overhead_cuda_cpu_dryrun.json`` off CUDA) is rewritten after every section,
so a run stopped by its time limit still leaves what it measured; the PNG is drawn at the end (``--plot FILE``
draws it again from a JSON).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.instruments import ModelRows, SyncCounter
from benchmarks.tuning import NODE_IDS
from scripts import comfy_inprocess
from scripts.sd21_unet import SD21_UNET, VPRED_PROBE_KEY

log = logging.getLogger("DiffIER.bench.gpu_check")
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "results"
SCHEMA = 1
SECTIONS = ("checks", "syncs", "kernel", "end_to_end", "samplers")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: the nodes' defaults (full DiffIER: the ``quality`` preset)
DIFFIER = {"mode": "consistency", "eta": 0.05, "threshold": 1e-3, "max_iters": 4, "start_percent": 0.0,
           "end_percent": 1.0}
#: the DiffIER variants of the sync counts and the end-to-end runs (node inputs)
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {**DIFFIER, "mode": "paper"},
    "quality": {**DIFFIER, "preset": "quality"},
    "balanced": {**DIFFIER, "preset": "balanced"},
    "fast": {**DIFFIER, "preset": "fast"},
}
#: ulps of max|x| one model evaluation may move a batched output against the same sample alone (reordered sums)
ULPS_PER_EVAL = 16
SYNC_MESSAGE = "synchronizing CUDA operation"
#: the longest one sampler's three runs may take in the sampler matrix before it is interrupted
SAMPLER_SECONDS = 60.0
#: samplers whose number of model calls is not set by the steps (run last in the matrix)
ADAPTIVE_SAMPLERS = ("dpm_adaptive",)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What one run measures; ``FULL`` is the GPU run, ``QUICK`` a CPU dry run of the same code (CI)."""

    unet_channels: int                   # 320: the full-size SD 2.1 UNet
    check_latent: int                    # latent side of the checks and the sync counts
    check_steps: int
    samplers: tuple[str, ...] | None     # None: every sampler of this ComfyUI
    sync_steps: tuple[int, int]          # two run lengths: per-step counts are the slope between them
    kernel_latent: int                   # 96: SD 2.1 at 768²
    kernel_batches: tuple[int, ...]
    kernel_repeats: int
    unet_repeats: int
    e2e_latent: int
    e2e_steps: int
    e2e_rounds: int


FULL = Sizes(unet_channels=320, check_latent=64, check_steps=3, samplers=None, sync_steps=(4, 8), kernel_latent=96,
             kernel_batches=(1, 4), kernel_repeats=20, unet_repeats=10, e2e_latent=96, e2e_steps=20, e2e_rounds=5)
QUICK = Sizes(unet_channels=32, check_latent=16, check_steps=2, samplers=("euler", "lms", "dpmpp_2m_sde", "uni_pc"),
              sync_steps=(2, 4), kernel_latent=16, kernel_batches=(1, 2), kernel_repeats=3, unet_repeats=1,
              e2e_latent=16, e2e_steps=2, e2e_rounds=1)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# -- the model --------------------------------------------------------------------------------------------------
def sd21_unet(model_channels: int, dtype: torch.dtype, device: torch.device, seed: int = 0):
    """A ModelPatcher of the SD 2.1 768-v UNet with seeded random weights made on ``device``.

    ComfyUI's own ``SD20`` config class (v-prediction, attention in float32 as for the real model) with the real
    UNet configuration (``scripts/sd21_unet.py``); ``model_channels`` below 320 narrows it for CPU dry runs.
    The weights follow ``scripts/checkpoints.py``'s recipe: matrices ~ N(0, 1/fan_in), norm scales ~ 1 + N(0, 0.02),
    everything else ~ N(0, 0.02), drawn on the device in the model's dtype.
    """
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm

    unet = {**SD21_UNET, "model_channels": model_channels}
    if model_channels == SD21_UNET["model_channels"]:
        config = sm.SD20(unet)
    else:
        class NarrowSD21(sm.SD20):
            unet_config = {**sm.SD20.unet_config, "model_channels": model_channels}
            unet_extra_config = {**sm.SD20.unet_extra_config, "num_head_channels": 16}

        config = NarrowSD21(unet)
    config.set_inference_dtype(dtype, None)
    probe = {VPRED_PROBE_KEY: torch.tensor([-0.5, 0.5] * 4)}  # std 0.5 > 0.09: ComfyUI reads v-prediction
    model = config.get_model(probe, "", device=device)
    _randomize_(model.diffusion_model, seed, device)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


@torch.no_grad()
def _randomize_(unet: torch.nn.Module, seed: int, device: torch.device) -> None:
    """Seeded random values, in place and on the device, for every floating tensor of ``unet``."""
    g = torch.Generator(device=device).manual_seed(seed)
    for key, t in sorted(unet.state_dict(keep_vars=True).items()):
        if not torch.is_floating_point(t):
            continue
        name = key.rsplit(".", 1)[-1]
        if key == VPRED_PROBE_KEY:
            t.normal_(0.0, 0.5, generator=g)
        elif t.ndim >= 2 and name == "weight":
            t.normal_(0.0, 1.0 / math.sqrt(max(1, math.prod(t.shape[1:]))), generator=g)
        elif t.ndim == 1 and name in ("weight", "scale", "gamma"):
            t.normal_(1.0, 0.02, generator=g)
        else:
            t.normal_(0.0, 0.02, generator=g)


# -- measuring --------------------------------------------------------------------------------------------------
def elapsed(fn: Callable[[], Any], repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup``: CUDA events on CUDA, perf_counter else."""
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return times
    events = []
    torch.cuda.synchronize(device)
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize(device)
    return [s.elapsed_time(e) / 1000.0 for s, e in events]


class SyncLog:
    """Host-device synchronisations inside a ``with`` block, each with the Python line that caused it.

    On CUDA they are what CUDA itself reports: ``torch.cuda.set_sync_debug_mode("warn")`` turns every
    synchronising call into a warning, recorded here with its file and line. On the CPU nothing synchronises, and
    ``benchmarks.instruments.SyncCounter`` (every host read: ``item``, ``bool``, ``float``, ``cpu``, ...) stands in.

    Args:
        device: where the tensors live.
        counter_cls: ``benchmarks.instruments.SyncCounter`` (used off CUDA).
        sites: ``(filename, line) -> label`` for the call sites.
    """

    def __init__(self, device: torch.device, counter_cls: type, sites: Callable[[str, int], str]) -> None:
        self.device, self._counter_cls, self._label = device, counter_cls, sites
        self.sites: list[str] = []
        self._stack = contextlib.ExitStack()

    @property
    def count(self) -> int:
        return len(self.sites)

    def __enter__(self) -> SyncLog:
        if self.device.type == "cuda":
            self._records = self._stack.enter_context(warnings.catch_warnings(record=True))
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            self._stack.callback(torch.cuda.set_sync_debug_mode, "default")
        else:
            self._counter = self._stack.enter_context(_located_counter(self._counter_cls)())
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        if self.device.type == "cuda":
            self.sites = [self._label(w.filename, w.lineno) for w in self._records if SYNC_MESSAGE in str(w.message)]
        else:
            self.sites = [self._label(f, n) for f, n in self._counter.sites]


def _located_counter(counter_cls: type) -> type:
    """``counter_cls`` (``SyncCounter``) that also keeps the first caller outside torch of every counted read."""

    class Located(counter_cls):
        def __init__(self) -> None:
            super().__init__()
            self.sites: list[tuple[str, int]] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            before = len(self.calls)
            out = super().__torch_function__(func, types, args, kwargs)
            if len(self.calls) > before:
                self.sites.append(_caller())
            return out

    return Located


def _caller() -> tuple[str, int]:
    torch_dir = os.path.dirname(torch.__file__)
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename.startswith(torch_dir)
                                 or frame.f_code.co_filename == __file__
                                 or "benchmarks/instruments/syncs.py" in frame.f_code.co_filename):
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("?", 0)


def device_memory(device: torch.device):
    """``(reset, peak_added)``: reset the peak and read what the device's peak rose above the reset point."""
    if device.type != "cuda":
        return None
    state = {}

    def reset() -> None:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        state["base"] = torch.cuda.memory_allocated(device)

    def peak_added() -> dict[str, int]:
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_bytes": peak, "peak_added_bytes": peak - state["base"]}

    return reset, peak_added


# -- the run ----------------------------------------------------------------------------------------------------
class Rig:
    """A booted in-process ComfyUI with the pack, the device, the models and the results being written."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        if args.unet_repeats:
            self.sizes = dataclasses.replace(self.sizes, unet_repeats=args.unet_repeats)
        self.kernel_dtypes = [s for s in args.kernel_dtypes.split(",") if s]
        self.started = time.monotonic()
        self.deadline = self.started + args.budget_s
        extra = ()
        import importlib.util

        if importlib.util.find_spec("comfyui_frontend_package") is None:
            # in-process ComfyUI serves no frontend: an empty web root instead of the frontend package
            extra = ("--front-end-root", tempfile.mkdtemp(prefix="diffier-web-"))
        if args.device == "cuda":
            os.environ["DIFFIER_TEST_GPU"] = "1"
        self.root, self.nodes, self.run_node, self.pack = comfy_inprocess.session(extra)
        self.core = self.pack.diffier_core
        import comfy.model_management as mm

        self.device = mm.get_torch_device()
        if self.device.type != args.device:
            raise SystemExit(f"ComfyUI chose {self.device}, not {args.device}")
        self.pack_dir = Path(self.pack.__file__).resolve().parent
        self.models: dict[tuple[int, torch.dtype], Any] = {}
        self.check_dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.result: dict[str, Any] = {"schema": SCHEMA, "dry_run": self.device.type != "cuda",
                                       "quick": args.quick, "sections": {}}
        self.path = args.out / ("overhead_cuda.json" if self.device.type == "cuda"
                                else "overhead_cuda_cpu_dryrun.json")

    # time and output
    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.result["elapsed_s"] = round(time.monotonic() - self.started, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.result, indent=2, default=str) + "\n")
        os.replace(partial, self.path)

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[dict[str, Any]]:
        """Record a section: its result dict, its time, and an error that ends it (the run goes on)."""
        out: dict[str, Any] = {}
        self.result[name] = out
        start = time.monotonic()
        status = "done"
        log.info("== %s (%.0f s left)", name, self.time_left())
        try:
            yield out
        except Exception as exc:  # a failing section is reported and the next one runs
            status = "error"
            out["error"] = f"{type(exc).__name__}: {exc}"
            out["traceback"] = traceback.format_exc(limit=12)
            log.exception("section %s failed", name)
        if out.get("truncated"):
            status = "truncated"
        self.result["sections"][name] = {"status": status, "seconds": round(time.monotonic() - start, 1)}
        self.save()

    # models and inputs
    def model(self, dtype: torch.dtype, channels: int | None = None):
        """The random SD 2.1 UNet (``sd21_unet``) in ``dtype``, built once per run."""
        key = (channels or self.sizes.unet_channels, dtype)
        if key not in self.models:
            start = time.monotonic()
            self.models[key] = sd21_unet(key[0], dtype, self.device)
            log.info("built SD 2.1 UNet (%d channels, %s) on %s in %.1f s", key[0], dtype, self.device,
                     time.monotonic() - start)
        return self.models[key]

    @staticmethod
    def cond(batch: int, seed: int) -> list:
        """CONDITIONING: a random 77×1024 context per sample (a different ``seed`` is a different prompt)."""
        g = torch.Generator().manual_seed(10_000 + seed)
        return [[torch.randn(batch, 77, SD21_UNET["context_dim"], generator=g), {}]]

    @staticmethod
    def latent(side: int, batch: int = 1, **extra) -> dict:
        return {"samples": torch.zeros(batch, 4, side, side), **extra}

    def sample(self, model, node: str = "KSampler", *, seed: int = 0, steps: int | None = None, cfg: float = 5.0,
               sampler: str = "euler", positive=None, negative=None, latent=None, side: int | None = None,
               **diffier) -> tuple[torch.Tensor, dict | None]:
        """One KSampler or KSampler (DiffIER) run; returns the latent and DiffIER's run summary (or None)."""
        out = self.run_node(node, model=model, seed=seed, steps=steps or self.sizes.check_steps, cfg=cfg,
                            sampler_name=sampler, scheduler="normal",
                            positive=positive if positive is not None else self.cond(1, 1),
                            negative=negative if negative is not None else self.cond(1, 0),
                            latent_image=latent if latent is not None else self.latent(side or
                                                                                      self.sizes.check_latent),
                            denoise=1.0, **diffier)
        return out[0]["samples"], (json.loads(out[1]) if len(out) > 1 else None)

    def site(self, filename: str, line: int) -> str:
        """``pack:nodes/patch.py:63``, ``comfyui:comfy/samplers.py:120`` or ``other:...`` for a call site."""
        path = Path(filename).resolve()
        for label, root in (("comfyui", Path(self.root).resolve()), ("pack", self.pack_dir)):
            if path.is_relative_to(root):
                return f"{label}:{path.relative_to(root).as_posix()}:{line}"
        return f"other:{path.name}:{line}"

    def syncs(self) -> SyncLog:
        return SyncLog(self.device, SyncCounter, self.site)


# -- section: checks --------------------------------------------------------------------------------------------
def _core_step(core, x, d, sigma, mode: str, target, max_iters: int = 4):
    """One ``diffier_step`` with fresh seeded noise; ``consistency``'s evaluator returns ``target``."""
    config = core.DiffIERSettings(mode=mode, threshold=0.0, max_iters=max_iters)
    with torch.inference_mode():
        return core.diffier_step(x, d, *core.convention_scales(sigma, "eps"), config,
                                 core.PerSampleNoise([1, 2, 3, 4][:x.shape[0]]), evaluate=lambda x_prime: target)


def check_core_dtypes(rig: Rig) -> list[dict[str, Any]]:
    """The core correction on device latents in each dtype: arithmetic in float32, the result cast back.

    The result from low-precision inputs must equal the float32 computation on the same (rounded) values cast to
    that dtype, within one unit in the last place at the largest magnitude.
    """
    side = rig.sizes.check_latent
    g = torch.Generator(device=rig.device).manual_seed(0)
    x32, d32, t32 = (torch.randn(2, 4, side, side, generator=g, device=rig.device) * s for s in (3.0, 1.0, 1.0))
    sigma = torch.tensor([0.7, 2.5], device=rig.device)
    rows = []
    for name, dtype in DTYPES.items():
        x, d, t = (v.to(dtype) for v in (x32, d32, t32))
        for mode in ("paper", "consistency"):
            out, info = _core_step(rig.core, x, d, sigma, mode, t)
            same, _ = _core_step(rig.core, x.float(), d.float(), sigma, mode, t.float())
            exact, _ = _core_step(rig.core, x32, d32, sigma, mode, t32)
            ulp = torch.finfo(dtype).eps * float(same.abs().max())
            err = float((out.float() - same.to(dtype).float()).abs().max())
            finite, kept = bool(torch.isfinite(out).all()), bool(info.kept.all())
            rows.append({"dtype": name, "mode": mode, "output_dtype": dtype_name(out.dtype),
                         "device": str(out.device), "finite": finite, "kept": kept,
                         "max_abs_vs_float32_on_same_values": err, "one_ulp_at_max": ulp,
                         "max_abs_vs_float32_inputs": float((out.float() - exact).abs().max()),
                         "correction_max_abs": float((out.float() - d.float()).abs().max()),
                         "ok": out.dtype == dtype and finite and kept and err <= ulp})
    return rows


def check_model_dtypes(rig: Rig) -> list[dict[str, Any]]:
    """KSampler (DiffIER) with the UNet itself in each dtype: finite, every step corrected and kept."""
    rows = []
    steps = rig.sizes.check_steps
    for name, dtype in DTYPES.items():
        model = rig.model(dtype)
        plain, _ = rig.sample(model)
        ours, info = rig.sample(model, "KSamplerDiffIER", **DIFFIER)
        kept = all(all(s["kept"]) for s in info["steps"])
        effect = float((ours - plain).abs().mean() / plain.abs().mean().clamp_min(1e-12))
        rows.append({"model_dtype": name, "plain_finite": bool(torch.isfinite(plain).all()),
                     "finite": bool(torch.isfinite(ours).all()), "steps_corrected": info["steps_corrected"],
                     "all_kept": kept, "mean_iterations": info["mean_iterations"],
                     "relative_change_vs_plain": effect,
                     "ok": bool(torch.isfinite(ours).all()) and kept and info["steps_corrected"] == steps
                     and effect > 1e-4})
    return rows


def check_routes(rig: Rig) -> dict[str, Any]:
    """KSamplerDiffIER == KSampler(DiffIERGuider(model)) == SamplerCustomAdvanced(DiffIERCFGGuider), bit for bit."""
    model, steps, side = rig.model(rig.check_dtype), rig.sizes.check_steps, rig.sizes.check_latent
    pos, neg = rig.cond(1, 1), rig.cond(1, 0)
    a, _ = rig.sample(model, "KSamplerDiffIER", seed=5, positive=pos, negative=neg, **DIFFIER)
    (patched,) = rig.run_node(NODE_IDS["diffier"], model=model, **DIFFIER)
    b, _ = rig.sample(patched, seed=5, positive=pos, negative=neg)
    (guider,) = rig.run_node("DiffIERCFGGuider", model=model, positive=pos, negative=neg, cfg=5.0, **DIFFIER)
    (noise,) = rig.run_node("RandomNoise", noise_seed=5)
    (sampler,) = rig.run_node("KSamplerSelect", sampler_name="euler")
    (sigmas,) = rig.run_node("BasicScheduler", model=model, scheduler="normal", steps=steps, denoise=1.0)
    out = rig.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                       latent_image=rig.latent(side))
    c = out[0]["samples"]
    return {"model_dtype": dtype_name(rig.check_dtype),
            "guider_equal": bool(torch.equal(a, b)), "cfg_guider_equal": bool(torch.equal(a, c)),
            "guider_max_abs": float((a - b).abs().max()), "cfg_guider_max_abs": float((a - c).abs().max()),
            "finite": bool(torch.isfinite(a).all()), "ok": bool(torch.equal(a, b) and torch.equal(a, c))}


def _slice(cond: list, i: int) -> list:
    return [[c[i:i + 1], dict(extra)] for c, extra in cond]


def _batch_vs_solo(rig: Rig, model, node: str, **diffier) -> tuple[list[float], torch.Tensor]:
    pos, neg = rig.cond(2, 7), rig.cond(2, 0)
    side = rig.sizes.check_latent
    both, _ = rig.sample(model, node, seed=9, positive=pos, negative=neg, latent=rig.latent(side, 2), **diffier)
    diffs = []
    for i in range(2):
        solo, _ = rig.sample(model, node, seed=9, positive=_slice(pos, i), negative=_slice(neg, i),
                             latent=rig.latent(side, 1, batch_index=[i]), **diffier)
        diffs.append(float((both[i:i + 1] - solo).abs().max()))
    return diffs, both


def check_batch_independence(rig: Rig) -> dict[str, Any]:
    """Each sample of a DiffIER batch of 2 equals its batch-1 run, up to the reordering noise of batched kernels.

    The float32 UNet is used. The bound is the larger of ``ULPS_PER_EVAL`` float32 ulps of max|x| per model
    evaluation of the run and, for devices whose kernels differ more between batch sizes (TF32 convolutions on
    CUDA), plain KSampler's own batch-vs-solo difference scaled by DiffIER's evaluations per step (1 + max_iters)
    and 4. Mixing samples would move a sample by about the gap between the two samples, which must exceed the
    bound by ``mixing_margin``.
    """
    model, steps, iters = rig.model(torch.float32), rig.sizes.check_steps, DIFFIER["max_iters"]
    floor, _ = _batch_vs_solo(rig, model, "KSampler")
    diffs, both = _batch_vs_solo(rig, model, "KSamplerDiffIER", **DIFFIER)
    ulp_bound = ULPS_PER_EVAL * torch.finfo(torch.float32).eps * float(both.abs().max()) * steps * (2 + 2 * iters)
    bound = max(ulp_bound, 4 * (1 + iters) * max(floor))
    gap = float((both[0] - both[1]).abs().max())
    return {"model_dtype": "float32", "diffier_batch_vs_solo": diffs, "plain_batch_vs_solo": floor,
            "bound": bound, "ulp_bound": ulp_bound, "sample_gap": gap, "mixing_margin": gap / bound,
            "ok": max(diffs) <= bound and gap >= 100 * bound}


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt ComfyUI's sampling after ``seconds`` (ComfyUI's own interrupt, as the UI's cancel button)."""
    import comfy.model_management as mm

    timer = threading.Timer(seconds, mm.interrupt_current_processing)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()                              # a timer that fired late must not interrupt the next run
        mm.interrupt_current_processing(False)


def sampler_row(rig: Rig, model, sampler: str, diffier: dict[str, Any]) -> dict[str, Any]:
    """Plain CFG, then DiffIER under ``enable_grad`` and under ``inference_mode``, with one sampler."""
    row: dict[str, Any] = {"sampler": sampler}
    with torch.inference_mode():
        plain, _ = rig.sample(model, sampler=sampler)
    outs = {}
    for mode, context in (("enable_grad", torch.enable_grad), ("inference_mode", torch.inference_mode)):
        with context():
            ours, info = rig.sample(model, "KSamplerDiffIER", sampler=sampler, **diffier)
        outs[mode] = ours.detach().float()
        row[mode] = {"finite": bool(torch.isfinite(ours).all()), "requires_grad": bool(ours.requires_grad),
                     "steps_corrected": info["steps_corrected"], "extra_model_evals": info["extra_model_evals"]}
    effect = float((outs["inference_mode"] - plain.float()).abs().max())
    agree = float((outs["enable_grad"] - outs["inference_mode"]).abs().max())
    row.update(effect_max_abs=effect, grad_modes_max_abs=agree,
               ok=all(row[m]["finite"] and row[m]["steps_corrected"] >= 1 for m in outs)
               and effect > 0 and agree <= 0.01 * effect)
    return row


def run_samplers(rig: Rig, out: dict[str, Any]) -> None:
    """Every sampler with DiffIER on, in ``enable_grad`` and ``inference_mode``: finite, corrected, the same.

    The two grad modes must agree to within 1 % of what DiffIER changes against plain CFG (kernels may differ
    between grad modes; the correction must not). Runs last, as it has no fixed length: a sampler that takes more
    than ``SAMPLER_SECONDS`` (the adaptive one on a random model) is interrupted and reported as such, and the
    section stops when the budget is spent (``truncated``).
    """
    import comfy.model_management as mm
    import comfy.samplers

    model = rig.model(rig.check_dtype)
    diffier = {**DIFFIER, "max_iters": 2}
    names = list(rig.sizes.samplers or comfy.samplers.KSampler.SAMPLERS)
    names.sort(key=lambda n: n in ADAPTIVE_SAMPLERS)         # the open-ended ones last
    rows: list[dict[str, Any]] = []
    out.update(model_dtype=dtype_name(rig.check_dtype), diffier=diffier, samplers_total=len(names), rows=rows)
    for sampler in names:
        if rig.time_left() < 20:
            out["truncated"] = True
            break
        start = time.monotonic()
        try:
            with time_limit(min(SAMPLER_SECONDS, max(1.0, rig.time_left() - 10))):
                row = sampler_row(rig, model, sampler, diffier)
        except mm.InterruptProcessingException:
            row = {"sampler": sampler, "ok": None, "interrupted": f"over {SAMPLER_SECONDS} s"}
        except Exception as exc:  # one sampler's failure is a result, and the others still run
            row = {"sampler": sampler, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        row["seconds"] = round(time.monotonic() - start, 2)
        rows.append(row)
        log.info("sampler %s: %s (%.1f s)", sampler, {True: "ok", False: "FAILED", None: "interrupted"}[row["ok"]],
                 row["seconds"])
        rig.save()
    out["interrupted"] = [r["sampler"] for r in rows if r["ok"] is None]
    out["ok"] = all(r["ok"] is not False for r in rows)
    out["all_ran"] = len(rows) == len(names) and not out["interrupted"]


def _injected(model, fault: Callable[[torch.Tensor], torch.Tensor], when: Callable[[int], bool]):
    """A clone of ``model`` whose ``when(call_index)`` model calls return ``fault(output)``."""
    import comfy.patcher_extension

    calls = [0]

    def wrapper(executor, x, t, *args, **kwargs):
        out = executor(x, t, *args, **kwargs)
        calls[0] += 1
        return fault(out) if when(calls[0]) else out

    m = model.clone()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "gpu-check-fault", wrapper)
    return m


@contextlib.contextmanager
def _diffier_warnings() -> Iterator[list[str]]:
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Keep(level=logging.WARNING)
    logger = logging.getLogger("DiffIER")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _nan_in_sample_0(out: torch.Tensor) -> torch.Tensor:
    out = out.clone()
    out[0] = float("nan")      # cond row of sample 0 (rows are [c0, c1, u0, u1])
    return out


def check_non_finite(rig: Rig) -> dict[str, Any]:
    """A NaN prediction is passed through and named; a non-finite correction is discarded, leaving plain CFG."""
    model, side = rig.model(rig.check_dtype), rig.sizes.check_latent
    one_iter = {**DIFFIER, "max_iters": 1}    # model calls alternate: CFG pass, inner evaluation
    faulty = _injected(model, _nan_in_sample_0, when=lambda i: i == 3)  # call 3: step 1's CFG pass
    with _diffier_warnings() as messages:
        out, info = rig.sample(faulty, "KSamplerDiffIER", positive=rig.cond(2, 7), negative=rig.cond(2, 0),
                               latent=rig.latent(side, 2), **one_iter)
    text = " ".join(messages)
    nan = {"sample_0_nan": bool(torch.isnan(out[0]).any()), "sample_1_finite": bool(torch.isfinite(out[1]).all()),
           "warning_names_step_and_sample": "step 1" in text and "sample 0" in text and "non-finite" in text,
           "input_finite_flags": [s["input_finite"] for s in info["steps"]]}
    nan["ok"] = nan["sample_0_nan"] and nan["sample_1_finite"] and nan["warning_names_step_and_sample"]

    plain, _ = rig.sample(model)
    inf_model = _injected(model, lambda o: o * float("inf"), when=lambda i: i % 2 == 0)  # every inner evaluation
    with _diffier_warnings() as messages:
        out, info = rig.sample(inf_model, "KSamplerDiffIER", **one_iter)
    inf = {"finite": bool(torch.isfinite(out).all()), "all_discarded": all(s["kept"] == [False] for s in info["steps"]),
           "equals_plain": bool(torch.equal(out, plain)), "warned": "discarded" in " ".join(messages)}
    inf["ok"] = all(inf.values())
    return {"model_dtype": dtype_name(rig.check_dtype), "nan_prediction": nan,
            "non_finite_correction": inf, "ok": nan["ok"] and inf["ok"]}


def _prefer_finite_check_dtype(rig: Rig) -> dict[str, Any]:
    """Keep float16 for the checks on CUDA unless the random UNet overflows there (then bfloat16)."""
    plain, _ = rig.sample(rig.model(rig.check_dtype))
    note = {"dtype": dtype_name(rig.check_dtype), "plain_finite": bool(torch.isfinite(plain).all())}
    if not note["plain_finite"] and rig.check_dtype == torch.float16:
        rig.check_dtype = torch.bfloat16
        note["switched_to"] = "bfloat16"
    return note


def run_checks(rig: Rig, out: dict[str, Any]) -> None:
    out["check_model"] = _prefer_finite_check_dtype(rig)
    checks = (("core_dtypes", check_core_dtypes), ("model_dtypes", check_model_dtypes), ("routes", check_routes),
              ("batch_independence", check_batch_independence), ("non_finite", check_non_finite))
    for name, check in checks:
        start = time.monotonic()
        try:
            out[name] = check(rig)
        except Exception as exc:  # one check's failure is a result, and the others still run
            out[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(8)}
        ok = out[name]["ok"] if isinstance(out[name], dict) else all(r["ok"] for r in out[name])
        log.info("check %s: %s (%.1f s)", name, "ok" if ok else "FAILED", time.monotonic() - start)
        out.setdefault("ok", {})[name] = ok
        rig.save()
    out["all_ok"] = all(out["ok"].values())


# -- section: syncs ---------------------------------------------------------------------------------------------
def core_syncs(rig: Rig) -> dict[str, int]:
    """Syncs in one core step (no model) per variant: paper at 4 iterations, consistency at 4 and at 1."""
    side = rig.sizes.check_latent
    g = torch.Generator(device=rig.device).manual_seed(0)
    x, d, t = (torch.randn(2, 4, side, side, generator=g, device=rig.device) for _ in range(3))
    sigma = torch.tensor([0.7, 2.5], device=rig.device)
    counts = {}
    for label, mode, iters in (("paper", "paper", 4), ("quality", "consistency", 4), ("balanced", "consistency", 1)):
        _core_step(rig.core, x, d, sigma, mode, t, iters)       # warm-up: lazy initialisation is not a step's cost
        with rig.syncs() as syncs:
            _core_step(rig.core, x, d, sigma, mode, t, iters)
        counts[label] = syncs.count
    return counts


def run_syncs(rig: Rig, out: dict[str, Any]) -> None:
    """Syncs per step of whole runs: the slope between two run lengths, so per-run work drops out."""
    out["counted_by"] = ("torch.cuda.set_sync_debug_mode('warn')" if rig.device.type == "cuda"
                         else "benchmarks.instruments.SyncCounter (host reads; nothing synchronises on the CPU)")
    out["core_step"] = core_syncs(rig)
    rig.save()
    model = rig.model(rig.check_dtype)
    rig.sample(model)                                            # loads the model: not part of any run below
    short, long = rig.sizes.sync_steps
    variants = {"ksampler": ("KSampler", {}), **{k: ("KSamplerDiffIER", v) for k, v in VARIANTS.items()}}
    runs: dict[str, Any] = {}
    for name, (node, inputs) in variants.items():
        counts, sites = {}, {}
        for steps in (short, long):
            with rig.syncs() as syncs:
                _, info = rig.sample(model, node, steps=steps, **inputs)
            counts[steps], sites[steps] = syncs.count, collections.Counter(syncs.sites)
        in_pack = {s: sum(n for site, n in sites[s].items() if site.startswith("pack:")) for s in (short, long)}
        runs[name] = {"node": node, "inputs": inputs, "counts": {str(s): counts[s] for s in counts},
                      "per_step": (counts[long] - counts[short]) / (long - short),
                      "in_pack_per_step": (in_pack[long] - in_pack[short]) / (long - short),
                      "sites_longer_run": dict(sites[long].most_common(12))}
        rig.save()
    base = runs["ksampler"]["per_step"]
    for name in VARIANTS:
        runs[name]["added_per_step"] = runs[name]["per_step"] - base
    out["model_dtype"] = dtype_name(rig.check_dtype)
    out["steps"] = [short, long]
    out["runs"] = runs
    out["added_per_step"] = {name: runs[name]["added_per_step"] for name in VARIANTS}


# -- section: kernel --------------------------------------------------------------------------------------------
def unet_eval_seconds(rig: Rig, model, batch: int) -> list[float]:
    """One batched cond + uncond evaluation (2·batch rows) of the UNet at the kernel latent, per repeat."""
    import comfy.model_management as mm

    mm.load_models_gpu([model])
    side = rig.sizes.kernel_latent
    x = torch.randn(2 * batch, 4, side, side, device=rig.device)
    sigma = torch.full((2 * batch,), 1.0, device=rig.device)
    context = torch.randn(2 * batch, 77, SD21_UNET["context_dim"], device=rig.device)

    def evaluate():
        with torch.inference_mode():
            model.model.apply_model(x, sigma, c_crossattn=context)

    warmup = 2 if rig.device.type == "cuda" else 0
    return elapsed(evaluate, rig.sizes.unet_repeats, warmup, rig.device)


KERNEL_VARIANTS = (("paper", "paper", DIFFIER["max_iters"]), ("quality", "consistency", DIFFIER["max_iters"]),
                   ("balanced", "consistency", 1))


def kernel_rows(rig: Rig, dtype: torch.dtype, batch: int, unet_seconds: float) -> list[dict[str, Any]]:
    """Each variant's time, syncs and added peak memory for one core step on a ``batch`` of kernel latents."""
    side = rig.sizes.kernel_latent
    g = torch.Generator(device=rig.device).manual_seed(0)
    x, d, t = (torch.randn(batch, 4, side, side, generator=g, device=rig.device).to(dtype) for _ in range(3))
    sigma = torch.full((batch,), 0.5, device=rig.device)
    memory = device_memory(rig.device)
    rows = []
    for label, mode, iters in KERNEL_VARIANTS:
        step = functools.partial(_core_step, rig.core, x, d, sigma, mode, t, iters)
        seconds = elapsed(step, rig.sizes.kernel_repeats, 3, rig.device)
        with rig.syncs() as syncs:
            step()
        row = {"variant": label, "mode": mode, "max_iters": iters, "batch": batch, "dtype": dtype_name(dtype),
               "median_seconds": statistics.median(seconds), "seconds": seconds, "host_syncs_per_step": syncs.count,
               "unet_eval_seconds": unet_seconds, "ratio_to_unet_eval": statistics.median(seconds) / unet_seconds}
        if memory is not None:
            memory[0]()
            step()
            row.update(memory[1]())
            row["peak_added_latent_buffers"] = row["peak_added_bytes"] / (x.numel() * x.element_size())
        rows.append(row)
        log.info("kernel %s B=%d %s: %.3f ms = %.4f %% of a UNet eval, %d syncs", label, batch, row["dtype"],
                 1e3 * row["median_seconds"], 100 * row["ratio_to_unet_eval"], syncs.count)
    return rows


def run_kernel(rig: Rig, out: dict[str, Any]) -> None:
    """DiffIER's own work per step (no model evaluation) against one cond + uncond UNet evaluation."""
    side = rig.sizes.kernel_latent
    out["config"] = {"latent": f"4x{side}x{side}", "unet_model_channels": rig.sizes.unet_channels,
                     "timer": "CUDA events" if rig.device.type == "cuda" else "perf_counter"}
    out["rows"], out["unet"] = [], {}
    for name in rig.kernel_dtypes:
        model = rig.model(DTYPES[name])
        for batch in rig.sizes.kernel_batches:
            if rig.time_left() < 150:
                out["truncated"] = True
                return
            times = unet_eval_seconds(rig, model, batch)
            out["unet"][f"{name}/{batch}"] = {"dtype": name, "batch": batch, "rows": 2 * batch,
                                              "median_seconds": statistics.median(times), "seconds": times}
            out["rows"] += kernel_rows(rig, DTYPES[name], batch, statistics.median(times))
            rig.save()


# -- section: end to end ----------------------------------------------------------------------------------------
def run_end_to_end(rig: Rig, out: dict[str, Any]) -> None:
    """KSampler vs KSampler (DiffIER) at each preset: alternating runs after one warm-up round, medians."""
    sizes = rig.sizes
    dtype = torch.float16 if rig.device.type == "cuda" else torch.float32
    timer = ModelRows(rig.device)
    model = timer.on(rig.model(dtype))
    memory = device_memory(rig.device)
    variants = {"ksampler": ("KSampler", {}),
                **{k: ("KSamplerDiffIER", VARIANTS[k]) for k in ("quality", "balanced", "fast")}}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
    info: dict[str, Any] = {}
    out.update(config={"latent": f"4x{sizes.e2e_latent}x{sizes.e2e_latent}", "steps": sizes.e2e_steps,
                       "sampler": "euler", "scheduler": "normal", "cfg": 7.0, "model_dtype": dtype_name(dtype),
                       "unet_model_channels": sizes.unet_channels, "rounds": sizes.e2e_rounds,
                       "timer": "CUDA events" if rig.device.type == "cuda" else "perf_counter"})
    for rnd in range(sizes.e2e_rounds + 1):               # round 0 warms up; then A, B, C, D, A, B, C, D, ...
        if rnd > 1 and rig.time_left() < 60:
            out["truncated"] = True
            break
        for name, (node, inputs) in variants.items():
            timer.reset()
            if memory is not None:
                memory[0]()
            (wall,) = elapsed(lambda node=node, inputs=inputs: rig.sample(
                model, node, steps=sizes.e2e_steps, cfg=7.0, side=sizes.e2e_latent, **inputs), 1, 0, rig.device)
            if rnd == 0:
                continue
            run = {"seconds": wall, "model_seconds": timer.seconds, "model_rows": timer.rows}
            if memory is not None:
                run.update(memory[1]())
            runs[name].append(run)
        rig.save()
    for name, (node, inputs) in variants.items():
        if node == "KSamplerDiffIER":
            _, summary = rig.sample(model, node, steps=sizes.e2e_steps, cfg=7.0, side=sizes.e2e_latent, **inputs)
            info[name] = {"mean_iterations_per_step": summary["mean_iterations"],
                          "extra_model_evals": summary["extra_model_evals"]}
    out["methods"] = _e2e_summary(runs, info)


def _e2e_summary(runs: dict[str, list[dict[str, Any]]], info: dict[str, Any]) -> dict[str, Any]:
    def med(name: str, key: str) -> float | None:
        values = [r[key] for r in runs[name] if key in r]
        return statistics.median(values) if values else None

    if not runs["ksampler"]:
        return {}
    base = med("ksampler", "seconds")
    base_rows = runs["ksampler"][0]["model_rows"]
    methods = {}
    for name, rs in runs.items():
        if not rs:
            continue
        methods[name] = {
            "median_seconds": med(name, "seconds"), "seconds": [r["seconds"] for r in rs],
            "ratio_to_ksampler": med(name, "seconds") / base,
            "median_model_seconds": med(name, "model_seconds"),
            "median_non_model_seconds": statistics.median(r["seconds"] - r["model_seconds"] for r in rs),
            "model_rows": rs[0]["model_rows"], "evals_ratio_to_ksampler": rs[0]["model_rows"] / base_rows,
            "median_peak_bytes": med(name, "peak_bytes"), "median_peak_added_bytes": med(name, "peak_added_bytes"),
            **info.get(name, {}),
        }
    return methods


# -- summary and plot -------------------------------------------------------------------------------------------
def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers (what the README's Performance table quotes)."""
    out: dict[str, Any] = {}
    checks = result.get("checks", {})
    if "ok" in checks:
        out["checks_ok"] = dict(checks["ok"])
    samplers = result.get("samplers", {})
    if "ok" in samplers:
        out.setdefault("checks_ok", {})["samplers"] = samplers["ok"]
        out["samplers_interrupted"] = samplers["interrupted"]
        out["samplers_ran"] = f"{len(samplers['rows'])}/{samplers['samplers_total']}"
    syncs = result.get("syncs", {})
    if "added_per_step" in syncs:
        out["host_syncs_added_per_step"] = syncs["added_per_step"]
        out["host_syncs_core_step"] = syncs.get("core_step")
    rows = result.get("kernel", {}).get("rows", [])
    if rows:
        out["kernel_ratio_to_unet_eval_max"] = {
            v: max(r["ratio_to_unet_eval"] for r in rows if r["variant"] == v) for v in {r["variant"] for r in rows}}
        out["kernel_ms"] = {f"{r['variant']}/{r['dtype']}/B{r['batch']}": 1e3 * r["median_seconds"] for r in rows}
        out["unet_eval_ms"] = {k: 1e3 * v["median_seconds"] for k, v in result["kernel"]["unet"].items()}
    methods = result.get("end_to_end", {}).get("methods", {})
    if methods:
        out["end_to_end_ratio"] = {k: v["ratio_to_ksampler"] for k, v in methods.items()}
        out["end_to_end_evals_ratio"] = {k: v["evals_ratio_to_ksampler"] for k, v in methods.items()}
        out["end_to_end_peak_added_mib"] = {k: (v["median_peak_added_bytes"] or 0) / 2**20
                                            for k, v in methods.items() if v.get("median_peak_added_bytes")}
    return out


def plot(result: dict[str, Any], path: Path) -> bool:
    """Kernel cost, syncs per step and end-to-end times in one PNG; False where matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    rows = result.get("kernel", {}).get("rows", [])
    ax = axes[0]
    ax.bar(range(len(rows)), [100 * r["ratio_to_unet_eval"] for r in rows],
           color=[{"paper": "#4c72b0", "quality": "#dd8452", "balanced": "#55a868"}[r["variant"]] for r in rows])
    short = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
    names = {"paper": "paper", "quality": "qual.", "balanced": "bal."}
    ax.set_xticks(range(len(rows)), [f"{names[r['variant']]}\nB{r['batch']}\n{short[r['dtype']]}" for r in rows],
                  fontsize=6)
    ax.axhline(1.0, color="k", ls="--", lw=1, label="1 %")
    ax.set_ylabel("DiffIER's own work per step, % of a cond+uncond UNet eval")
    ax.set_title(f"Per step ({result.get('kernel', {}).get('config', {}).get('latent', '?')})")
    ax.legend()
    runs = result.get("syncs", {}).get("runs", {})
    ax = axes[1]
    names = list(runs)
    ax.bar(names, [runs[n]["per_step"] for n in names], color="#8172b2", label="all")
    ax.bar(names, [runs[n]["in_pack_per_step"] for n in names], color="#c44e52", label="in the pack")
    ax.set_ylabel("host-device syncs per step")
    counted = "counted by CUDA" if not result.get("dry_run") else "host reads, CPU stand-in"
    ax.set_title(f"Host-device syncs per step ({counted})")
    ax.legend()
    methods = result.get("end_to_end", {}).get("methods", {})
    ax = axes[2]
    names = list(methods)
    ax.bar(names, [methods[n]["median_seconds"] for n in names], color="#55a868")
    for i, n in enumerate(names):
        peak = methods[n].get("median_peak_bytes")
        label = (f"×{methods[n]['ratio_to_ksampler']:.2f} time\n×{methods[n]['evals_ratio_to_ksampler']:.2f} evals"
                 + (f"\n{peak / 2**30:.2f} GiB peak" if peak else ""))
        ax.text(i, methods[n]["median_seconds"], label, ha="center", va="bottom", fontsize=8)
    cfg = result.get("end_to_end", {}).get("config", {})
    ax.set_ylim(0, 1.3 * max([m["median_seconds"] for m in methods.values()], default=1.0))
    ax.set_ylabel("median seconds per image")
    ax.set_title(f"End to end, {cfg.get('latent', '?')} × {cfg.get('steps', '?')} steps")
    fig.suptitle(f"DiffIER on {result.get('meta', {}).get('device_name', '?')}"
                 + (" (CPU dry run)" if result.get("dry_run") else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def meta(rig: Rig) -> dict[str, Any]:
    """Where and with what the run happened."""
    import comfy.model_management as mm
    import comfyui_version

    info: dict[str, Any] = {
        "device": str(rig.device), "torch": torch.__version__, "python": platform.python_version(),
        "comfyui": comfyui_version.__version__, "platform": platform.platform(),
        "sizes": dataclasses.asdict(rig.sizes), "budget_s": rig.args.budget_s,
        "vram_state": getattr(getattr(mm, "vram_state", None), "name", None),
        "cpu_threads": torch.get_num_threads(),
    }
    if rig.device.type == "cuda":
        props = torch.cuda.get_device_properties(rig.device)
        info.update(device_name=torch.cuda.get_device_name(rig.device), capability=[props.major, props.minor],
                    memory_bytes=props.total_memory, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                    cudnn_tf32=torch.backends.cudnn.allow_tf32, cudnn_benchmark=torch.backends.cudnn.benchmark)
    else:
        info["device_name"] = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    unpacked = os.environ.get("DIFFIER_GPU_BUNDLE_REPORT")
    if unpacked and Path(unpacked).is_file():
        info["bundle"] = json.loads(Path(unpacked).read_text())
    return info


RUNNERS = {"checks": run_checks, "syncs": run_syncs, "kernel": run_kernel, "end_to_end": run_end_to_end,
           "samplers": run_samplers}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="On the GPU machine: bash benchmarks/gpu_check.sh --device cuda --out DIR")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes (a CPU dry run of every section)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and PNG")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="start no new work after this many seconds from the start (default 480, for a "
                             "10-minute limit)")
    parser.add_argument("--kernel-dtypes", default="float16,bfloat16",
                        help="UNet and latent dtypes of the kernel section (default float16,bfloat16)")
    parser.add_argument("--unet-repeats", type=int, help="timed UNet evaluations per batch (default: by size)")
    parser.add_argument("--plot", type=Path, help="only draw the PNG of an existing JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.plot:
        return 0 if plot(json.loads(args.plot.read_text()), args.plot.with_suffix(".png")) else 1
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if set(args.kernel_dtypes.split(",")) - set(DTYPES):
        parser.error(f"--kernel-dtypes: choose from {list(DTYPES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    rig = Rig(args)
    rig.result["meta"] = meta(rig)
    rig.save()
    for name in sections:
        with rig.section(name) as out:
            RUNNERS[name](rig, out)
    rig.result["summary"] = summarize(rig.result)
    rig.save()
    drawn = plot(rig.result, rig.path.with_suffix(".png"))
    log.info("summary: %s", json.dumps(rig.result["summary"], indent=1))
    log.info("wrote %s%s", rig.path, " and the PNG" if drawn else " (no matplotlib: no PNG)")
    comfy_inprocess.release_models()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
