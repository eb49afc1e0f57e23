"""The repository's one way to import its own modules without its root on ``sys.path``.

The repository root is the pack's folder, which ComfyUI imports as a package (and ComfyUI has its own top-level
``nodes``), so the root never goes on ``sys.path``. Instead:

* the tooling rooms (:data:`TOOLING_ROOMS`) are imported by name (``from scripts import comfy_inprocess``,
  ``import training.data.digits``) through :class:`ToolingRooms`, a finder that maps each room's name to its folder;
  :func:`use_rooms` installs it and takes the root off ``sys.path`` (``tests/pack_loader.py`` and
  ``scripts/comfy_inprocess.py``'s ``bootstrap()`` call it, so the tooling keeps importing after ComfyUI booted);
* a single file or a folder is imported by its path with :func:`import_file` / :func:`import_folder` (the tests load
  the pack's folder as ComfyUI does, a workflow tool its sibling file). ``tests/test_import_rules.py`` reads the
  path expressions of these calls and holds them to the rooms' import rules.

Standard library only.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
#: the top-level folders of tooling that are packages, importable by their names
TOOLING_ROOMS = ("benchmarks", "scripts", "sweep", "training")

__all__ = ["REPO_ROOT", "TOOLING_ROOMS", "ToolingRooms", "import_file", "import_folder", "use_rooms"]


def _exec_spec(spec: importlib.machinery.ModuleSpec) -> ModuleType:
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


def import_file(name: str, path: Path) -> ModuleType:
    """The single file ``path`` imported as the module ``name``, once (e.g. ``workflows/tools/frontend.py``).

    Args:
        name: the module's name in ``sys.modules``; a dotted name puts it in that (already imported) package, so its
            relative imports resolve there.
        path: the ``.py`` file.
    """
    module = sys.modules.get(name)
    return module if module is not None else _exec_spec(importlib.util.spec_from_file_location(name, path))


def import_folder(name: str, folder: Path) -> ModuleType:
    """The package in ``folder`` (with an ``__init__.py``) imported as ``name``, once; its submodules import relatively.

    Args:
        name: the package's name in ``sys.modules``.
        folder: the package's folder.
    """
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = _exec_spec(spec)
    return module


class ToolingRooms(importlib.abc.MetaPathFinder):
    """Finds the tooling rooms (``benchmarks``, ``scripts``, ``sweep``, ``training``) by name in the repository's
    folder; their submodules are then found inside the package as usual.

    Args:
        root: the repository's folder.
        rooms: the top-level package names it answers for.
    """

    def __init__(self, root: Path = REPO_ROOT, rooms: Sequence[str] = TOOLING_ROOMS) -> None:
        self.root = root
        self.rooms = tuple(rooms)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.rooms:
            return None
        folder = self.root / fullname
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


def use_rooms() -> None:
    """Take the repository root off ``sys.path`` and import the tooling rooms by name from here on (idempotent).

    Raises:
        ImportError: a module of a room's name is already imported from somewhere else.
    """
    root = os.path.realpath(REPO_ROOT)
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != root]
    for room in TOOLING_ROOMS:
        module = sys.modules.get(room)
        where = getattr(module, "__path__", None)
        if module is not None and [os.path.realpath(p) for p in where or ()] != [str(Path(root) / room)]:
            raise ImportError(f"a module named {room!r} is already imported from {where or module!r}; the "
                              f"repository's {room}/ must be the only one", name=room)
    if not any(isinstance(f, ToolingRooms) for f in sys.meta_path):
        sys.meta_path.insert(0, ToolingRooms())
