"""pytest bootstrap: run the pack inside a real, in-process ComfyUI (see scripts/comfy_inprocess.py).

Importing this module provisions ComfyUI, makes it importable (never the repository root: ComfyUI's
top-level ``nodes`` must not be shadowed by the pack's ``nodes/``) and parses its CLI args with
``--cpu`` (unless ``DIFFIER_TEST_GPU=1``).

Fixtures (session scoped unless noted):

``comfy_root`` -> pathlib.Path: root of the ComfyUI tree in use.
``comfy_loop`` -> asyncio loop the nodes are initialised and executed on.
``comfy_nodes`` -> ComfyUI's ``nodes`` module after ``init_extra_nodes`` (built-in extras, no API
    nodes) and after loading this pack through ``nodes.load_custom_node`` exactly as ComfyUI does.
``pack_module`` -> the pack's package as ComfyUI imported it.
``run_node`` -> ``run_node(node_id, /, **inputs) -> tuple`` executes a node through ComfyUI's
    executor code; ``run_node.with_ui(...)`` also returns the UI payload.
``artifacts_dir`` (function) -> ``tests/artifacts/``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pack_loader  # noqa: F401  (first: the repository's tooling rooms import by name from here on)
import pytest

from scripts import comfy_inprocess as inprocess

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


COMFY_ROOT = inprocess.bootstrap()


def pytest_collection_modifyitems(session, config, items):
    # The repository root has an __init__.py (it is the pack), so pytest collects it as a Package
    # whose setup() imports that __init__.py as a top-level module and prepends the repo's parent
    # to sys.path. The pack must only ever be imported through ComfyUI's loader (or pack_loader).
    for item in items:
        for node in item.listchain():
            if isinstance(node, pytest.Package) and Path(node.path).resolve() == REPO_ROOT:
                node.setup = lambda: None


@pytest.fixture(scope="session", autouse=True)
def _release_comfy_models():
    yield
    inprocess.release_models()


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
    return inprocess.load_nodes(comfy_root, comfy_loop)


@pytest.fixture(scope="session")
def pack_module(comfy_nodes, comfy_root):
    return inprocess.pack_module(comfy_root)


@pytest.fixture(scope="session")
def run_node(comfy_nodes, comfy_loop):
    return inprocess.NodeRunner(comfy_nodes, comfy_loop)


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR
