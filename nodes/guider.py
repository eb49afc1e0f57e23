"""DiffIER Guider (model patch): MODEL in, MODEL out, composable with other post-CFG patches."""

from __future__ import annotations

from .comfy_adapter import io
from .common import DEFAULT_AT_CFG_1, DEFAULT_INNER_GUIDANCE, DEFAULT_PRESET, DiffIERNode, diffier_patch


class DiffIERGuider(DiffIERNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        model = io.Model.Input("model", tooltip="The model to patch (it is cloned, never changed).")
        patched = io.Model.Output(tooltip="The model with DiffIER applied at sampling time.")
        return cls.diffier_schema("DiffIERGuider", "DiffIER Guider (model patch)", "model patch", [model], [patched],
                                  "Patches the model so every CFG step is corrected by DiffIER's iterative error "
                                  "reduction (a post-CFG hook: chains with APG, CFGZeroStar, RescaleCFG and other "
                                  "patches). Use with any sampler node.")

    @classmethod
    def execute(cls, model, mode, eta, threshold, max_iters, start_percent, end_percent,
                inner_guidance=DEFAULT_INNER_GUIDANCE, preset=DEFAULT_PRESET,
                at_cfg_1=DEFAULT_AT_CFG_1) -> io.NodeOutput:
        patch = diffier_patch(preset, mode, eta, threshold, max_iters, start_percent, end_percent, inner_guidance,
                              at_cfg_1)
        return io.NodeOutput(patch.apply(model))
