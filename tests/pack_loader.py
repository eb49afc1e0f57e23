"""Load the pack as a package from its folder, the way ComfyUI's loader does (never via sys.path)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACK_DIR = Path(__file__).resolve().parent.parent
PACKAGE_NAME = "comfyui_diffier_under_test"


def import_pack() -> ModuleType:
    """The pack's top-level package (its ``__init__`` imports nothing from ComfyUI until called)."""
    module = sys.modules.get(PACKAGE_NAME)
    if module is None:
        spec = importlib.util.spec_from_file_location(
            PACKAGE_NAME, PACK_DIR / "__init__.py", submodule_search_locations=[str(PACK_DIR)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE_NAME] = module
        spec.loader.exec_module(module)
    return module


def import_core() -> ModuleType:
    """``diffier_core`` of the pack (pure torch)."""
    import_pack()
    return importlib.import_module(f"{PACKAGE_NAME}.diffier_core")
