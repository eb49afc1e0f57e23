"""KSampler (DiffIER): a drop-in KSampler (same inputs, same order) with DiffIER inputs appended."""

from __future__ import annotations

import json
from typing import Any

from typing_extensions import Unpack

from ..diffier_core.presets import DiffIERInputs, settings_for
from . import comfy_adapter as adapter
from .comfy_adapter import io
from .common import DiffIERNode, cfg_input, conditioning_inputs, validate_diffier_inputs
from .patch import DiffIERPatch, empty_summary


class KSamplerDiffIER(DiffIERNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        seed = io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                            tooltip="The random seed used for creating the noise; DiffIER's inner-loop noise is "
                                    "derived from it too, so the same seed gives the same image.")
        inputs = [
            io.Model.Input("model", tooltip="The model used for denoising the input latent (never changed)."), seed,
            io.Int.Input("steps", default=20, min=1, max=10000, tooltip="The number of sampling steps."), cfg_input(),
            io.Combo.Input("sampler_name", options=adapter.sampler_names(), tooltip="The sampling algorithm."),
            io.Combo.Input("scheduler", options=adapter.scheduler_names(),
                           tooltip="How noise levels are spaced over the steps."),
            *conditioning_inputs(),
            io.Latent.Input("latent_image", tooltip="The latent image to denoise."),
            io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                           tooltip="Amount of denoising; lower values keep more of the input latent."),
        ]
        outputs = [io.Latent.Output(tooltip="The denoised latent."),
                   io.String.Output("diffier_info", display_name="diffier_info",
                                    tooltip="JSON summary of what DiffIER did at each step.")]
        return cls.diffier_schema("KSamplerDiffIER", "KSampler (DiffIER)", "sampler", inputs, outputs,
                                  "KSampler with DiffIER's iterative error reduction applied to every CFG step. Same "
                                  "inputs in the same order as KSampler, so it can replace one; the DiffIER inputs "
                                  "follow.")

    @classmethod
    def validate_inputs(cls, sampler_name: Any, scheduler: Any, mode: Any, inner_guidance: Any = None,
                        preset: Any = None, at_cfg_1: Any = None) -> bool | str:
        """Only the combos: ComfyUI range-checks eta, threshold, ... per input (see validate_diffier_inputs)."""
        return validate_diffier_inputs(mode, inner_guidance, preset, at_cfg_1,
                                       sampler_name=(sampler_name, adapter.sampler_names()),
                                       scheduler=(scheduler, adapter.scheduler_names()))

    @classmethod
    def execute(cls, model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str, positive: Any,
                negative: Any, latent_image: dict[str, Any], denoise: float,
                **diffier: Unpack[DiffIERInputs]) -> io.NodeOutput:
        summaries: list[dict[str, Any]] = []
        settings = settings_for(**diffier)
        patch = DiffIERPatch(settings, on_run_end=summaries.append)
        latent = adapter.common_ksampler(patch.apply(model), seed, steps, cfg, sampler_name, scheduler, positive,
                                         negative, latent_image, denoise=denoise)
        patch.finish_fallback()  # only where this ComfyUI has no outer-sample wrapper (see comfy_adapter)
        mode = diffier["mode"]
        summary = {"mode": mode, "cfg": cfg, "at_cfg_1": settings.at_cfg_1,
                   **(summaries[-1] if summaries else empty_summary())}
        text = (f"DiffIER {mode}: {summary['steps_corrected']} steps corrected, "
                f"{summary['mean_iterations']:.2f} mean iterations, {summary['extra_model_evals']} extra evaluations")
        if summary["notice"]:
            text = f"{text}. {summary['notice']}"
        return io.NodeOutput(latent, json.dumps(summary), ui={"text": [text]})
