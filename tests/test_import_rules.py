"""The rooms' import rules (README "Architecture"), checked on the source of every Python file.

* ``diffier_core/`` imports nothing from ComfyUI and nothing else of the pack.
* Product code (``__init__.py``, ``nodes/``, ``demo/``, ``diffier_core/``) never imports the tooling
  (``benchmarks``, ``scripts``, ``tests``, ``workflows``), and reaches the rest of the pack only by relative
  imports (ComfyUI has its own top-level ``nodes`` module).
* ``nodes/`` never imports ``demo/``; ``demo/`` uses ``nodes/`` only through its ComfyUI adapter.
* ComfyUI is imported only where :data:`COMFY_IMPORTERS` says (the adapter owns the nodes' touch points).
* The tooling (``benchmarks``, ``scripts``, ``training``, ``workflows``) never imports the tests, and reaches the
  pack only as ComfyUI loads it (never ``import diffier_core`` or ``import demo`` from the repository root).

Every ``import``/``from`` statement counts, also those inside functions, and so does
``importlib.import_module("<literal>")``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PRODUCT_ROOMS = ("diffier_core", "nodes", "demo")
TOOLING = ("benchmarks", "scripts", "tests", "training", "workflows")
#: top-level modules of a ComfyUI tree (``nodes`` there is ComfyUI's, never this pack's)
COMFY_MODULES = frozenset({"comfy", "comfy_api", "comfy_extras", "comfy_execution", "comfy_config", "folder_paths",
                           "nodes", "server", "execution", "node_helpers", "latent_preview", "comfyui_version",
                           "app", "utils", "main"})
#: product files that may import ComfyUI: the adapter, and the demo's model builder (it builds ComfyUI models)
COMFY_IMPORTERS = ("nodes/comfy_adapter.py", "demo/models.py")
#: the pack's rooms that the tooling never imports by name (ComfyUI's own top-level ``nodes`` shares the name of
#: the pack's ``nodes``, so only these two are recognisable)
PACK_ROOMS_BY_NAME = ("diffier_core", "demo")
#: pack-internal imports each product room may make (a target is a room or one module of a room)
ALLOWED_INTERNAL: dict[str, tuple[str, ...]] = {
    "__init__": ("nodes", "demo"),
    "diffier_core": ("diffier_core",),
    "nodes": ("nodes", "diffier_core"),
    "demo": ("demo", "diffier_core", "nodes.comfy_adapter"),
}


def room_of(rel: Path) -> str:
    """``__init__`` for the pack's entry file, else the first folder of the path."""
    return "__init__" if rel.parts == ("__init__.py",) else rel.parts[0]


def _imports(tree: ast.AST, rel: Path) -> Iterator[tuple[int, str, bool]]:
    """``(line, dotted module, relative?)`` of every import in a file at ``rel`` (relative ones resolved)."""
    package = list(rel.parent.parts)  # a module's package; a package's __init__ is in its own package
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, False
        elif isinstance(node, ast.ImportFrom):
            up = node.level - 1
            if up > len(package):
                yield node.lineno, "<beyond the pack root>", True
                continue
            here = package[:len(package) - up] if node.level else []
            base = [*here, *([node.module] if node.module else [])]
            for alias in node.names:  # a name may be a submodule: ``from ..nodes import comfy_adapter``
                yield node.lineno, ".".join([*base, *([] if alias.name == "*" else [alias.name])]), node.level > 0
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and not node.args[0].value.startswith(".")):
            yield node.lineno, node.args[0].value, False


def _within(target: str, allowed: tuple[str, ...]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def violations(source: str, rel: Path) -> list[str]:
    """The import rules broken by one file's ``source`` (``rel``: its path from the repository root)."""
    room, where, found = room_of(rel), rel.as_posix(), []
    for line, target, relative in _imports(ast.parse(source), rel):
        top = target.split(".")[0]
        at = f"{where}:{line} imports {target}"
        if room in TOOLING:
            if room != "tests" and top == "tests":
                found.append(f"{at}: the tooling never imports the tests")
            elif top in PACK_ROOMS_BY_NAME and not relative:
                found.append(f"{at}: the tooling loads the pack as ComfyUI loads it, never by name")
            continue
        if not relative:
            if top in COMFY_MODULES and where not in COMFY_IMPORTERS:
                found.append(f"{at}: only {', '.join(COMFY_IMPORTERS)} import ComfyUI")
            elif top in (*TOOLING, *PACK_ROOMS_BY_NAME):
                found.append(f"{at}: product code imports the pack only relatively and never the tooling")
            continue
        if target == "<beyond the pack root>" or not _within(target, ALLOWED_INTERNAL.get(room, ())):
            found.append(f"{at}: {room} may import only {', '.join(ALLOWED_INTERNAL.get(room, ())) or 'nothing'}")
    return found


def python_files() -> list[Path]:
    skip = {".venv", ".cache", ".git", "artifacts", "__pycache__"}
    return sorted(p.relative_to(REPO) for p in REPO.rglob("*.py") if not skip & set(p.relative_to(REPO).parts))


def test_every_file_keeps_the_import_rules():
    files = python_files()
    rooms = {room_of(p) for p in files}
    assert {"__init__", "diffier_core", "nodes", "demo", "benchmarks", "training", "tests"} <= rooms, rooms
    broken = [v for p in files for v in violations((REPO / p).read_text(encoding="utf-8"), p)]
    assert not broken, "\n".join(broken)


def test_every_product_folder_is_a_known_room():
    """A new top-level folder of Python code must be given rules here before it can land."""
    unknown = {room_of(p) for p in python_files()} - set(ALLOWED_INTERNAL) - set(TOOLING)
    assert not unknown, f"folders without import rules: {sorted(unknown)} (add them to ALLOWED_INTERNAL or TOOLING)"


@pytest.mark.parametrize(("rel", "source", "expected"), [
    ("diffier_core/x.py", "import comfy.samplers\n", "only nodes/comfy_adapter.py"),
    ("diffier_core/x.py", "def f():\n    from ..nodes import common\n", "diffier_core may import only diffier_core"),
    ("diffier_core/x.py", "import importlib\nimportlib.import_module('comfy.model_management')\n", "import ComfyUI"),
    ("nodes/x.py", "from ..demo import DEMO_NODES\n", "nodes may import only nodes, diffier_core"),
    ("nodes/x.py", "from ..benchmarks import tuning\n", "nodes may import only"),
    ("nodes/x.py", "import benchmarks.tuning\n", "never the tooling"),
    ("nodes/x.py", "from comfy_api.latest import io\n", "import ComfyUI"),
    ("nodes/x.py", "import nodes\n", "import ComfyUI"),
    ("nodes/x.py", "from diffier_core import DiffIERSettings\n", "only relatively"),
    ("demo/x.py", "from ..nodes.common import diffier_inputs\n", "demo may import only"),
    ("demo/x.py", "from ...outside import y\n", "may import only"),
    ("__init__.py", "from .benchmarks import tuned\n", "__init__ may import only nodes, demo"),
    ("benchmarks/x.py", "from tests import pack_loader\n", "never imports the tests"),
    ("demo/models.py", "from scripts import comfy_inprocess\n", "never the tooling"),
    ("nodes/x.py", "import training.loop\n", "never the tooling"),
    ("demo/x.py", "from training.data import digits\n", "never the tooling"),
    ("training/x.py", "from demo import models\n", "never by name"),
    ("benchmarks/x.py", "import diffier_core\n", "never by name"),
])
def test_a_broken_rule_is_reported(rel, source, expected):
    found = violations(source, Path(rel))
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(("rel", "source"), [
    ("diffier_core/x.py", "import torch\nfrom .config import DiffIERSettings\nfrom . import presets\n"),
    ("nodes/x.py", "from ..diffier_core import DiffIERSettings\nfrom .comfy_adapter import io\n"),
    ("demo/x.py", "from ..nodes.comfy_adapter import io\nfrom ..nodes import comfy_adapter\nfrom .models import a\n"),
    ("demo/models.py", "import comfy.model_base\n"),
    ("training/loop.py", "def f():\n    from scripts import comfy_inprocess\n"),
    ("training/train_sr.py", "from . import loop\nfrom .data import sr\n"),
    ("nodes/label_grid.py", "from .grid_drawing import label_grid\n"),
    ("nodes/comfy_adapter.py", "from comfy_api.latest import io\n"),
    ("__init__.py", "def f():\n    from .nodes import NODES\n    from .demo import DEMO_NODES\n"),
    ("benchmarks/x.py", "from benchmarks import tuning\nimport comfy.samplers\n"),
])
def test_an_allowed_import_passes(rel, source):
    assert violations(source, Path(rel)) == []
