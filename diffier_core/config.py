"""DiffIER's parameters, validated once, with the ranges the nodes expose."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from .errors import DiffIERParameterError

__all__ = ["MODES", "REDUCTIONS", "INNER_GUIDANCE", "AT_CFG_1", "DEFAULT_AT_CFG_1", "RANGES", "DiffIERConfig",
           "validate_window", "validate_at_cfg_1"]

MODES: tuple[str, ...] = ("consistency", "paper")
REDUCTIONS: tuple[str, ...] = ("mean", "sum")
INNER_GUIDANCE: tuple[str, ...] = ("cfg", "cond")
#: what DiffIER does at cfg = 1: ``skip`` (plain sampling, reported) or ``correct`` (the conditional branch as the
#: guided prediction)
AT_CFG_1: tuple[str, ...] = ("skip", "correct")
DEFAULT_AT_CFG_1 = "skip"

#: (min, max) of every numeric parameter; the nodes use the same numbers for their widgets.
RANGES: dict[str, tuple[float, float]] = {
    "eta": (0.0, 1.0),
    "threshold": (0.0, 1.0),
    "max_iters": (0, 100),
    "start_percent": (0.0, 1.0),
    "end_percent": (0.0, 1.0),
}


def _float_in(name: str, value: Any) -> float:
    lo, hi = RANGES[name]
    allowed = f"a finite float in [{lo}, {hi}]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DiffIERParameterError(name, value, allowed)
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise DiffIERParameterError(name, value, allowed)
    return value


def _int_in(name: str, value: Any) -> int:
    lo, hi = RANGES[name]
    allowed = f"an integer in [{int(lo)}, {int(hi)}]"
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise DiffIERParameterError(name, value, allowed)
    return int(value)


def _choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        raise DiffIERParameterError(name, value, f"one of {options}")
    return value


def validate_window(start_percent: Any, end_percent: Any) -> tuple[float, float]:
    """Check the sampling-progress window ``0 ≤ start_percent ≤ end_percent ≤ 1``; return it as floats."""
    start = _float_in("start_percent", start_percent)
    end = _float_in("end_percent", end_percent)
    if start > end:
        raise DiffIERParameterError(
            "start_percent", start, f"at most end_percent ({end}); an empty window would never apply DiffIER"
        )
    return start, end


def validate_at_cfg_1(value: Any) -> str:
    """Check the ``at_cfg_1`` choice (one of :data:`AT_CFG_1`); return it."""
    return _choice("at_cfg_1", value, AT_CFG_1)


@dataclass(frozen=True)
class DiffIERConfig:
    """Parameters of one DiffIER correction step (paper: Algorithm 1).

    Args:
        mode: ``"consistency"`` (default; the model re-evaluated in the loop) or ``"paper"``
            (Algorithm 1 as printed, made well defined). See :mod:`diffier_core.correction`.
        eta: gradient step size η, default 0.05 (the paper's 5e-2), range [0, 1]; 0 turns DiffIER off.
        threshold: convergence threshold, default 1e-3, range [0, 1]; 0 never stops early.
        max_iters: cap on inner iterations per sampling step, default 4, range [0, 100]; 0 turns DiffIER off.
        reduction: ``"mean"`` (default) or ``"sum"`` reduction of the ``paper`` loss; ``"sum"`` is the
            literal reading that wipes the prediction and exists only to demonstrate that.
        inner_guidance: ``"cfg"`` (default) evaluates the guided prediction inside the consistency loop;
            ``"cond"`` evaluates the conditional branch only (half the cost).
    """

    mode: Literal["consistency", "paper"] = "consistency"
    eta: float = 0.05
    threshold: float = 1e-3
    max_iters: int = 4
    reduction: Literal["mean", "sum"] = "mean"
    inner_guidance: Literal["cfg", "cond"] = "cfg"

    def __post_init__(self) -> None:
        _choice("mode", self.mode, MODES)
        object.__setattr__(self, "eta", _float_in("eta", self.eta))
        object.__setattr__(self, "threshold", _float_in("threshold", self.threshold))
        object.__setattr__(self, "max_iters", _int_in("max_iters", self.max_iters))
        _choice("reduction", self.reduction, REDUCTIONS)
        _choice("inner_guidance", self.inner_guidance, INNER_GUIDANCE)

    @property
    def enabled(self) -> bool:
        """False when a parameter turns the correction off (η = 0 or ``max_iters`` = 0)."""
        return self.eta > 0.0 and self.max_iters > 0
