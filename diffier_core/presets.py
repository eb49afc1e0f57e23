"""The ``preset`` input of the DiffIER nodes: a preset maps the node's explicit settings to the settings it runs.

* ``quality`` (default) and ``custom``: the explicit inputs rule (``mode``, ``eta``, ``threshold``, ``max_iters``,
  ``start_percent``, ``end_percent``, ``inner_guidance``). Their defaults are full DiffIER, so a workflow saved
  without the input, or with ``preset = quality``, gives the image of full DiffIER at those inputs. ``custom`` says
  "I set the inputs myself"; it behaves exactly as ``quality``.
* ``balanced`` (at most 1.5× plain CFG's model evaluations) and ``fast`` (at most 1.2×): fixed settings chosen on
  the archived cost frontier (docs/results/archive/frontier_presets.json) and measured in the confirmatory run
  (:data:`MEASURED`, from docs/results/evidence/confirmatory_*.json); they
  *replace every other DiffIER input* but ``at_cfg_1`` (which says when DiffIER runs, not how), so the cost bound
  holds whatever the widgets say.

Plain CFG evaluates two model rows (cond + uncond) per guided call; DiffIER with ``inner_guidance = cond`` adds one
row per inner iteration of every corrected call. A preset with ``max_iters = 1`` and ``stride = k`` therefore adds at
most ``ceil(n / k)`` rows to plain CFG's ``2 n`` (n guided calls), whatever the sampler or schedule, on every model
but those whose network evaluates cond and uncond as one pair (``Hunyuan3Dv2_1``: two rows per iteration).

Pure Python: no torch, no ComfyUI.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from .config import DiffIERSettings
from .errors import DiffIERParameterError

if TYPE_CHECKING:
    from typing_extensions import Required, Unpack

__all__ = ["PRESETS", "DEFAULT_PRESET", "EXPLICIT_PRESETS", "CHEAP_PRESETS", "MEASURED", "PresetMeasure",
           "DiffIERInputs", "settings_for", "resolve_preset", "preset_tooltip", "extra_rows_bound", "evals_ratio_bound"]

PRESETS: tuple[str, ...] = ("quality", "balanced", "fast", "custom")
DEFAULT_PRESET = "quality"
#: presets under which the explicit inputs rule
EXPLICIT_PRESETS: tuple[str, ...] = ("quality", "custom")


class DiffIERInputs(TypedDict, total=False):
    """The DiffIER inputs of a node, as ComfyUI passes them (the optional ones are absent in older workflows)."""

    mode: Required[str]
    eta: Required[float]
    threshold: Required[float]
    max_iters: Required[int]
    start_percent: Required[float]
    end_percent: Required[float]
    inner_guidance: str
    preset: str
    at_cfg_1: str


#: the cheap presets: the frontier points chosen on the tuning seeds (docs/results/archive/frontier_presets.json)
CHEAP_PRESETS: dict[str, DiffIERSettings] = {
    "balanced": DiffIERSettings("consistency", 0.45, 1e-3, 1, 0.0, 1.0, "cond", stride=1),
    "fast": DiffIERSettings("consistency", 0.45, 1e-3, 1, 0.0, 0.6, "cond", stride=2),
}

class PresetMeasure(NamedTuple):
    """One cheap preset on one testbed in the confirmatory run (Euler 20 steps, test seeds from 1000): evaluations
    per sample relative to plain CFG, and the adherence levels (plain CFG's ω grid) where its primary quality is
    better / worse (paired 95 %) than the ``quality`` preset's and plain CFG's at matched adherence."""

    evals_ratio: float
    better_than_quality: int
    worse_than_quality: int
    better_than_cfg: int
    worse_than_cfg: int
    levels: int


#: the confirmatory documents the measures come from, and the configuration (tests/test_presets.py keeps
#: :data:`MEASURED` equal to what they record)
MEASURED_SOURCE = "docs/results/evidence/confirmatory_*.json"
MEASURED_CONFIG = "euler-20"
#: per cheap preset, per testbed group (``testbed`` or ``testbed/group``) of the confirmatory documents
MEASURED: dict[str, dict[str, PresetMeasure]] = {
    "balanced": {
        "known_score/overspread": PresetMeasure(1.5, 0, 0, 3, 0, 6),
        "known_score/collapse": PresetMeasure(1.5, 0, 4, 0, 4, 6),
        "digits": PresetMeasure(1.5, 3, 0, 4, 0, 6),
        "sr": PresetMeasure(1.5, 6, 0, 4, 0, 6),
        "sr_photos": PresetMeasure(1.5, 4, 0, 0, 0, 6),
    },
    "fast": {
        "known_score/overspread": PresetMeasure(1.2, 0, 0, 4, 0, 6),
        "known_score/collapse": PresetMeasure(1.2, 0, 0, 0, 4, 6),
        "digits": PresetMeasure(1.15, 0, 0, 4, 0, 6),
        "sr": PresetMeasure(1.15, 0, 6, 4, 0, 6),
        "sr_photos": PresetMeasure(1.15, 0, 0, 0, 0, 6),
    },
}
TESTBED_NAMES = {"known_score/overspread": "known scores (over-spread)", "known_score/collapse":
                 "known scores (collapse)", "digits": "digits", "sr": "SR digits ×4", "sr_photos": "SR photos ×2"}
#: each cheap preset's cost on any model, sampler and schedule (tests/test_presets.py counts it on every ComfyUI
#: scheduler through the real sampler)
COST_NOTES = {
    "balanced": "exactly 1.5× plain CFG's model evaluations with any one-call-per-step sampler, on any schedule",
    "fast": "at most 1.2× plain CFG's model evaluations with ComfyUI's schedulers at 10–30 steps (1.15× with "
            "normal; 1.25× with linear_quadratic on an EPS model, the one case above 1.2×)",
}


def settings_for(**inputs: Unpack[DiffIERInputs]) -> DiffIERSettings:
    """The settings a node runs: its explicit inputs built and validated once (a bad value is an error under every
    preset), then resolved under its ``preset`` (absent: ``quality``); an absent optional input takes its default
    from :data:`diffier_core.config.DEFAULTS`.

    Raises:
        DiffIERParameterError: naming the bad input, what is allowed and what came.
    """
    explicit: dict[str, Any] = dict(inputs)
    preset = explicit.pop("preset", DEFAULT_PRESET)
    return resolve_preset(preset, DiffIERSettings(**explicit))


def resolve_preset(preset: Any, explicit: DiffIERSettings) -> DiffIERSettings:
    """``explicit`` for quality/custom; the preset's own settings otherwise, with ``explicit``'s ``at_cfg_1``.

    Args:
        preset: the ``preset`` input (``None``: absent, the default ``quality``).
        explicit: the node's explicit settings.

    Raises:
        DiffIERParameterError: ``preset`` is not one of :data:`PRESETS`.
    """
    if preset is None:
        preset = DEFAULT_PRESET
    if not isinstance(preset, str) or preset not in PRESETS:
        raise DiffIERParameterError("preset", preset, f"one of {list(PRESETS)}")
    if preset in EXPLICIT_PRESETS:
        return explicit
    return dataclasses.replace(CHEAP_PRESETS[preset], at_cfg_1=explicit.at_cfg_1)


def extra_rows_bound(settings: DiffIERSettings, calls: int) -> int:
    """Upper bound on the model rows per sample DiffIER adds over ``calls`` guided calls (consistency mode)."""
    if settings.mode != "consistency" or settings.eta <= 0 or settings.max_iters <= 0:
        return 0
    per_iter = 1 if settings.inner_guidance == "cond" else 2
    return math.ceil(calls / settings.stride) * settings.max_iters * per_iter


def evals_ratio_bound(settings: DiffIERSettings, steps: int) -> float:
    """At most this many times plain CFG's model evaluations for ``steps`` single-evaluation sampler steps."""
    return (2 * steps + extra_rows_bound(settings, steps)) / (2 * steps)


def _describe(name: str) -> str:
    s = CHEAP_PRESETS[name]
    every = "every guided step" if s.stride == 1 else f"every {_ordinal(s.stride)} guided step"
    window = "" if (s.start_percent, s.end_percent) == (0.0, 1.0) else \
        f" in the first {100 * (s.end_percent - s.start_percent):.0f} % of sampling" if s.start_percent == 0.0 else \
        f" from {s.start_percent:g} to {s.end_percent:g} of sampling"
    where = ", ".join(f"{TESTBED_NAMES[group]} {_measure_text(m)}" for group, m in MEASURED[name].items())
    return f"{name}: η {s.eta:g}, {s.max_iters} cond iteration on {every}{window}: {COST_NOTES[name]}; measured {where}"


def _measure_text(m: PresetMeasure) -> str:
    """``1.50× evaluations, better/worse than quality at 3/0 and than plain CFG at 4/0 of 6 levels``."""
    return (f"{m.evals_ratio:.2f}× evaluations, better/worse than quality at {m.better_than_quality}/"
            f"{m.worse_than_quality} and than plain CFG at {m.better_than_cfg}/{m.worse_than_cfg} of {m.levels} "
            "adherence levels")


def _ordinal(k: int) -> str:
    return {2: "2nd", 3: "3rd"}.get(k, f"{k}th")


def preset_tooltip() -> str:
    """The ``preset`` tooltip, numbers from :data:`MEASURED`."""
    return ("quality (default) and custom: the inputs below rule; their defaults are full DiffIER (about 3× plain "
            "CFG's model evaluations). balanced and fast replace every other DiffIER input with measured cheap "
            "settings. " + "; ".join(_describe(n) for n in CHEAP_PRESETS)
            + f". Measured in the confirmatory run ({MEASURED_CONFIG}, fresh seeds, {MEASURED_SOURCE}), at matched "
            "adherence with paired 95 % intervals; the verdicts are in docs/EVIDENCE.md.")
