"""Load the pack as a package from its folder, the way ComfyUI's loader does (never via sys.path)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACK_DIR = Path(__file__).resolve().parent.parent
PACKAGE_NAME = "comfyui_diffier_under_test"


def import_folder(name: str, folder: Path) -> ModuleType:
    """``folder`` (with an ``__init__.py``) imported as the package ``name``, once; its submodules import relatively."""
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def import_file(name: str, path: Path) -> ModuleType:
    """The single file ``path`` imported as the module ``name``, once (e.g. ``scripts/comfy_inprocess.py``)."""
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def import_from_folder(name: str, folder: Path, submodule: str) -> ModuleType:
    """``<name>.<submodule>`` of :func:`import_folder` (e.g. ``benchmarks/tuning.py`` without sys.path)."""
    import_folder(name, folder)
    return importlib.import_module(f"{name}.{submodule}")


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


def import_benchmarks(submodule: str) -> ModuleType:
    """``benchmarks.<submodule>`` loaded from its folder (e.g. ``instruments``, ``eq9``)."""
    return import_from_folder("_diffier_benchmarks_under_test", PACK_DIR / "benchmarks", submodule)


def import_training(submodule: str) -> ModuleType:
    """``training.<submodule>`` loaded from its folder (e.g. ``data.digits``, ``train_sr``)."""
    return import_from_folder("_diffier_training", PACK_DIR / "training", submodule)
