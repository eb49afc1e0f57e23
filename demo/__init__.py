"""The pack's embedded demo: tiny diffusion models shipped in ``weights/`` (``models``, ``degrade``), their
ComfyUI nodes (``nodes``), the data they were trained and scored on (``data``, pure torch/numpy) and their
training commands (``training``: ``python -m demo.training.train_digits`` / ``train_sr`` from the repository
root).

``DEMO_NODES`` (the node classes, in registration order) and the submodules are imported on first use, so
``demo.data`` and ``demo.training`` import without ComfyUI.
"""

from __future__ import annotations

import importlib

__all__ = ["DEMO_NODES"]
_SUBMODULES = ("data", "degrade", "models", "nodes", "training")


def __getattr__(name: str):
    if name == "DEMO_NODES":
        from .nodes import DEMO_NODES

        return DEMO_NODES
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
