"""DiffIER CFG Guider: a GUIDER for SamplerCustomAdvanced with DiffIER built in."""

from __future__ import annotations

from typing import Any

from typing_extensions import Unpack

from ..diffier_core.presets import DiffIERInputs, settings_for
from . import comfy_adapter as adapter
from .comfy_adapter import io
from .common import DiffIERCombosNode, cfg_input, conditioning_inputs
from .patch import DiffIERPatch


class DiffIERCFGGuider(DiffIERCombosNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        model = io.Model.Input("model", tooltip="The model used for denoising (cloned, never changed).")
        guider = io.Guider.Output(tooltip="The guider for SamplerCustomAdvanced.")
        inputs = [model, *conditioning_inputs(), cfg_input()]
        return cls.diffier_schema("DiffIERCFGGuider", "DiffIER CFG Guider", "guider", inputs, [guider],
                                  "A CFG guider whose every step is corrected by DiffIER; plug it into "
                                  "SamplerCustomAdvanced. Inner-loop noise is seeded from the sampler's noise seed.")

    @classmethod
    def execute(cls, model: Any, positive: Any, negative: Any, cfg: float,
                **diffier: Unpack[DiffIERInputs]) -> io.NodeOutput:
        patched = DiffIERPatch(settings_for(**diffier)).apply(model)
        return io.NodeOutput(adapter.cfg_guider(patched, positive, negative, cfg))
