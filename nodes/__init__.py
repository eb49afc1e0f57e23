"""ComfyUI nodes of the pack: thin V3 node classes; the math lives in ``diffier_core``.

``NODES`` are the DiffIER nodes (the demo's are in ``demo``); :class:`DiffIERExtension` registers a node list.
"""

from __future__ import annotations

from collections.abc import Iterable

from typing_extensions import override

from .cfg_guider import DiffIERCFGGuider
from .comfy_adapter import ComfyExtension, io
from .guider import DiffIERGuider
from .ksampler import KSamplerDiffIER
from .label_grid import DiffIERLabelGrid

NODES: list[type[io.ComfyNode]] = [DiffIERGuider, KSamplerDiffIER, DiffIERCFGGuider, DiffIERLabelGrid]


class DiffIERExtension(ComfyExtension):
    """The V3 extension ComfyUI loads: registers ``node_list``.

    Args:
        node_list: the node classes, in registration order.
    """

    def __init__(self, node_list: Iterable[type[io.ComfyNode]]) -> None:
        self.node_list = list(node_list)

    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(self.node_list)
