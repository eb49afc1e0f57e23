"""The pack's errors: every one names what it is about, what was expected and what came."""

from __future__ import annotations

from typing import Any

__all__ = ["DiffIERError", "DiffIERParameterError"]


class DiffIERError(RuntimeError):
    """Base class of every error the pack raises; subclasses say what kind of thing went wrong.

    Args:
        name: what the error is about: a parameter, a node input, a ComfyUI symbol or class.
        got: what came.
        expected: what is allowed or needed, e.g. ``"a float in [0.0, 1.0]"``.
        message: the full text (default ``"DiffIER: <name> must be <expected>; got <got>"``).
    """

    def __init__(self, name: str, got: Any, expected: str, message: str | None = None) -> None:
        self.name = name
        self.got = got
        self.expected = expected
        super().__init__(message if message is not None else f"DiffIER: {name} must be {expected}; got {got!r}")


class DiffIERParameterError(DiffIERError, ValueError):
    """A parameter (node input or keyword) is out of range or of the wrong type.

    Args:
        name: the parameter's name as the user sees it (node input or keyword).
        value: the value that came.
        allowed: a human-readable description of what is allowed, e.g. ``"a float in [0.0, 1.0]"``.
    """

    def __init__(self, name: str, value: Any, allowed: str) -> None:
        self.value = value
        self.allowed = allowed
        super().__init__(name, value, allowed, f"DiffIER: parameter '{name}' must be {allowed}; got {value!r}")
