"""DiffIER Guider (model patch): MODEL in, MODEL out, composable with other post-CFG patches."""

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


class DiffIERGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DiffIERGuider",
            **adapter.schema_extras(search_aliases=["DiffIER", "iterative error reduction", "model patch"]),
            display_name="DiffIER Guider (model patch)",
            category=CATEGORY,
            description="Patches the model so every CFG step is corrected by DiffIER's iterative error "
                        "reduction (a post-CFG hook: chains with APG, CFGZeroStar, RescaleCFG and other patches). "
                        "Use with any sampler node.",
            inputs=[io.Model.Input("model", tooltip="The model to patch (it is cloned, never changed).")]
            + diffier_inputs(),
            outputs=[io.Model.Output(tooltip="The model with DiffIER applied at sampling time.")],
        )

    @classmethod
    def validate_inputs(cls, mode, inner_guidance=None, preset=None) -> bool | str:
        """Only the combos: ComfyUI range-checks eta, threshold, ... per input (see validate_diffier_inputs)."""
        return validate_diffier_inputs(mode, inner_guidance, preset)

    @classmethod
    def execute(cls, model, mode, eta, threshold, max_iters, start_percent, end_percent,
                inner_guidance=DEFAULT_INNER_GUIDANCE, preset=DEFAULT_PRESET) -> io.NodeOutput:
        patch = diffier_patch(preset, mode, eta, threshold, max_iters, start_percent, end_percent, inner_guidance)
        return io.NodeOutput(patch.apply(model))
