"""The rooms' import rules (docs/ARCHITECTURE.md), checked on the source of every Python file.

* ``diffier_core/`` imports nothing from ComfyUI and nothing else of the pack.
* Product code (``__init__.py``, ``nodes/``, ``demo/``, ``diffier_core/``) never imports the tooling
  (``benchmarks``, ``scripts``, ``sweep``, ``tests``, ``training``, ``workflows``), and reaches the rest of the pack
  only by relative imports (ComfyUI has its own top-level ``nodes`` module).
* ``nodes/`` never imports ``demo/``; ``demo/`` uses ``nodes/`` only through its ComfyUI adapter.
* ComfyUI is imported only where :data:`COMFY_IMPORTERS` says (the adapter owns the nodes' touch points).
* The tooling (``benchmarks``, ``scripts``, ``sweep``, ``training``, ``workflows``) never imports the tests, reaches
  the pack only as ComfyUI loads it (never ``import diffier_core`` or ``import demo`` from the repository root, never
  a pack file by its path), and imports only the tooling rooms :data:`ALLOWED_TOOLING` gives it (``scripts`` imports
  no other room, so every room may import it).
* Nothing puts the repository root on ``sys.path``.

Every ``import``/``from`` statement counts, also those inside functions, and so do
``importlib.import_module("<literal>")``, the file-path loads of ``scripts/file_loader.py`` (``import_file(name,
path)``, ``import_folder(name, folder)``: the path expression is evaluated, e.g. ``REPO / "tests" / "x.py"`` with
``REPO = Path(__file__).resolve().parent.parent``, and counts as an import of the module there) and
``sys.path.insert``/``append`` of a repository folder (counts as an import of that folder; a bare ``import x`` of a
module that only ``tests/`` has is an import of the tests). A loader's path must be readable that way; a ``sys.path``
entry that is not (ComfyUI's tree) is not checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PRODUCT_ROOMS = ("diffier_core", "nodes", "demo")
TOOLING = ("benchmarks", "scripts", "sweep", "tests", "training", "workflows")
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
#: the tooling rooms each tooling room may import (itself included; ``tests`` may import everything)
ALLOWED_TOOLING: dict[str, tuple[str, ...]] = {
    "scripts": ("scripts",),
    "training": ("training", "scripts"),
    "benchmarks": ("benchmarks", "training", "scripts"),
    "sweep": ("sweep", "benchmarks", "scripts"),
    "workflows": ("workflows", "scripts"),
}
#: ``scripts/file_loader.py``'s loaders: ``(name, path)``, the path their second argument
LOADERS = ("import_file", "import_folder")
UNREADABLE = "<a path the rules cannot read>"
PACK_ROOT = "<the repository root>"


@dataclass(frozen=True)
class Import:
    """One import of a file: its line, the dotted module (relative ones resolved), and how it is made."""

    line: int
    target: str
    relative: bool = False
    by_path: bool = False      # a file-path load or a sys.path entry
    on_sys_path: bool = False


def room_of(rel: Path) -> str:
    """``__init__`` for the pack's entry file, else the first folder of the path."""
    return "__init__" if rel.parts == ("__init__.py",) else rel.parts[0]


def _path_value(node: ast.AST, here: Path, names: dict[str, Path]) -> Path | None:
    """The path an expression names, for the forms path code is written in: ``Path(__file__)``, ``.resolve()``,
    ``.parent``, ``.parents[i]``, ``/ "literal"``, names bound to such expressions, ``str(...)``, and a string literal
    (relative to the repository root, ``here``'s anchor in ``names``); None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return names[PACK_ROOT] / node.value
    if isinstance(node, ast.Name):
        return here if node.id == "__file__" else names.get(node.id)
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        base = _path_value(node.value, here, names)
        return None if base is None else base.parent
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)):
        base = _path_value(node.value.value, here, names)
        return None if base is None else base.parents[node.slice.value]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left, right = _path_value(node.left, here, names), node.right
        if left is None or not (isinstance(right, ast.Constant) and isinstance(right.value, str)):
            return None
        return left / right.value
    if isinstance(node, ast.Call) and len(node.args) <= 1 and not node.keywords:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("resolve", "absolute") and not node.args:
            return _path_value(func.value, here, names)
        if isinstance(func, ast.Name | ast.Attribute) and node.args and (
                getattr(func, "id", None) in ("Path", "str") or getattr(func, "attr", None) == "Path"):
            return _path_value(node.args[0], here, names)
    return None


def _module_names(tree: ast.Module, here: Path, root: Path) -> dict[str, Path]:
    """The module-level names bound to a path (``REPO = Path(__file__).resolve().parent.parent``)."""
    names: dict[str, Path] = {PACK_ROOT: root}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(
            node, "target", None)
        if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
            value = _path_value(node.value, here, names)
            if value is not None:
                names[target.id] = value
    return names


def _module_at(path: Path | None, root: Path) -> str:
    """The dotted module a repository path is (a folder: its package; the root: :data:`PACK_ROOT`)."""
    if path is None:
        return UNREADABLE
    try:
        parts = list(path.relative_to(root).parts)
    except ValueError:
        return UNREADABLE
    if parts and parts[-1].endswith(".py"):
        parts[-1] = parts[-1][:-3]
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or PACK_ROOT


def _path_argument(call: ast.Call) -> ast.AST | None:
    """The path argument of a loader call or of ``sys.path.insert(i, p)`` / ``sys.path.append(p)``."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name in LOADERS:
        keyword = [k.value for k in call.keywords if k.arg in ("path", "folder")]
        return call.args[1] if len(call.args) > 1 else (keyword[0] if keyword else None)
    on_sys_path = (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute)
                   and func.value.attr == "path" and isinstance(func.value.value, ast.Name)
                   and func.value.value.id == "sys")
    if on_sys_path and name in ("insert", "append") and call.args:
        return call.args[-1]
    return None


def _imports(tree: ast.Module, rel: Path, root: Path = REPO) -> Iterator[Import]:
    """Every import of the file at ``rel`` (in the tree at ``root``), by statement, by name or by path."""
    package = list(rel.parent.parts)  # a module's package; a package's __init__ is in its own package
    names = _module_names(tree, root / rel, root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            up = node.level - 1
            if up > len(package):
                yield Import(node.lineno, "<beyond the pack root>", relative=True)
                continue
            here = package[:len(package) - up] if node.level else []
            base = [*here, *([node.module] if node.module else [])]
            for alias in node.names:  # a name may be a submodule: ``from ..nodes import comfy_adapter``
                yield Import(node.lineno, ".".join([*base, *([] if alias.name == "*" else [alias.name])]),
                             relative=node.level > 0)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and not node.args[0].value.startswith(".")):
            yield Import(node.lineno, node.args[0].value)
        elif isinstance(node, ast.Call) and (argument := _path_argument(node)) is not None:
            target = _module_at(_path_value(argument, root / rel, names), root)
            on_sys_path = getattr(node.func, "attr", None) in ("insert", "append")
            if not (on_sys_path and target == UNREADABLE):  # sys.path entries outside the tree (ComfyUI's) are free
                yield Import(node.lineno, target, by_path=True, on_sys_path=on_sys_path)


def _within(target: str, allowed: tuple[str, ...]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def modules_of_the_tests(root: Path = REPO) -> frozenset[str]:
    """The top-level module names only ``tests/`` has (a bare ``import tiny_models`` means the tests)."""
    return frozenset(p.stem for p in (root / "tests").glob("*.py"))


def violations(source: str, rel: Path, root: Path = REPO, tests_only: frozenset[str] | None = None) -> list[str]:
    """The import rules broken by one file's ``source`` (``rel``: its path in the tree at ``root``)."""
    tests_only = modules_of_the_tests(root) if tests_only is None else tests_only
    room, where, found = room_of(rel), rel.as_posix(), []
    for imp in sorted(_imports(ast.parse(source), rel, root), key=lambda i: i.line):
        target, top = imp.target, imp.target.split(".")[0]
        at = f"{where}:{imp.line} {'loads' if imp.by_path else 'imports'} {target}"
        if imp.on_sys_path and target == PACK_ROOT:
            found.append(f"{at}: the repository root is never on sys.path")
            continue
        if room in TOOLING:
            if room == "tests":
                continue
            if top == "tests" or (not imp.relative and not imp.by_path and top in tests_only):
                found.append(f"{at}: the tooling never imports the tests")
            elif imp.by_path and (top in (*PRODUCT_ROOMS, "__init__") or target == PACK_ROOT):
                found.append(f"{at}: the tooling loads the pack as ComfyUI loads it, never by its path")
            elif imp.by_path and target == UNREADABLE:
                found.append(f"{at}: name the file with a path the rules can read (literals from __file__ or the "
                             f"repository root)")
            elif top in PACK_ROOMS_BY_NAME and not imp.relative and not imp.by_path:
                found.append(f"{at}: the tooling loads the pack as ComfyUI loads it, never by name")
            elif top in TOOLING and top not in ALLOWED_TOOLING[room]:
                found.append(f"{at}: {room} may import only the tooling rooms {', '.join(ALLOWED_TOOLING[room])}")
            continue
        if not imp.relative:
            if top in COMFY_MODULES and where not in COMFY_IMPORTERS:
                found.append(f"{at}: only {', '.join(COMFY_IMPORTERS)} import ComfyUI")
            elif top in (*TOOLING, *PACK_ROOMS_BY_NAME) or imp.by_path:
                found.append(f"{at}: product code imports the pack only relatively and never the tooling")
            continue
        if target == "<beyond the pack root>" or not _within(target, ALLOWED_INTERNAL.get(room, ())):
            found.append(f"{at}: {room} may import only {', '.join(ALLOWED_INTERNAL.get(room, ())) or 'nothing'}")
    return found


def python_files(root: Path = REPO) -> list[Path]:
    skip = {".venv", ".cache", ".git", "artifacts", "__pycache__"}
    return sorted(p.relative_to(root) for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))


def tree_violations(root: Path = REPO) -> list[str]:
    """The import rules broken anywhere in the tree at ``root``."""
    tests_only = modules_of_the_tests(root)
    return [v for p in python_files(root) for v in violations((root / p).read_text(encoding="utf-8"), p, root,
                                                              tests_only)]


def test_every_file_keeps_the_import_rules():
    rooms = {room_of(p) for p in python_files()}
    assert {"__init__", "diffier_core", "nodes", "demo", "benchmarks", "training", "tests"} <= rooms, rooms
    broken = tree_violations()
    assert not broken, "\n".join(broken)


def test_every_product_folder_is_a_known_room():
    """A new top-level folder of Python code must be given rules here before it can land."""
    unknown = {room_of(p) for p in python_files()} - set(ALLOWED_INTERNAL) - set(TOOLING)
    assert not unknown, f"folders without import rules: {sorted(unknown)} (add them to ALLOWED_INTERNAL or TOOLING)"


_LOADER = ("from pathlib import Path\nfrom scripts.file_loader import import_file\n"
           "REPO = Path(__file__).resolve().parent.parent\n")


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
    ("workflows/tools/x.py", "from tiny_models import make_model\n", "never imports the tests"),
    ("workflows/tools/x.py", "import sys\nfrom pathlib import Path\n"
     "sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tests'))\n", "never imports the tests"),
    ("benchmarks/x.py", f"{_LOADER}m = import_file('m', REPO / 'tests' / 'tiny_models.py')\n",
     "never imports the tests"),
    ("workflows/tools/x.py", "from pathlib import Path\nfrom scripts.file_loader import import_folder\n"
     "TOOLS = Path(__file__).resolve().parent\nWORKFLOWS = TOOLS.parent\n"
     "import_folder('t', WORKFLOWS.parent / 'tests')\n", "never imports the tests"),
    ("training/x.py", f"{_LOADER}c = import_file('c', path=REPO / 'diffier_core' / 'config.py')\n",
     "never by its path"),
    ("benchmarks/x.py", f"{_LOADER}import_file('m', REPO / name)\n", "a path the rules can read"),
    ("scripts/x.py", "import sys\nfrom pathlib import Path\nsys.path.append(str(Path(__file__).parent.parent))\n",
     "the repository root is never on sys.path"),
    ("tests/x.py", "import sys\nsys.path.insert(0, '.')\n", "the repository root is never on sys.path"),
    ("nodes/x.py", "import sys\nsys.path.append('benchmarks')\n", "never the tooling"),
    ("scripts/x.py", "from sweep.client import Session\n", "scripts may import only the tooling rooms scripts"),
    ("benchmarks/x.py", "def f():\n    from sweep import methods\n", "benchmarks may import only"),
    ("training/x.py", "import benchmarks.metrics\n", "training may import only"),
    ("workflows/tools/x.py", f"{_LOADER}import_file('m', REPO.parent / 'benchmarks' / 'metrics.py')\n",
     "workflows may import only the tooling rooms workflows, scripts"),
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
    ("benchmarks/x.py", "from training.data import digits\nfrom scripts import comfy_inprocess\n"),
    ("sweep/x.py", "from benchmarks.tuning import NODE_IDS\nfrom scripts.comfy_http import ComfyClient\n"
     "from . import graph\n"),
    ("workflows/tools/x.py", "from scripts.comfy_server import ComfyServer\nfrom . import frontend\n"),
    ("workflows/tools/x.py", "from pathlib import Path\nfrom scripts.file_loader import import_file\n"
     "frontend = import_file('f', Path(__file__).resolve().parent / 'frontend.py')\n"),
    ("tests/x.py", f"{_LOADER}import_file('f', REPO / 'workflows' / 'tools' / 'frontend.py')\n"
     "import_file('c', REPO / 'diffier_core' / 'config.py')\nimport sys\nsys.path.insert(0, str(REPO / 'tests'))\n"),
])

def test_an_allowed_import_passes(rel, source):
    assert violations(source, Path(rel)) == []


def test_the_rules_fire_on_a_tree_that_breaks_them(tmp_path):
    """A repository tree in which a workflow tool reaches into ``tests/`` by a loader call, by ``sys.path`` and by a
    bare import, and a benchmark loads a pack file by its path: each is reported with its file and line, the clean
    files are not."""
    files = {
        "tests/server_harness.py": "",
        "tests/tiny_models.py": "",
        "diffier_core/config.py": "",
        "workflows/tools/frontend.py": "",
        "workflows/tools/by_loader.py": "from pathlib import Path\nfrom scripts.file_loader import import_file\n"
                                        "REPO = Path(__file__).resolve().parent.parent.parent\n"
                                        "harness = import_file('h', REPO / 'tests' / 'server_harness.py')\n",
        "workflows/tools/by_sys_path.py": "import sys\nfrom pathlib import Path\n"
                                          "sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tests'))\n"
                                          "from tiny_models import make_model\n",
        "benchmarks/bed.py": f"{_LOADER}config = import_file('c', REPO / 'diffier_core' / 'config.py')\n",
        "workflows/tools/clean.py": "from pathlib import Path\nfrom scripts.file_loader import import_file\n"
                                    "frontend = import_file('f', Path(__file__).resolve().parent / 'frontend.py')\n",
        "tests/test_x.py": "from tiny_models import make_model\n",
    }
    for rel, source in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(source)
    broken = [v.split(": ", 1) for v in tree_violations(tmp_path)]
    assert [at for at, _ in broken] == ["benchmarks/bed.py:4 loads diffier_core.config",
                                        "workflows/tools/by_loader.py:4 loads tests.server_harness",
                                        "workflows/tools/by_sys_path.py:3 loads tests",
                                        "workflows/tools/by_sys_path.py:4 imports tiny_models.make_model"], broken
    assert ["never by its path", *["never imports the tests"] * 3] == [
        "never by its path" if "never by its path" in why else "never imports the tests" if "never imports the tests"
        in why else why for _, why in broken]
