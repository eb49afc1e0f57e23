"""The ``preset`` input of the DiffIER nodes: what each preset runs, and what it measured (issue 15).

* ``quality`` (default) and ``custom``: the explicit inputs rule (``mode``, ``eta``, ``threshold``, ``max_iters``,
  ``start_percent``, ``end_percent``, ``inner_guidance``). Their defaults are full DiffIER, so a workflow saved
  before the input existed, or with ``preset = quality``, gives the image it gave before. ``custom`` says "I set
  the inputs myself"; it behaves exactly as ``quality``.
* ``balanced`` (at most 1.5× plain CFG's model evaluations) and ``fast`` (at most 1.2×): fixed settings measured
  on the frontier (``python -m benchmarks.frontier``, docs/results/frontier_*.json); they *replace every other
  DiffIER input*, so the cost bound holds whatever the widgets say.

Plain CFG evaluates two model rows (cond + uncond) per guided call; DiffIER with ``inner_guidance = cond`` adds one
row per inner iteration of every corrected call. A preset with ``max_iters = 1`` and ``stride = k`` therefore adds at
most ``ceil(n / k)`` rows to plain CFG's ``2 n`` (n guided calls), whatever the model, sampler or schedule.

Pure Python: no torch, no ComfyUI.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .errors import DiffIERParameterError

__all__ = ["PRESETS", "DEFAULT_PRESET", "EXPLICIT_PRESETS", "PresetSettings", "CHEAP_PRESETS", "MEASURED",
           "resolve_preset", "preset_tooltip", "extra_rows_bound", "evals_ratio_bound"]

PRESETS: tuple[str, ...] = ("quality", "balanced", "fast", "custom")
DEFAULT_PRESET = "quality"
#: presets under which the explicit inputs rule
EXPLICIT_PRESETS: tuple[str, ...] = ("quality", "custom")


@dataclasses.dataclass(frozen=True)
class PresetSettings:
    """Every DiffIER setting a preset fixes (the node inputs plus the patch's ``stride``).

    Args:
        mode, eta, threshold, max_iters, inner_guidance: :class:`diffier_core.DiffIERConfig`'s.
        start_percent, end_percent: the sampling-progress window.
        stride: correct every ``stride``-th guided model call inside the window, starting with the first.
    """

    mode: str
    eta: float
    threshold: float
    max_iters: int
    start_percent: float
    end_percent: float
    inner_guidance: str
    stride: int = 1


#: the cheap presets: the frontier points chosen on the tuning seeds (docs/results/frontier_presets.json)
CHEAP_PRESETS: dict[str, PresetSettings] = {
    "balanced": PresetSettings("consistency", 0.45, 1e-3, 1, 0.0, 1.0, "cond", stride=1),
    "fast": PresetSettings("consistency", 0.45, 1e-3, 1, 0.0, 0.6, "cond", stride=2),
}

#: what the presets measured on the test seeds (docs/results/frontier_presets.json; tests/test_presets.py keeps the
#: two in step): evaluations and wall time per image relative to plain CFG at the same steps, and the share of the
#: quality preset's gain over plain CFG kept (above 1: more gain than quality), per testbed
MEASURED: dict[str, dict[str, dict[str, float]]] = {
    "balanced": {"evals_ratio": {"known_score": 1.5, "digits": 1.5},
                 "wall_time_ratio": {"known_score": 1.028, "digits": 1.513},
                 "share": {"known_score": 1.020, "digits": 2.300}},
    "fast": {"evals_ratio": {"known_score": 1.1875, "digits": 1.15},
             "wall_time_ratio": {"known_score": 1.015, "digits": 1.266},
             "share": {"known_score": 0.876, "digits": 1.330}},
}
TESTBED_NAMES = {"known_score": "known scores", "digits": "digits"}
#: each cheap preset's cost on any model, sampler and schedule (tests/test_presets.py counts it on every ComfyUI
#: scheduler through the real sampler)
COST_NOTES = {
    "balanced": "exactly 1.5× plain CFG's model evaluations with any one-call-per-step sampler, on any schedule",
    "fast": "at most 1.2× plain CFG's model evaluations with ComfyUI's schedulers at 10–30 steps (1.15× with "
            "normal; 1.25× with linear_quadratic on an EPS model, the one case above 1.2×)",
}


def resolve_preset(preset: Any, explicit: PresetSettings) -> PresetSettings:
    """The settings a node runs: ``explicit`` for quality/custom, the preset's own otherwise.

    Args:
        preset: the ``preset`` input (``None``: absent, the default ``quality``).
        explicit: the node's explicit inputs (``stride`` 1).

    Raises:
        DiffIERParameterError: ``preset`` is not one of :data:`PRESETS`.
    """
    if preset is None:
        preset = DEFAULT_PRESET
    if not isinstance(preset, str) or preset not in PRESETS:
        raise DiffIERParameterError("preset", preset, f"one of {list(PRESETS)}")
    if preset in EXPLICIT_PRESETS:
        return explicit
    return CHEAP_PRESETS[preset]


def extra_rows_bound(settings: PresetSettings, calls: int) -> int:
    """Upper bound on the model rows per sample DiffIER adds over ``calls`` guided calls (consistency mode)."""
    if settings.mode != "consistency" or settings.eta <= 0 or settings.max_iters <= 0:
        return 0
    per_iter = 1 if settings.inner_guidance == "cond" else 2
    return math.ceil(calls / settings.stride) * settings.max_iters * per_iter


def evals_ratio_bound(settings: PresetSettings, steps: int) -> float:
    """At most this many times plain CFG's model evaluations for ``steps`` single-evaluation sampler steps."""
    return (2 * steps + extra_rows_bound(settings, steps)) / (2 * steps)


def _pct(v: float) -> str:
    return f"{100 * v:.0f} %"


def _describe(name: str) -> str:
    s, m = CHEAP_PRESETS[name], MEASURED[name]
    where = ", ".join(f"{TESTBED_NAMES[tb]} {m['evals_ratio'][tb]:.2f}× evaluations ({m['wall_time_ratio'][tb]:.2f}× "
                      f"time), {_pct(m['share'][tb])} of quality's gain" for tb in m["evals_ratio"])
    every = "every guided step" if s.stride == 1 else f"every {_ordinal(s.stride)} guided step"
    window = "" if (s.start_percent, s.end_percent) == (0.0, 1.0) else \
        f" in the first {100 * (s.end_percent - s.start_percent):.0f} % of sampling" if s.start_percent == 0.0 else \
        f" from {s.start_percent:g} to {s.end_percent:g} of sampling"
    return (f"{name}: η {s.eta:g}, {s.max_iters} cond iteration on {every}{window}: {COST_NOTES[name]}; measured "
            f"{where}")


def _ordinal(k: int) -> str:
    return {2: "2nd", 3: "3rd"}.get(k, f"{k}th")


def preset_tooltip() -> str:
    """The ``preset`` tooltip, numbers from :data:`MEASURED`."""
    return ("quality (default) and custom: the inputs below rule; their defaults are full DiffIER (about 3× plain "
            "CFG's model evaluations). balanced and fast replace every other DiffIER input with measured cheap "
            "settings. " + "; ".join(_describe(n) for n in CHEAP_PRESETS)
            + ". Measured with python -m benchmarks.frontier (docs/results/frontier_*.json).")
