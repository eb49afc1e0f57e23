"""DiffIER CFG Guider: a GUIDER for SamplerCustomAdvanced with DiffIER built in."""

from __future__ import annotations

from . import comfy_adapter as adapter
from . import common
from .comfy_adapter import io
from .common import DiffIERNode, cfg_input, conditioning_inputs, diffier_patch


class DiffIERCFGGuider(DiffIERNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        model = io.Model.Input("model", tooltip="The model used for denoising (cloned, never changed).")
        guider = io.Guider.Output(tooltip="The guider for SamplerCustomAdvanced.")
        inputs = [model, *conditioning_inputs(), cfg_input()]
        return cls.diffier_schema("DiffIERCFGGuider", "DiffIER CFG Guider", "guider", inputs, [guider],
                                  "A CFG guider whose every step is corrected by DiffIER; plug it into "
                                  "SamplerCustomAdvanced. Inner-loop noise is seeded from the sampler's noise seed.")

    @classmethod
    def execute(cls, model, positive, negative, cfg, mode, eta, threshold, max_iters, start_percent,
                end_percent, inner_guidance=common.DEFAULT_INNER_GUIDANCE, preset=common.DEFAULT_PRESET,
                at_cfg_1=common.DEFAULT_AT_CFG_1) -> io.NodeOutput:
        patch = diffier_patch(preset, mode, eta, threshold, max_iters, start_percent, end_percent, inner_guidance,
                              at_cfg_1)
        return io.NodeOutput(adapter.cfg_guider(patch.apply(model), positive, negative, cfg))
