"""ComfyUI-DiffIER: DiffIER (Chen, Ding, Xue 2025) as ComfyUI nodes. ComfyUI entry point only."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .nodes import DiffIERExtension


async def comfy_entrypoint() -> DiffIERExtension:
    """V3 entry point ComfyUI calls on load: the DiffIER nodes, then the demo's. Imported lazily so that
    ``diffier_core`` stays importable without ComfyUI."""
    from .demo.nodes import DEMO_NODES
    from .nodes import NODES, DiffIERExtension

    return DiffIERExtension([*NODES, *DEMO_NODES])
