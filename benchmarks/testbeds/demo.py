"""The pack's embedded demo (``demo/models.py``, ``demo/data/{digits,sr}.py``) as the learned-model testbeds use it.

The pack is loaded as one package (``Harness.pack``), so its demo modules are reached through it, never by file path.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["demo_models", "data_module"]


def demo_models(pack: Any) -> ModuleType:
    """The pack's demo-model module (model loading, conditioning, latents, SR degradation).

    Args:
        pack: the loaded pack module (``Harness.pack``).
    """
    return importlib.import_module(f"{pack.__name__}.demo.models")


def data_module(pack: Any, name: str) -> ModuleType:
    """A demo data module of the pack: ``digits`` (split, classifier) or ``sr`` (held-out photo patches, digits).

    Args:
        pack: the loaded pack module.
        name: ``digits`` or ``sr``.
    """
    if name not in ("digits", "sr"):
        raise ValueError(f"name must be 'digits' or 'sr', got {name!r}")
    return importlib.import_module(f"{pack.__name__}.demo.data.{name}")
