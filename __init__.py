"""ComfyUI-DiffIER: DiffIER (Chen, Ding, Xue 2025) as ComfyUI nodes. ComfyUI entry point only."""


async def comfy_entrypoint():
    """V3 entry point ComfyUI calls on load; imports the nodes lazily so ``diffier_core`` stays comfy-free."""
    from .nodes import DiffIERExtension

    return DiffIERExtension()
