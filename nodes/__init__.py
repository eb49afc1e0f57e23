"""ComfyUI nodes of the pack: thin V3 node classes; the math lives in ``diffier_core``."""

from __future__ import annotations

from typing_extensions import override

from .cfg_guider import DiffIERCFGGuider
from .comfy_adapter import ComfyExtension, io
from .demo import DEMO_NODES
from .demo_sr import DEMO_SR_NODES
from .guider import DiffIERGuider
from .ksampler import KSamplerDiffIER
from .label_grid import DiffIERLabelGrid

NODES: list[type[io.ComfyNode]] = [DiffIERGuider, KSamplerDiffIER, DiffIERCFGGuider, DiffIERLabelGrid, *DEMO_NODES,
                                   *DEMO_SR_NODES]


class DiffIERExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
