"""The one registry of the benchmarks' methods and their settings.

Every benchmark that runs a guidance method takes it from here: the ComfyUI node id of each method's MODEL-patch
node (:data:`NODE_IDS`; the sweep's aliases come from it), every method's grid of settings for tuning
(:func:`method_grids`, at most :data:`BUDGET` settings each), the fixed DiffIER points (the node defaults and the
``balanced`` / ``fast`` presets, :func:`fixed_diffier_points`) and the overhead benchmark's DiffIER inputs
(:data:`OVERHEAD_DIFFIER`). A test fails if another benchmark module spells one of the node ids.

A :class:`Setting` is a chain of real ComfyUI MODEL-patch nodes with their inputs; the evidence protocol
(:mod:`benchmarks.evidence.protocol`) decides which settings run where, and how the tuned one is chosen.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

__all__ = ["BUDGET", "QUICK_BUDGET", "NODE_IDS", "DIFFIER_FIXED", "AT_CFG_1", "KNOBS_NOTE", "OVERHEAD_DIFFIER",
           "Setting", "diffier_node", "method_grids", "fixed_diffier_points", "CFG"]

#: the configuration budget: settings tried per method (full and ``--quick`` runs)
BUDGET = 12
QUICK_BUDGET = 3
#: the ComfyUI node id of every method's MODEL-patch node (plain CFG has none); the sweep's aliases come from here
NODE_IDS = {"diffier": "DiffIERGuider", "apg": "APG", "rescalecfg": "RescaleCFG", "epsilon_scaling": "Epsilon Scaling",
            "cfgzerostar": "CFGZeroStar", "tcfg": "TCFG"}
#: DiffIER's fixed options in every setting (the node's defaults for the knobs not tuned)
DIFFIER_FIXED = {"mode": "consistency", "threshold": 1e-3}
#: the DiffIER nodes' optional input that decides what happens at cfg = 1: ``skip`` (the default: plain sampling)
#: or ``correct`` (DiffIER corrects the conditional prediction)
AT_CFG_1 = "at_cfg_1"
KNOBS_NOTE = {
    "cfg": "reference: plain CFG has no knob besides ω",
    "apg": "eta × norm_threshold × momentum: the node's three knobs",
    "diffier": "eta × max_iters at the node defaults, plus a window, the guided (cfg) inner evaluation and the "
               "one-iteration points under 1.5× plain CFG's evaluations (the balanced and fast presets among them); "
               "mode = consistency, threshold = 1e-3 fixed",
    "rescalecfg": "multiplier is the node's only knob: fewer settings, not padded",
    "epsilon_scaling": "scaling_factor is the node's only knob: fewer settings, not padded",
    "cfgzerostar": "ComfyUI 0.3.75's CFGZeroStar node has no options: one setting",
    "tcfg": "ComfyUI 0.3.75's TCFG node has no options: one setting",
}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One configuration of one method: real ComfyUI MODEL-patch nodes applied in order.

    Args:
        method: registry name (``apg``, ``diffier``, ...).
        label: unique, readable name (``apg(eta=0,thr=5,mom=0)``).
        knobs: the tuned values.
        patches: ``((node_id, inputs), ...)``.
    """

    method: str
    label: str
    knobs: tuple[tuple[str, Any], ...]
    patches: tuple[tuple[str, dict[str, Any]], ...]

    def describe(self) -> dict[str, Any]:
        """The setting as JSON: label, knobs and the patch nodes with their inputs."""
        return {"label": self.label, "knobs": dict(self.knobs), "patches": [[n, p] for n, p in self.patches]}


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _setting(method: str, short: str, knobs: dict[str, Any], patches: tuple) -> Setting:
    label = f"{short}(" + ",".join(f"{k}={_fmt(v)}" for k, v in knobs.items()) + ")" if knobs else short
    return Setting(method, label, tuple(knobs.items()), patches)


#: plain CFG: no patch
CFG = _setting("cfg", "cfg", {}, ())


def _apg(eta: float, thr: float, mom: float) -> Setting:
    return _setting("apg", "apg", {"eta": eta, "thr": thr, "mom": mom},
                    ((NODE_IDS["apg"], {"eta": eta, "norm_threshold": thr, "momentum": mom}),))


def diffier_node(eta: float, it: int, inner: str, window: tuple[float, float],
                 preset: str | None = None) -> tuple[str, dict[str, Any]]:
    """The DiffIERGuider node with these knobs (the other inputs fixed, :data:`DIFFIER_FIXED`); ``preset`` adds the
    node's ``preset`` input (a cheap preset replaces every other DiffIER input)."""
    inputs = {**DIFFIER_FIXED, "eta": eta, "max_iters": it, "start_percent": window[0], "end_percent": window[1],
              "inner_guidance": inner}
    if preset is not None:
        inputs["preset"] = preset
    return NODE_IDS["diffier"], inputs


#: the DiffIER node inputs of ``benchmarks.overhead`` (as its committed results ran): η 0.05, 4 iterations at every
#: step, the guided ("cfg") inner evaluation
OVERHEAD_DIFFIER: dict[str, Any] = diffier_node(0.05, 4, "cfg", (0.0, 1.0))[1]


def _diffier(eta: float, it: int, inner: str = "cond", window: tuple[float, float] = (0.0, 1.0)) -> Setting:
    knobs: dict[str, Any] = {"eta": eta, "it": it}
    if inner != "cond":
        knobs["inner"] = inner
    if window != (0.0, 1.0):
        knobs["win"] = f"{window[0]:g}-{window[1]:g}"
    return _setting("diffier", "diffier", knobs, (diffier_node(eta, it, inner, window),))


def _diffier_preset(preset: str) -> Setting:
    """A cheap preset of the DiffIER node (its explicit inputs at the node defaults, which the preset replaces)."""
    return _setting("diffier", "diffier", {"preset": preset}, (diffier_node(0.05, 4, "cond", (0.0, 1.0), preset),))


def fixed_diffier_points() -> dict[str, Setting]:
    """The DiffIER settings that run as fixed methods: the node defaults (``quality``: η 0.05, 4 cond iterations at
    every step) and the ``balanced`` and ``fast`` presets."""
    return {"diffier_quality": _diffier(0.05, 4), "diffier_balanced": _diffier_preset("balanced"),
            "diffier_fast": _diffier_preset("fast")}


def method_grids(quick: bool = False) -> dict[str, list[Setting]]:
    """Every method's declared grid (``quick``: the reduced CI grid, budget :data:`QUICK_BUDGET`).

    DiffIER's grid holds the node defaults and both cheap presets, so the fixed points' tuning runs are grid runs.
    """
    fixed = fixed_diffier_points()
    if quick:
        apg = [_apg(e, 0.0, 0.0) for e in (0.0, 1.0)]
        diffier = [fixed["diffier_quality"], fixed["diffier_balanced"], fixed["diffier_fast"]]
        rescale, eps = (0.7,), (1.005,)
    else:
        apg = [_apg(e, t, m) for e, t, m in itertools.product((0.0, 0.5, 1.0), (0.0, 5.0), (0.0, -0.5))]
        diffier = [fixed["diffier_quality"], _diffier(0.1, 4), _diffier(0.2, 4), _diffier(0.2, 2), _diffier(0.3, 2),
                   _diffier(0.2, 4, window=(0.0, 0.5)), _diffier(0.2, 2, inner="cfg"),
                   fixed["diffier_balanced"], fixed["diffier_fast"], _diffier(0.2, 1), _diffier(0.3, 1),
                   _diffier(0.7, 1)]
        rescale, eps = (0.3, 0.5, 0.7, 0.9), (1.001, 1.003, 1.005, 1.01)
    grids = {
        "cfg": [CFG],
        "apg": apg,
        "diffier": diffier,
        "rescalecfg": [_setting("rescalecfg", "rescalecfg", {"mult": m}, ((NODE_IDS["rescalecfg"], {"multiplier": m}),))
                       for m in rescale],
        "epsilon_scaling": [_setting("epsilon_scaling", "eps", {"factor": f},
                                     ((NODE_IDS["epsilon_scaling"], {"scaling_factor": f}),)) for f in eps],
        "cfgzerostar": [_setting("cfgzerostar", "cfgzerostar", {}, ((NODE_IDS["cfgzerostar"], {}),))],
        "tcfg": [_setting("tcfg", "tcfg", {}, ((NODE_IDS["tcfg"], {}),))],
    }
    budget = QUICK_BUDGET if quick else BUDGET
    for name, grid in grids.items():
        if len(grid) > budget:
            raise ValueError(f"method {name!r} has {len(grid)} settings, over the budget of {budget}")
        if len({s.label for s in grid}) != len(grid):
            raise ValueError(f"method {name!r} has duplicate setting labels")
    return grids
