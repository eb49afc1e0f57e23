"""pytest bootstrap: the pack inside a real, in-process ComfyUI (see scripts/comfy_inprocess.py), booted only for the
tests that need it.

Importing this module boots nothing: it makes the repository's tooling rooms importable by name (``pack_loader``).
ComfyUI is provisioned, made importable (never the repository root: ComfyUI's top-level ``nodes`` must not be
shadowed by the pack's ``nodes/``) and its CLI args parsed with ``--cpu`` (unless ``DIFFIER_TEST_GPU=1``) once per
session, by whichever comes first: the ``comfy_root`` fixture, which every ComfyUI fixture depends on, or the
collection of a test module marked ``integration`` (its module-level ``pytestmark``; such modules import ComfyUI or
the tiny models when they are imported, and ``integration`` is the mark of a test that needs ComfyUI).

``--without-comfyui`` (``make test-fast``) runs what needs no ComfyUI: modules marked ``integration`` are not
collected, tests marked ``integration`` are deselected, a ComfyUI fixture fails the test that asks for it, and the
session fails if anything imported ComfyUI.

Fixtures (session scoped unless noted):

``comfy_root`` -> pathlib.Path: root of the ComfyUI tree in use (boots ComfyUI).
``comfy_loop`` -> asyncio loop the nodes are initialised and executed on.
``comfy_nodes`` -> ComfyUI's ``nodes`` module after ``init_extra_nodes`` (built-in extras, no API
    nodes) and after loading this pack through ``nodes.load_custom_node`` exactly as ComfyUI does.
``pack_module`` -> the pack's package as ComfyUI imported it.
``run_node`` -> ``run_node(node_id, /, **inputs) -> tuple`` executes a node through ComfyUI's
    executor code; ``run_node.with_ui(...)`` also returns the UI payload.
``artifacts_dir`` (function) -> ``tests/artifacts/``.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import sys
from pathlib import Path

import pack_loader  # noqa: F401  (first: the repository's tooling rooms import by name from here on)
import pytest

from scripts import comfy_inprocess as inprocess

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
WITHOUT_COMFYUI = "--without-comfyui"
#: ComfyUI's top-level packages: none of them may be imported in a run without ComfyUI
COMFY_PACKAGES = ("comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths")


@functools.cache
def boot_comfyui() -> Path:
    """Provision and boot ComfyUI in this process, once; its root."""
    return inprocess.bootstrap()


@functools.cache
def marked_integration(path: Path) -> bool:
    """Whether the test module at ``path`` sets a module-level ``pytestmark`` that includes ``integration``."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return any(isinstance(n, ast.Attribute) and n.attr == "integration" for n in ast.walk(node.value))
    return False


def _test_module(path: Path) -> bool:
    return path.suffix == ".py" and path.name.startswith("test_")


def pytest_addoption(parser):
    parser.addoption(WITHOUT_COMFYUI, action="store_true",
                     help="run only the tests that need no ComfyUI (no provisioning, nothing of ComfyUI imported)")


def pytest_ignore_collect(collection_path, config):
    if config.getoption(WITHOUT_COMFYUI) and _test_module(collection_path) and marked_integration(collection_path):
        return True
    return None


def pytest_collectstart(collector):
    path = getattr(collector, "path", None)
    if (isinstance(collector, pytest.Module) and _test_module(path) and marked_integration(path)
            and not collector.config.getoption(WITHOUT_COMFYUI)):
        boot_comfyui()   # before the module is imported: it imports ComfyUI


def pytest_collection_modifyitems(session, config, items):
    # The repository root has an __init__.py (it is the pack), so pytest collects it as a Package
    # whose setup() imports that __init__.py as a top-level module and prepends the repo's parent
    # to sys.path. The pack must only ever be imported through ComfyUI's loader (or pack_loader).
    for item in items:
        for node in item.listchain():
            if isinstance(node, pytest.Package) and Path(node.path).resolve() == REPO_ROOT:
                node.setup = lambda: None
    if config.getoption(WITHOUT_COMFYUI):
        needing = [item for item in items if item.get_closest_marker("integration") is not None]
        if needing:
            config.hook.pytest_deselected(items=needing)
            items[:] = [item for item in items if item.get_closest_marker("integration") is None]


def pytest_sessionfinish(session, exitstatus):
    if session.config.getoption(WITHOUT_COMFYUI):
        imported = sorted(name for name in sys.modules if name.split(".")[0] in COMFY_PACKAGES)
        if imported:
            session.config.get_terminal_writer().line(
                f"{WITHOUT_COMFYUI}: ComfyUI was imported ({', '.join(imported[:8])}, ...): mark the tests that "
                f"need it integration", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def _release_comfy_models():
    yield
    inprocess.release_models()


@pytest.fixture(scope="session")
def comfy_root(pytestconfig) -> Path:
    if pytestconfig.getoption(WITHOUT_COMFYUI):
        pytest.fail(f"this test needs ComfyUI but the run is {WITHOUT_COMFYUI}: mark it integration", pytrace=False)
    return boot_comfyui()


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
