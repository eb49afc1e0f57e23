"""pytest bootstrap: run the pack inside a real, in-process ComfyUI.

Importing this module (pytest does it before collecting tests):

* provisions ComfyUI via ``scripts/comfyui_runtime.py`` (cached, see that file);
* puts the ComfyUI root first on ``sys.path`` and removes the repository root from it
  (ComfyUI's top-level ``nodes`` module must never be shadowed by the pack's ``nodes/``);
* parses ComfyUI's CLI args as ``main.py`` would, with ``--cpu`` (unless ``DIFFIER_TEST_GPU=1``).

Fixtures (all session scoped except where noted):

``comfy_root`` -> pathlib.Path
    Root of the ComfyUI tree in use.
``comfy_loop`` -> asyncio.AbstractEventLoop
    The event loop ComfyUI's nodes are initialised and executed on.
``comfy_nodes`` -> module
    ComfyUI's top-level ``nodes`` module after ``init_extra_nodes`` (built-in ``comfy_extras``
    nodes, no API nodes, no other custom nodes) and after loading this pack through
    ``nodes.load_custom_node`` exactly like ComfyUI does.
``pack_module`` -> module
    The pack's package module as ComfyUI imported it.
``run_node`` -> callable ``run_node(node_id, /, **inputs) -> tuple``
    Execute ``NODE_CLASS_MAPPINGS[node_id]`` the way ComfyUI's executor does (V1 and V3 nodes).
    Each output is unwrapped to a single value; outputs flagged in ``OUTPUT_IS_LIST`` stay lists.
    ``run_node.with_ui(node_id, **inputs) -> (outputs, ui_dict)`` also returns the UI payload.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent
ARTIFACTS_DIR = TESTS_DIR / "artifacts"



def _load_runtime_module():
    # Loaded by file path: the repository root must not be importable (see module docstring).
    name = "_diffier_comfyui_runtime"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / "comfyui_runtime.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _bootstrap_comfy() -> Path:
    runtime = _load_runtime_module()
    root = runtime.ensure_comfyui()

    repo = str(REPO_ROOT)
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != repo]
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))

    shadow = sys.modules.get("nodes")
    if shadow is not None and Path(getattr(shadow, "__file__", "") or "").resolve().parent != root:
        raise RuntimeError(f"a foreign 'nodes' module was imported before ComfyUI: {shadow!r}")

    import comfy.options

    comfy.options.enable_args_parsing()
    saved_argv = sys.argv
    sys.argv = [saved_argv[0]] + ([] if os.environ.get("DIFFIER_TEST_GPU") == "1" else ["--cpu"])
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


COMFY_ROOT = _bootstrap_comfy()


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs a real ComfyUI runtime (auto-provisioned)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(session, config, items):
    # The repository root has an __init__.py (it is the pack), so pytest collects it as a Package
    # whose setup() imports that __init__.py as a top-level module "main" and prepends the repo's
    # parent to sys.path.  The pack must only ever be imported through ComfyUI's loader.
    for item in items:
        for node in item.listchain():
            if isinstance(node, pytest.Package) and Path(node.path).resolve() == REPO_ROOT:
                node.setup = lambda: None


def _pack_path(root: Path) -> Path:
    path = _load_runtime_module().pack_path(root)
    if path is None:
        raise RuntimeError(f"ComfyUI-DiffIER is not installed in {root / 'custom_nodes'}")
    return path


@pytest.fixture(scope="session", autouse=True)
def _release_comfy_models():
    """Free models while modules still exist: ModelPatcher.__del__ fails during interpreter teardown."""
    yield
    import gc

    mm = sys.modules.get("comfy.model_management")
    if mm is not None:
        mm.unload_all_models()
    gc.collect()
    # Patchers still referenced from module globals die at interpreter exit, after the modules
    # their __del__ needs are gone; nothing useful is left to release by then.
    mp = sys.modules.get("comfy.model_patcher")
    if mp is not None:
        mp.ModelPatcher.__del__ = lambda self: None


@pytest.fixture(scope="session")
def comfy_root() -> Path:
    return COMFY_ROOT


@pytest.fixture(scope="session")
def comfy_loop():
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture(scope="session")
def comfy_nodes(comfy_root, comfy_loop):
    """ComfyUI's ``nodes`` module with built-in extras and this pack registered (as main.py does)."""
    # main.py's order: execution and server are imported before nodes.
    execution, server, nodes, hook_breaker_ac10a0 = (
        importlib.import_module(m) for m in ("execution", "server", "nodes", "hook_breaker_ac10a0")
    )

    if getattr(server.PromptServer, "instance", None) is None:
        # main.py creates the server before loading nodes; packs may use PromptServer.instance.
        server.PromptServer(comfy_loop)

    hook_breaker_ac10a0.save_functions()
    try:
        comfy_loop.run_until_complete(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        pack = _pack_path(comfy_root)
        loaded = comfy_loop.run_until_complete(nodes.load_custom_node(str(pack)))
    finally:
        hook_breaker_ac10a0.restore_functions()
    assert loaded is True, f"ComfyUI failed to load the pack from {pack} (see the log above)"
    return nodes


@pytest.fixture(scope="session")
def pack_module(comfy_nodes, comfy_root):
    # load_custom_node registers the package under its path with dots replaced (nodes.py).
    return sys.modules[str(_pack_path(comfy_root)).replace(".", "_x_")]


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


@pytest.fixture(scope="session")
def run_node(comfy_nodes, comfy_loop) -> NodeRunner:
    return NodeRunner(comfy_nodes, comfy_loop)


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR
