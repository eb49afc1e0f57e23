"""DiffIER CFG Guider: a GUIDER for SamplerCustomAdvanced with DiffIER built in."""

from __future__ import annotations

from . import comfy_adapter as adapter
from .comfy_adapter import io
from .common import DEFAULT_INNER_GUIDANCE, DEFAULT_PRESET, DiffIERNode, diffier_patch


class DiffIERCFGGuider(DiffIERNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return cls.diffier_schema(
            node_id="DiffIERCFGGuider",
            display_name="DiffIER CFG Guider",
            alias="guider",
            description="A CFG guider whose every step is corrected by DiffIER; plug it into "
                        "SamplerCustomAdvanced. Inner-loop noise is seeded from the sampler's noise seed.",
            inputs=[
                io.Model.Input("model", tooltip="The model used for denoising (cloned, never changed)."),
                io.Conditioning.Input("positive", tooltip="What the image should contain."),
                io.Conditioning.Input("negative", tooltip="What the image should not contain."),
                io.Float.Input("cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale. At 1.0 ComfyUI skips the negative "
                                       "pass and DiffIER does nothing."),
            ],
            outputs=[io.Guider.Output(tooltip="The guider for SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, mode, eta, threshold, max_iters, start_percent,
                end_percent, inner_guidance=DEFAULT_INNER_GUIDANCE, preset=DEFAULT_PRESET) -> io.NodeOutput:
        patch = diffier_patch(preset, mode, eta, threshold, max_iters, start_percent, end_percent, inner_guidance)
        return io.NodeOutput(adapter.cfg_guider(patch.apply(model), positive, negative, cfg))
