"""DiffIER in a sampling run: a post-CFG hook plus an outer-sample wrapper around ``diffier_core``.

No math lives here, and no ComfyUI internals either: everything ComfyUI is reached through
:mod:`.comfy_adapter`. The hook reads the step from ComfyUI's post-CFG arguments, asks the core for the
correction, and records what it did; the wrapper opens a per-run record (seeds, σ window, the model's noise
convention, checked to be affine) from the sampler's own seed, initial noise and schedule, and closes it with
one log summary.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..diffier_core import (
    DEFAULT_AT_CFG_1,
    DiffIERConfig,
    DiffIERError,
    PerSampleNoise,
    StepInfo,
    diffier_step,
    resolve_steps,
    sample_seeds,
    validate_at_cfg_1,
)
from . import comfy_adapter as adapter

log = logging.getLogger("DiffIER")

WRAPPER_KEY = "diffier"


#: Why a guided step was left unchanged, as counted per run: the config turns DiffIER off (``disabled``), cfg = 1
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
        config: validated core parameters.
        start_percent: sampling progress where DiffIER starts, in [0, 1] (0 = first step).
        end_percent: sampling progress where it ends, in [0, 1] (1 = last step).
        on_run_end: called with each run's summary dict (KSamplerDiffIER shows it).
        stride: correct only every ``stride``-th guided model call inside the window, starting with the
            first (1 = every call, today's behaviour; the cheap presets, ``diffier_core.presets``).
        at_cfg_1: ``"skip"`` (default: at cfg = 1 the step is left unchanged and the run's summary says so) or
            ``"correct"`` (at cfg = 1 the conditional branch is the guided prediction and is corrected).
    """

    def __init__(self, config: DiffIERConfig, start_percent: float = 0.0, end_percent: float = 1.0,
                 on_run_end: Callable[[dict[str, Any]], None] | None = None, stride: int = 1,
                 at_cfg_1: str = DEFAULT_AT_CFG_1) -> None:
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise DiffIERError(f"DiffIER: stride must be an integer >= 1, got {stride!r}")
        self.config = config
        self.stride = stride
        self.at_cfg_1 = validate_at_cfg_1(at_cfg_1)
        self.start_percent = start_percent
        self.end_percent = end_percent
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
        if self.config.enabled:  # switched off, DiffIER never reads the convention
            _, noise_scale = adapter.affine_noise_scales(model_sampling, sigmas)
            noise_free = bool((noise_scale == 0).all())
        sigma_start = adapter.percent_to_sigma(model_sampling, self.start_percent)
        sigma_end = adapter.percent_to_sigma(model_sampling, self.end_percent)
        return DiffIERRun(PerSampleNoise(sample_seeds(seed, initial_noise)), model_sampling, sigma_start, sigma_end,
                          self.start_percent <= 0.0 and self.end_percent >= 1.0, noise_free=noise_free)

    def outer_sample(self, executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                     disable_pbar=False, seed=None, **kwargs):
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
                 self.config.mode, summary["steps_corrected"], summary["mean_iterations"],
                 summary["extra_model_evals"])
        if self.on_run_end is not None:
            self.on_run_end(summary)

    def notice(self, run: DiffIERRun, summary: dict[str, Any]) -> str:
        """Why DiffIER left guided steps of ``run`` unchanged, in one sentence for the user ("" where it did not)."""
        total, skipped = summary["guided_steps"], summary["skipped"]
        reasons = []
        if skipped["disabled"]:
            off = "eta = 0" if self.config.eta <= 0.0 else "max_iters = 0"
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
            reasons.append(f"empty window: no step's sigma fell in [start_percent, end_percent] = "
                           f"[{self.start_percent:g}, {self.end_percent:g}] (sigma {run.sigma_end:.4g} to "
                           f"{run.sigma_start:.4g}); widen the window")
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

    def _run_for(self, step: adapter.PostCfgStep) -> DiffIERRun:
        run = adapter.find_run(step.model_options, self.key)
        if run is not None:
            return run
        if self._fallback is None:
            log.warning("DiffIER: sampled outside ComfyUI's sampler entry point; inner-loop noise seeded with 0")
            self._fallback = self._new_run(adapter.model_sampling(step.model), 0, torch.zeros(1, 1), step.sigma)
        return self._fallback

    # -- the hook ----------------------------------------------------------------------------------
    def post_cfg(self, args: dict[str, Any]) -> torch.Tensor:
        """``sampler_post_cfg_function`` hook: returns the corrected guided clean estimate.

        Works in any grad mode: the correction never builds an autograd graph (see ``diffier_step``).
        """
        step = adapter.read_post_cfg(args)
        run = self._run_for(step)
        run.guided_calls += 1
        at_cfg_1 = math.isclose(step.cond_scale, 1.0)
        if not self.config.enabled:
            run.skip("disabled")
            return step.denoised
        if at_cfg_1 and self.at_cfg_1 == "skip":
            run.skip("cfg_1")  # ComfyUI skipped the uncond pass: plain sampling, reported once per run
            return step.denoised
        if run.noise_free:
            run.skip("no_noise")
            return step.denoised
        if not run.in_window(step.sigma):
            run.skip("outside_window")
            return step.denoised
        if not run.on_stride(self.stride):
            return step.denoised
        evaluate = None
        if self.config.mode == "consistency":
            # at cfg = 1 the guided prediction is the conditional one: one model row per iteration
            evaluate = _guided_evaluator(step, "cond" if at_cfg_1 else self.config.inner_guidance)
        signal_scale, noise_scale = adapter.noise_scales(run.model_sampling, step.sigma)
        out, info = diffier_step(step.x, step.denoised, signal_scale, noise_scale, self.config, run.noise,
                                 evaluate=evaluate)
        run.steps.append((step.sigma.detach(), info))
        return out


def _stepped_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """The σ a schedule steps from (all but its last), or the schedule itself if it has one entry."""
    return sigmas[:-1] if sigmas.numel() > 1 else sigmas


def _guided_evaluator(step: adapter.PostCfgStep, inner_guidance: str):
    """x' ↦ D(x', σ): the cond branch (``cond``) or cond+uncond CFG (``cfg``) in one ``calc_cond_batch`` pass."""
    conds = [step.cond, None if inner_guidance == "cond" else step.uncond]
    model, sigma, model_options, cond_scale = step.model, step.sigma, step.model_options, step.cond_scale

    def evaluate(x_prime: torch.Tensor) -> torch.Tensor:
        adapter.check_interrupted()  # /interrupt stops the inner loop too
        cond, uncond = adapter.calc_cond_batch(model, conds, x_prime, sigma, model_options)
        if conds[1] is None:
            return cond
        return uncond + (cond - uncond) * cond_scale

    return evaluate
