"""Project error types: every DiffIER failure says what was expected and what came."""

from __future__ import annotations

from typing import Any

__all__ = ["DiffIERError", "DiffIERParameterError"]


class DiffIERError(RuntimeError):
    """Base class of every error DiffIER raises on purpose."""


class DiffIERParameterError(DiffIERError, ValueError):
    """A parameter is out of range or of the wrong type.

    Args:
        name: the parameter's name as the user sees it (node input or keyword).
        value: the value that came.
        allowed: a human-readable description of what is allowed, e.g. ``"a float in [0.0, 1.0]"``.
    """

    def __init__(self, name: str, value: Any, allowed: str) -> None:
        self.name = name
        self.value = value
        self.allowed = allowed
        super().__init__(f"DiffIER: parameter '{name}' must be {allowed}; got {value!r}")
