"""DiffIER in a sampling run: a post-CFG hook plus an outer-sample wrapper around ``diffier_core``.

No math lives here, and no ComfyUI internals either: everything ComfyUI is reached through
:mod:`.comfy_adapter`. The hook gets the step from the adapter in one call (:func:`comfy_adapter.guided_step`),
asks the core for the correction, records what it did and returns it; the wrapper opens a per-run record (seeds,
σ window, the model's noise convention, checked to be affine) from the sampler's own seed, initial noise and
schedule, and closes it with one log summary.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..diffier_core import DiffIERSettings, PerSampleNoise, StepInfo, diffier_step, resolve_steps, sample_seeds
from . import comfy_adapter as adapter

log = logging.getLogger("DiffIER")

WRAPPER_KEY = "diffier"


#: Why a guided step was left unchanged, as counted per run: the settings turn DiffIER off (``disabled``), cfg = 1
#: with ``at_cfg_1 = skip`` (``cfg_1``), no noise at any σ of the schedule (``no_noise``: noise scale b = 0), the
#: step's σ outside [start_percent, end_percent] (``outside_window``).
SKIP_REASONS = ("disabled", "cfg_1", "no_noise", "outside_window")


@dataclass
class DiffIERRun:
    """State of one sampling run (one ``CFGGuider.sample`` call)."""

    noise: PerSampleNoise
    model_sampling: Any  # whose noise_scaling gives each step's signal and noise scales
    sigma_start: float
    sigma_end: float
    full_window: bool = False  # start_percent = 0 and end_percent = 1: no step needs σ read on the host
    noise_free: bool = False  # b(σ) = 0 at every σ of the schedule: nothing to correct anywhere
    paired_noted: bool = False  # the paired-batch evaluation was logged for this run
    steps: list[tuple[torch.Tensor, StepInfo]] = field(default_factory=list)
    window_calls: int = 0  # guided model calls seen inside the window (for ``stride``)
    guided_calls: int = 0  # post-CFG calls seen in this run
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))

    def in_window(self, sigma: torch.Tensor) -> bool:
        """Whether this step's σ lies in the window (one host sync, only for a partial window)."""
        return self.full_window or self.sigma_end <= float(sigma.max()) <= self.sigma_start

    def on_stride(self, stride: int) -> bool:
        """Count one in-window call; True for the 1st, (1 + stride)-th, ... (no host sync)."""
        self.window_calls += 1
        return (self.window_calls - 1) % stride == 0

    def skip(self, reason: str) -> None:
        """Count one guided step left unchanged for ``reason`` (one of :data:`SKIP_REASONS`)."""
        self.skipped[reason] += 1

    def summary(self) -> dict[str, Any]:
        """Per-step records as Python numbers, and totals (one host sync for the whole run)."""
        steps = resolve_steps([sigma for sigma, _ in self.steps], [info for _, info in self.steps])
        iters = [i for s in steps for i in s["iterations"]]
        return {
            "steps_corrected": len(steps),
            "mean_iterations": (sum(iters) / len(iters)) if iters else 0.0,
            "extra_model_evals": sum(s["model_evals"] for s in steps),
            "guided_steps": self.guided_calls,
            "skipped": dict(self.skipped),
            "steps": steps,
        }


def empty_summary() -> dict[str, Any]:
    """The summary of a run that never reached a guided step (e.g. ``denoise`` = 0: no sampling at all)."""
    return {"steps_corrected": 0, "mean_iterations": 0.0, "extra_model_evals": 0, "guided_steps": 0,
            "skipped": dict.fromkeys(SKIP_REASONS, 0), "steps": [], "notice": ""}


class DiffIERPatch:
    """Installs DiffIER on a cloned ModelPatcher through ComfyUI's list hooks.

    Args:
        settings: what DiffIER runs with (mode, step, window, stride, behaviour at cfg = 1, ...), validated.
        on_run_end: called with each run's summary dict (KSampler (DiffIER) shows it).
    """

    def __init__(self, settings: DiffIERSettings, on_run_end: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.settings = settings
        self.on_run_end = on_run_end
        self.key = uuid.uuid4().hex
        self._fallback: DiffIERRun | None = None

    def apply(self, model: Any) -> Any:
        """A clone of ``model`` with the post-CFG hook and the run wrapper; ``model`` is untouched."""
        return adapter.patch_model(model, self.post_cfg, self.outer_sample, WRAPPER_KEY)

    # -- per-run state ---------------------------------------------------------------------------
    def _new_run(self, model_sampling: Any, seed: int, initial_noise: torch.Tensor,
                 sigmas: torch.Tensor) -> DiffIERRun:
        """The run record; checks once that the model's noise convention is affine at the schedule's σ."""
        noise_free = False
        if self.settings.enabled:  # switched off, DiffIER never reads the convention
            _, noise_scale = adapter.affine_noise_scales(model_sampling, sigmas)
            noise_free = bool((noise_scale == 0).all())
        sigma_start, sigma_end = adapter.window_sigmas(model_sampling, self.settings.start_percent,
                                                       self.settings.end_percent)
        return DiffIERRun(PerSampleNoise(sample_seeds(seed, initial_noise)), model_sampling, sigma_start, sigma_end,
                          self.settings.full_window, noise_free=noise_free)

    def outer_sample(self, executor: Any, noise: torch.Tensor, latent_image: torch.Tensor, sampler: Any,
                     sigmas: torch.Tensor, denoise_mask: torch.Tensor | None = None, callback: Any = None,
                     disable_pbar: bool = False, seed: int | None = None, **kwargs: Any) -> Any:
        """``WrappersMP.OUTER_SAMPLE`` wrapper: opens the run record from the sampler's seed and schedule."""
        model_sampling, model_options = adapter.outer_sample_context(executor)
        run = self._new_run(model_sampling, 0 if seed is None else int(seed), noise, _stepped_sigmas(sigmas))
        adapter.store_run(model_options, self.key, run)
        try:
            return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed,
                            **kwargs)
        finally:
            self._finish(run)

    def _finish(self, run: DiffIERRun) -> None:
        summary = run.summary()
        summary["notice"] = self.notice(run, summary)
        if summary["notice"]:
            log.warning(summary["notice"])
        for step in summary["steps"]:
            for i, (finite, kept, noised) in enumerate(zip(step["input_finite"], step["kept"], step["noised"],
                                                           strict=True)):
                if not finite:
                    log.warning("DiffIER: step %d (sigma %.4g), sample %d: the model's prediction is non-finite; "
                                "passed through unchanged", step["step"], step["sigma"], i)
                elif not kept and noised:  # a sample without noise is in the run's notice
                    log.warning("DiffIER: step %d (sigma %.4g), sample %d: the correction was non-finite and was "
                                "discarded", step["step"], step["sigma"], i)
        log.info("DiffIER (%s): %d steps corrected, %.2f mean iterations, %d extra model evaluations",
                 self.settings.mode, summary["steps_corrected"], summary["mean_iterations"],
                 summary["extra_model_evals"])
        if self.on_run_end is not None:
            self.on_run_end(summary)

    def notice(self, run: DiffIERRun, summary: dict[str, Any]) -> str:
        """Why DiffIER left guided steps of ``run`` unchanged, in one sentence for the user ("" where it did not)."""
        total, skipped = summary["guided_steps"], summary["skipped"]
        reasons = []
        if skipped["disabled"]:
            off = "eta = 0" if self.settings.eta <= 0.0 else "max_iters = 0"
            reasons.append(f"it is switched off ({off}); set eta > 0 and max_iters > 0 to apply it")
        if skipped["cfg_1"]:
            reasons.append(f"cfg = 1 at {skipped['cfg_1']} of {total} guided steps: ComfyUI skips the negative pass "
                           "there, so those steps are plain sampling (at_cfg_1 = skip); set at_cfg_1 = correct to "
                           "run DiffIER at cfg 1")
        no_noise = skipped["no_noise"] + sum(not all(step["noised"]) for step in summary["steps"])
        if no_noise:
            reasons.append(f"no noise at {no_noise} of {total} guided steps: "
                           f"{type(run.model_sampling).__name__}.noise_scaling gives noise scale b(sigma) = 0 there, "
                           "so the sample does not depend on the noise and there is nothing to correct; left unchanged")
        if skipped["outside_window"] and run.window_calls == 0:
            window = f"[{self.settings.start_percent:g}, {self.settings.end_percent:g}]"
            reasons.append(f"empty window: no step's sigma fell in [start_percent, end_percent] = {window} (sigma "
                           f"{run.sigma_end:.4g} to {run.sigma_start:.4g}); widen the window")
        if not reasons:
            return ""
        left = sum(skipped.values())
        what = "did nothing" if summary["steps_corrected"] == 0 else f"left {left} of {total} guided steps unchanged"
        return f"DiffIER {what} in this run: {'; '.join(reasons)}."

    def finish_fallback(self) -> None:
        """Close the run opened without ComfyUI's outer-sample wrapper, if any (logs and reports its summary)."""
        run, self._fallback = self._fallback, None
        if run is not None:
            self._finish(run)

    def _fallback_run(self, model_sampling: Any, sigma: torch.Tensor) -> DiffIERRun:
        """The run of sampling outside ComfyUI's outer-sample wrapper: opened at its first step, seeded with 0."""
        if self._fallback is None:
            log.warning("DiffIER: sampled outside ComfyUI's sampler entry point; inner-loop noise seeded with 0")
            self._fallback = self._new_run(model_sampling, 0, torch.zeros(1, 1), sigma)
        return self._fallback

    # -- the hook ----------------------------------------------------------------------------------
    def post_cfg(self, args: dict[str, Any]) -> torch.Tensor:
        """``sampler_post_cfg_function`` hook: the step from the adapter, the correction from the core, returned.

        Works in any grad mode: the correction never builds an autograd graph (see ``diffier_step``).
        """
        step = adapter.guided_step(args, self.key, self._fallback_run)
        run = step.run
        run.guided_calls += 1
        at_cfg_1 = math.isclose(step.cond_scale, 1.0)
        reason = self._skip_reason(run, step.sigma, at_cfg_1)
        if reason is not None:
            run.skip(reason)
            return step.denoised
        if not run.on_stride(self.settings.stride):
            return step.denoised
        evaluate = None
        if self.settings.mode == "consistency":
            evaluate = step.evaluator(self._inner_guidance(step, run, at_cfg_1))
        signal_scale, noise_scale = step.scales()
        out, info = diffier_step(step.x, step.denoised, signal_scale, noise_scale, self.settings, run.noise,
                                 evaluate=evaluate)
        run.steps.append((step.sigma.detach(), info))
        return out

    def _skip_reason(self, run: DiffIERRun, sigma: torch.Tensor, at_cfg_1: bool) -> str | None:
        """Why this guided step is left unchanged (one of :data:`SKIP_REASONS`), or None where DiffIER runs."""
        if not self.settings.enabled:
            return "disabled"
        if at_cfg_1 and self.settings.at_cfg_1 == "skip":
            return "cfg_1"  # ComfyUI skipped the uncond pass: plain sampling, reported once per run
        if run.noise_free:
            return "no_noise"
        if not run.in_window(sigma):
            return "outside_window"
        return None

    def _inner_guidance(self, step: adapter.GuidedStep[DiffIERRun], run: DiffIERRun, at_cfg_1: bool) -> str:
        """What the inner loop evaluates: the conditional branch at cfg = 1 (it is the guided prediction there),
        ``inner_guidance`` otherwise; a paired-batch model evaluates both branches, said once per run."""
        inner = "cond" if at_cfg_1 else self.settings.inner_guidance
        if step.paired_batch and inner == "cond" and not run.paired_noted:
            run.paired_noted = True
            log.info("DiffIER: %s evaluates cond and uncond as one pair, so inner_guidance = cond evaluates both "
                     "branches (two model rows per inner iteration) and uses the conditional one", step.paired_batch)
        return inner


def _stepped_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """The σ a schedule steps from (all but its last), or the schedule itself if it has one entry."""
    return sigmas[:-1] if sigmas.numel() > 1 else sigmas
