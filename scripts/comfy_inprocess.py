"""A real ComfyUI inside this Python process, for tests and benchmarks.

``bootstrap()`` provisions ComfyUI (``scripts/comfyui_runtime.py``), puts it first on ``sys.path``,
removes the repository root from it (ComfyUI's top-level ``nodes`` must never be shadowed by the
pack's ``nodes/``; the tooling rooms stay importable by name, ``scripts/file_loader.py``) and parses
ComfyUI's CLI args as ``main.py`` would, with ``--cpu`` unless ``DIFFIER_TEST_GPU=1``.
``load_nodes()`` registers the built-in extras and loads this pack through ComfyUI's own custom-node
loader. ``NodeRunner`` executes nodes through ComfyUI's executor code.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from pathlib import Path

from . import comfyui_runtime, file_loader

REPO_ROOT = file_loader.REPO_ROOT

__all__ = ["REPO_ROOT", "bootstrap", "load_nodes", "pack_path", "pack_module", "release_models", "NodeRunner",
           "session"]


def bootstrap(extra_args: tuple[str, ...] = ()) -> Path:
    """Make ComfyUI importable in-process (idempotent); returns its root.

    Args:
        extra_args: more of ComfyUI's CLI arguments (e.g. ``--front-end-root DIR``), parsed with the first boot.
    """
    root = comfyui_runtime.ensure_comfyui()

    file_loader.use_rooms()
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))

    shadow = sys.modules.get("nodes")
    if shadow is not None and Path(getattr(shadow, "__file__", "") or "").resolve().parent != root:
        raise RuntimeError(f"a foreign 'nodes' module was imported before ComfyUI: {shadow!r}")

    import comfy.options

    comfy.options.enable_args_parsing()
    saved_argv = sys.argv
    sys.argv = [saved_argv[0]] + ([] if os.environ.get("DIFFIER_TEST_GPU") == "1" else ["--cpu"]) + list(extra_args)
    try:
        import comfy.cli_args  # noqa: F401  (parses sys.argv at import time)
    finally:
        sys.argv = saved_argv

    # Same import order as main.py.  This matters: nodes.py prepends <ComfyUI>/comfy to sys.path,
    # after which a first "import utils" would find comfy/utils.py instead of ComfyUI's utils/
    # package (server.py -> app.frontend_management needs utils.install_util).
    for name in ("folder_paths", "utils.extra_config", "comfy.utils"):
        importlib.import_module(name)  # explicit loop: order matters, keep isort away from it

    sys.modules["comfy.utils"].PROGRESS_BAR_ENABLED = False

    # Tiny models: one intra-op thread is as fast and far more robust on a busy 2-core box
    # (OpenMP barriers under CPU contention made single convs 100x slower).
    import torch

    torch.set_num_threads(int(os.environ.get("DIFFIER_TEST_THREADS", "1")))
    return root



def pack_path(root: Path) -> Path:
    path = comfyui_runtime.pack_path(root)
    if path is None:
        raise RuntimeError(f"ComfyUI-DiffIER is not installed in {root / 'custom_nodes'}")
    return path


def load_nodes(root: Path, loop: asyncio.AbstractEventLoop):
    """ComfyUI's ``nodes`` module with built-in extras and this pack registered (as main.py does)."""
    # main.py's order: execution and server are imported before nodes.
    execution, server, nodes, hook_breaker_ac10a0 = (
        importlib.import_module(m) for m in ("execution", "server", "nodes", "hook_breaker_ac10a0")
    )
    if "DiffIERGuider" in nodes.NODE_CLASS_MAPPINGS:
        return nodes
    if getattr(server.PromptServer, "instance", None) is None:
        # main.py creates the server before loading nodes; packs may use PromptServer.instance.
        server.PromptServer(loop)

    hook_breaker_ac10a0.save_functions()
    try:
        loop.run_until_complete(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        pack = pack_path(root)
        loaded = loop.run_until_complete(nodes.load_custom_node(str(pack)))
    finally:
        hook_breaker_ac10a0.restore_functions()
    if loaded is not True:
        raise RuntimeError(f"ComfyUI failed to load the pack from {pack} (see the log above)")
    return nodes


def pack_module(root: Path):
    """The pack's package as ComfyUI imported it (module name: its path with dots replaced)."""
    return sys.modules[str(pack_path(root)).replace(".", "_x_")]


def release_models() -> None:
    """Free models while modules still exist: ModelPatcher.__del__ fails during interpreter teardown."""
    import gc

    mm = sys.modules.get("comfy.model_management")
    if mm is not None:
        mm.unload_all_models()
    gc.collect()
    mp = sys.modules.get("comfy.model_patcher")
    if mp is not None:
        mp.ModelPatcher.__del__ = lambda self: None


class NodeRunner:
    """Run ComfyUI nodes by id through ``execution.get_output_data`` (ComfyUI's own executor code)."""

    def __init__(self, nodes_module, loop):
        self.nodes = nodes_module
        self.loop = loop
        self._counter = 0

    def __call__(self, node_id: str, /, **inputs) -> tuple:
        return self.with_ui(node_id, **inputs)[0]

    def with_ui(self, node_id: str, /, **inputs) -> tuple[tuple, dict]:
        return self.loop.run_until_complete(self._run(node_id, inputs))

    async def _run(self, node_id: str, inputs: dict) -> tuple[tuple, dict]:
        import execution
        from comfy_api.internal import _ComfyNodeInternal
        from comfy_api.latest import io

        class_def = self.nodes.NODE_CLASS_MAPPINGS[node_id]
        self._counter += 1
        unique_id = f"test-{self._counter}"
        hidden = {}
        if issubclass(class_def, _ComfyNodeInternal):
            _, schema = class_def.INPUT_TYPES(include_hidden=False, return_schema=True)
            for h in schema.hidden or []:
                hidden[h] = {io.Hidden.unique_id: unique_id, io.Hidden.prompt: {}}.get(h)
        else:
            for name, kind in class_def.INPUT_TYPES().get("hidden", {}).items():
                if name not in inputs:
                    inputs[name] = {"UNIQUE_ID": unique_id, "PROMPT": {}}.get(kind)

        as_list = getattr(class_def, "INPUT_IS_LIST", False)  # then the caller passes lists already
        input_data_all = {k: v if as_list else [v] for k, v in inputs.items()}
        obj = class_def()
        output, ui, has_subgraph, pending = await execution.get_output_data(
            "test-prompt", unique_id, obj, input_data_all, hidden_inputs=hidden
        )
        if pending:
            results = await execution.resolve_map_node_over_list_results(output)
            output, ui, has_subgraph = execution.get_output_from_returns(results, obj)
        if has_subgraph:
            raise NotImplementedError(f"{node_id} expanded into a subgraph; run_node cannot execute that")
        is_list = getattr(class_def, "OUTPUT_IS_LIST", None) or [False] * len(output)
        values = tuple(o if lst else o[0] for o, lst in zip(output, is_list, strict=False))
        return values, ui



def session(extra_args: tuple[str, ...] = ()):
    """``(root, nodes, run_node, pack)`` for scripts: bootstrap (with ``extra_args``), load nodes, make a runner."""
    root = bootstrap(extra_args)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    nodes = load_nodes(root, loop)
    return root, nodes, NodeRunner(nodes, loop), pack_module(root)
