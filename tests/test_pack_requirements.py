"""What ComfyUI loads needs nothing beyond ComfyUI's own requirements.

A fresh process boots ComfyUI 0.3.75 with its built-in nodes, then loads the pack through ComfyUI's own custom-node
loader. Every module that loading the pack brings in must be the pack's, ComfyUI's, the standard library's, or come
from a distribution that ``requirements-serve.txt`` (torch and ComfyUI's own requirements, what ``make serve``
installs) pins or that one of those depends on. The training and benchmark stacks (scikit-image, scikit-learn,
mlxtend, matplotlib, prdc, torchmetrics) are named explicitly as well.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLING_ONLY = ("skimage", "sklearn", "mlxtend", "matplotlib", "prdc", "torchmetrics")

_LOAD_PACK = """
import asyncio, importlib, json, sys
from scripts import comfy_inprocess as ci
root = ci.bootstrap()
loop = asyncio.new_event_loop(); asyncio.set_event_loop(loop)
execution, server, nodes = (importlib.import_module(m) for m in ("execution", "server", "nodes"))
server.PromptServer(loop)
loop.run_until_complete(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
before = set(sys.modules)
assert loop.run_until_complete(nodes.load_custom_node(str(ci.pack_path(root)))) is True
assert "DiffIERGuider" in nodes.NODE_CLASS_MAPPINGS and "DiffIERDemoModelLoader" in nodes.NODE_CLASS_MAPPINGS
new = {name: getattr(sys.modules[name], "__file__", None) for name in set(sys.modules) - before}
print("RESULT " + json.dumps({"root": str(root), "pack": str(ci.pack_path(root)), "modules": new}))
"""


def _serve_distributions() -> set[str]:
    """The distributions requirements-serve.txt pins, and everything they depend on (markers of this Python)."""
    pinned = [line.split("#")[0].strip() for line in (REPO_ROOT / "requirements-serve.txt").read_text().splitlines()]
    todo = [Requirement(line).name for line in pinned if line and not line.startswith("-")]
    seen: set[str] = set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _distributions_of(top: str) -> set[str]:
    return {canonicalize_name(d) for d in importlib.metadata.packages_distributions().get(top, [])}


@pytest.fixture(scope="module")
def loaded() -> dict:
    done = subprocess.run([sys.executable, "-c", _LOAD_PACK], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.rsplit("RESULT ", 1)[1])


def test_loading_the_pack_imports_only_comfyui_requirements(loaded):
    allowed = _serve_distributions()
    roots = (str(Path(loaded["pack"]).resolve()), str(Path(loaded["root"]).resolve()))
    outside = {}
    for name, file in loaded["modules"].items():
        top = name.split(".")[0]
        inside = file is not None and str(Path(file).resolve()).startswith(roots)
        if inside or top in sys.stdlib_module_names:
            continue
        dists = _distributions_of(top)
        if not dists & allowed:
            outside[name] = sorted(dists) or file
    assert not outside, f"loading the pack imports modules beyond ComfyUI's requirements: {outside}"


def test_the_tooling_stacks_stay_out(loaded):
    tops = {name.split(".")[0] for name in loaded["modules"]}
    assert not tops & set(TOOLING_ONLY), sorted(tops & set(TOOLING_ONLY))
    package = loaded["pack"].replace(".", "_x_")     # the module name ComfyUI's loader gives the pack
    pack_modules = [name for name in loaded["modules"] if name.startswith(package)]
    assert any(name.endswith(".demo.nodes") for name in pack_modules), pack_modules   # the demo loaded, too
    assert not any(".training" in name or name.endswith(".demo.data") for name in pack_modules), pack_modules
