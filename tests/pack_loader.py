"""The tests' imports of the repository: the pack as ComfyUI loads it (from its folder, never via ``sys.path``), the
tooling rooms by name.

Importing this module finds ``scripts/`` in the repository's folder (the standard path finder, given that folder
alone) and hands over to ``scripts/file_loader.py``, the repository's one loader: from then on the tooling rooms
(``benchmarks``, ``scripts``, ``sweep``, ``training``) import by name and the repository root is off ``sys.path``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACK_DIR = Path(__file__).resolve().parent.parent
PACKAGE_NAME = "comfyui_diffier_under_test"

if "scripts.file_loader" not in sys.modules:
    _scripts = importlib.machinery.PathFinder.find_spec("scripts", [str(PACK_DIR)])
    sys.modules["scripts"] = importlib.util.module_from_spec(_scripts)
    _scripts.loader.exec_module(sys.modules["scripts"])

from scripts.file_loader import import_file, import_folder, use_rooms  # noqa: E402  (needs scripts/ found above)

use_rooms()

__all__ = ["PACK_DIR", "PACKAGE_NAME", "import_core", "import_file", "import_folder", "import_pack",
           "import_pack_file"]


def import_pack() -> ModuleType:
    """The pack's top-level package (its ``__init__`` imports nothing from ComfyUI until called)."""
    return import_folder(PACKAGE_NAME, PACK_DIR)


def import_core() -> ModuleType:
    """``diffier_core`` of the pack (pure torch)."""
    import_pack()
    return importlib.import_module(f"{PACKAGE_NAME}.diffier_core")


def import_pack_file(relative: str) -> ModuleType:
    """One module of the pack by itself, e.g. ``nodes/grid_drawing.py`` without ComfyUI: its relative imports of
    ``diffier_core`` resolve inside the pack's package; the ``__init__`` of its own folder does not run."""
    import_core()
    name = ".".join((PACKAGE_NAME, *Path(relative).with_suffix("").parts))
    return import_file(name, PACK_DIR / relative)
