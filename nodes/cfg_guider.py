"""DiffIER CFG Guider: a GUIDER for SamplerCustomAdvanced with DiffIER built in."""

from __future__ import annotations

from . import comfy_adapter as adapter
from .comfy_adapter import io
from .common import (
    CATEGORY,
    DEFAULT_INNER_GUIDANCE,
    DEFAULT_PRESET,
    diffier_inputs,
    diffier_patch,
    validate_diffier_inputs,
)


class DiffIERCFGGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DiffIERCFGGuider",
            **adapter.schema_extras(search_aliases=["DiffIER", "iterative error reduction", "guider"]),
            display_name="DiffIER CFG Guider",
            category=CATEGORY,
            description="A CFG guider whose every step is corrected by DiffIER; plug it into "
                        "SamplerCustomAdvanced. Inner-loop noise is seeded from the sampler's noise seed.",
            inputs=[
                io.Model.Input("model", tooltip="The model used for denoising (cloned, never changed)."),
                io.Conditioning.Input("positive", tooltip="What the image should contain."),
                io.Conditioning.Input("negative", tooltip="What the image should not contain."),
                io.Float.Input("cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale. At 1.0 ComfyUI skips the negative "
                                       "pass and DiffIER does nothing."),
            ] + diffier_inputs(),
            outputs=[io.Guider.Output(tooltip="The guider for SamplerCustomAdvanced.")],
        )

    @classmethod
    def validate_inputs(cls, mode, inner_guidance=None, preset=None) -> bool | str:
        """Only the combos: ComfyUI range-checks eta, threshold, ... per input (see validate_diffier_inputs)."""
        return validate_diffier_inputs(mode, inner_guidance, preset)

    @classmethod
    def execute(cls, model, positive, negative, cfg, mode, eta, threshold, max_iters, start_percent,
                end_percent, inner_guidance=DEFAULT_INNER_GUIDANCE, preset=DEFAULT_PRESET) -> io.NodeOutput:
        patch = diffier_patch(preset, mode, eta, threshold, max_iters, start_percent, end_percent, inner_guidance)
        return io.NodeOutput(adapter.cfg_guider(patch.apply(model), positive, negative, cfg))
