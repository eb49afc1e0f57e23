"""DiffIER Guider (model patch): MODEL in, MODEL out, composable with other post-CFG patches."""

from __future__ import annotations

from typing import Any

from typing_extensions import Unpack

from ..diffier_core.presets import DiffIERInputs, settings_for
from .comfy_adapter import io
from .common import DiffIERCombosNode
from .patch import DiffIERPatch


class DiffIERGuider(DiffIERCombosNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        model = io.Model.Input("model", tooltip="The model to patch (it is cloned, never changed).")
        patched = io.Model.Output(tooltip="The model with DiffIER applied at sampling time.")
        return cls.diffier_schema("DiffIERGuider", "DiffIER Guider (model patch)", "model patch", [model], [patched],
                                  "Patches the model so every CFG step is corrected by DiffIER's iterative error "
                                  "reduction (a post-CFG hook: chains with APG, CFGZeroStar, RescaleCFG and other "
                                  "patches). Use with any sampler node.")

    @classmethod
    def execute(cls, model: Any, **diffier: Unpack[DiffIERInputs]) -> io.NodeOutput:
        return io.NodeOutput(DiffIERPatch(settings_for(**diffier)).apply(model))
