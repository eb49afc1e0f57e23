"""DiffIER's settings: the one shape from the node inputs to the patch, validated once, every default defined here."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import DiffIERParameterError

__all__ = ["MODES", "REDUCTIONS", "INNER_GUIDANCE", "AT_CFG_1", "RANGES", "DiffIERSettings", "DEFAULTS"]

MODES: tuple[str, ...] = ("consistency", "paper")
REDUCTIONS: tuple[str, ...] = ("mean", "sum")
INNER_GUIDANCE: tuple[str, ...] = ("cfg", "cond")
#: what DiffIER does at cfg = 1: ``skip`` (plain sampling, reported) or ``correct`` (the conditional branch as the
#: guided prediction)
AT_CFG_1: tuple[str, ...] = ("skip", "correct")

#: (min, max) of every numeric setting; the nodes use the same numbers for their widgets.
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
    number = float(value)
    if not math.isfinite(number) or not lo <= number <= hi:
        raise DiffIERParameterError(name, number, allowed)
    return number


def _int_at_least(name: str, value: Any, lo: int, hi: float = math.inf) -> int:
    allowed = f"an integer in [{lo}, {int(hi)}]" if math.isfinite(hi) else f"an integer >= {lo}"
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise DiffIERParameterError(name, value, allowed)
    return int(value)


def _choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise DiffIERParameterError(name, value, f"one of {options}")
    return value


@dataclass(frozen=True)
class DiffIERSettings:
    """Everything one DiffIER patch runs with (paper: Algorithm 1), validated when it is built.

    Built once from a node's inputs (``diffier_core.presets.settings_for`` resolves the ``preset`` input), or from
    keywords by the benchmarks and tests; a bad value is a :class:`DiffIERParameterError` naming the setting, what is
    allowed and what came.

    Args:
        mode: ``"consistency"`` (default; the model re-evaluated in the loop) or ``"paper"`` (Algorithm 1 as
            printed, made well defined). See :mod:`diffier_core.correction`.
        eta: gradient step size η, default 0.05 (the paper's 5e-2), range [0, 1]; 0 turns DiffIER off.
        threshold: convergence threshold, default 1e-3, range [0, 1]; 0 never stops early.
        max_iters: cap on inner iterations per sampling step, default 4, range [0, 100]; 0 turns DiffIER off.
        start_percent: sampling progress where DiffIER starts, default 0 (the first step), range [0, 1].
        end_percent: sampling progress where DiffIER stops, default 1 (the last step), range [start_percent, 1].
        inner_guidance: what the consistency loop re-evaluates: ``"cond"`` (default; the conditional branch, one
            model row per iteration, the strongest setting in the benchmarks) or ``"cfg"`` (the guided cond+uncond
            prediction, two rows per iteration).
        stride: correct every ``stride``-th guided model call inside the window, starting with the first; default
            1 (every call), at least 1.
        at_cfg_1: ``"skip"`` (default: at cfg = 1 the step is left unchanged and the run's summary says so) or
            ``"correct"`` (at cfg = 1 the conditional branch is the guided prediction and is corrected).
        reduction: ``"mean"`` (default) or ``"sum"`` reduction of the ``paper`` loss; ``"sum"`` is the literal
            reading that wipes the prediction and exists only to demonstrate that (no node input).
    """

    mode: str = "consistency"
    eta: float = 0.05
    threshold: float = 1e-3
    max_iters: int = 4
    start_percent: float = 0.0
    end_percent: float = 1.0
    inner_guidance: str = "cond"
    stride: int = 1
    at_cfg_1: str = "skip"
    reduction: str = "mean"

    def __post_init__(self) -> None:
        _choice("mode", self.mode, MODES)
        object.__setattr__(self, "eta", _float_in("eta", self.eta))
        object.__setattr__(self, "threshold", _float_in("threshold", self.threshold))
        object.__setattr__(self, "max_iters", _int_at_least("max_iters", self.max_iters, 0, RANGES["max_iters"][1]))
        start = _float_in("start_percent", self.start_percent)
        end = _float_in("end_percent", self.end_percent)
        if start > end:
            raise DiffIERParameterError(
                "start_percent", start, f"at most end_percent ({end}); an empty window would never apply DiffIER")
        object.__setattr__(self, "start_percent", start)
        object.__setattr__(self, "end_percent", end)
        _choice("inner_guidance", self.inner_guidance, INNER_GUIDANCE)
        object.__setattr__(self, "stride", _int_at_least("stride", self.stride, 1))
        _choice("at_cfg_1", self.at_cfg_1, AT_CFG_1)
        _choice("reduction", self.reduction, REDUCTIONS)

    @property
    def enabled(self) -> bool:
        """False when a setting turns the correction off (η = 0 or ``max_iters`` = 0)."""
        return self.eta > 0.0 and self.max_iters > 0

    @property
    def full_window(self) -> bool:
        """True when the window is the whole sampling run (no step needs its σ read on the host)."""
        return self.start_percent <= 0.0 and self.end_percent >= 1.0


#: the default of every setting (the nodes' widgets and optional inputs take theirs from here)
DEFAULTS = DiffIERSettings()
