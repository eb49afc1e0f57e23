"""DiffIER's node inputs, defined once and shared by the three nodes (same ids, ranges, tooltips and defaults, the
defaults taken from the core's :data:`~diffier_core.config.DEFAULTS`)."""

from __future__ import annotations

from typing import Any

from ..diffier_core import AT_CFG_1, DEFAULTS, INNER_GUIDANCE, MODES, RANGES, DiffIERError, DiffIERParameterError
from ..diffier_core.presets import DEFAULT_PRESET, PRESETS, preset_tooltip
from . import comfy_adapter as adapter
from .comfy_adapter import io

CATEGORY = "sampling/diffier"

TOOLTIPS: dict[str, str] = {
    "mode": "consistency (default): re-evaluates the model on a freshly re-noised copy of the step's estimate "
            "and pulls the estimate toward the model's own answer (costs extra model evaluations per inner "
            "iteration, see inner_guidance). paper: Algorithm 1 as printed with a mean-squared loss (no extra "
            "evaluations; its per-element step is tiny, so its effect is small).",
    "eta": "Step size η of the inner gradient descent (paper: 5e-2). 0 turns DiffIER off.",
    "threshold": "Convergence threshold (paper: 1e-3): the inner loop stops once the relative change of the "
                 "estimate (consistency) or of the loss (paper) falls below it. 0 never stops early.",
    "max_iters": "Cap on inner iterations per sampling step; each costs one extra model evaluation in "
                 "consistency mode. 0 turns DiffIER off.",
    "start_percent": "Sampling progress at which DiffIER starts (0 = first step). Together with end_percent "
                     "this limits the correction to part of the schedule; start = end = 1 turns it off.",
    "end_percent": "Sampling progress at which DiffIER stops (1 = last step).",
    "inner_guidance": "What the consistency loop re-evaluates. cond (default): the conditional branch only, one "
                      "extra evaluation per iteration; the strongest DiffIER setting in this pack's benchmarks "
                      "(docs/EVIDENCE.md). cfg: the guided cond+uncond prediction, two evaluations per "
                      "iteration. Ignored in paper mode.",
    "preset": preset_tooltip(),
    "at_cfg_1": "What DiffIER does at cfg = 1 (Flux dev and Kontext with FluxGuidance, SDXL Lightning/Turbo/Hyper, "
                "lightning LoRAs), where ComfyUI skips the negative pass. skip (default) turns DiffIER off at cfg 1: "
                "plain sampling, and its summary and log say so. correct: runs DiffIER at cfg 1 with the conditional "
                "prediction as the guided one; consistency mode re-evaluates the conditional branch (one extra "
                "evaluation per iteration, whatever inner_guidance says), paper mode adds none. No effect at other "
                "cfg values; presets do not change it.",
    "cfg": "Classifier-free guidance scale. At 1.0 ComfyUI skips the negative pass; DiffIER then does nothing unless "
           "at_cfg_1 = correct.",
}


def diffier_inputs() -> list[io.Input]:
    """The DiffIER inputs, in order: mode, eta, threshold, max_iters, start_percent, end_percent, inner_guidance,
    preset, at_cfg_1.

    ``inner_guidance``, ``preset`` and ``at_cfg_1`` are optional and last, so workflows saved without them (API prompts
    that leave them out, UI graphs whose positional ``widgets_values`` end earlier) load and run at their defaults.
    """
    return [
        io.Combo.Input("mode", options=list(MODES), default=DEFAULTS.mode, tooltip=TOOLTIPS["mode"]),
        io.Float.Input("eta", default=DEFAULTS.eta, min=RANGES["eta"][0], max=RANGES["eta"][1], step=0.005,
                       tooltip=TOOLTIPS["eta"]),
        io.Float.Input("threshold", default=DEFAULTS.threshold, min=RANGES["threshold"][0],
                       max=RANGES["threshold"][1], step=0.0001, round=0.00001, tooltip=TOOLTIPS["threshold"]),
        io.Int.Input("max_iters", default=DEFAULTS.max_iters, min=int(RANGES["max_iters"][0]),
                     max=int(RANGES["max_iters"][1]), tooltip=TOOLTIPS["max_iters"]),
        io.Float.Input("start_percent", default=DEFAULTS.start_percent, min=RANGES["start_percent"][0],
                       max=RANGES["start_percent"][1], step=0.001, tooltip=TOOLTIPS["start_percent"]),
        io.Float.Input("end_percent", default=DEFAULTS.end_percent, min=RANGES["end_percent"][0],
                       max=RANGES["end_percent"][1], step=0.001, tooltip=TOOLTIPS["end_percent"]),
        io.Combo.Input("inner_guidance", options=list(INNER_GUIDANCE), default=DEFAULTS.inner_guidance,
                       optional=True, tooltip=TOOLTIPS["inner_guidance"]),
        io.Combo.Input("preset", options=list(PRESETS), default=DEFAULT_PRESET, optional=True,
                       tooltip=TOOLTIPS["preset"]),
        io.Combo.Input("at_cfg_1", options=list(AT_CFG_1), default=DEFAULTS.at_cfg_1, optional=True,
                       tooltip=TOOLTIPS["at_cfg_1"]),
    ]


def conditioning_inputs() -> list[io.Input]:
    """The ``positive`` and ``negative`` inputs, as KSampler and CFGGuider name them."""
    return [io.Conditioning.Input("positive", tooltip="What the image should contain."),
            io.Conditioning.Input("negative", tooltip="What the image should not contain.")]


def cfg_input() -> io.Input:
    """The ``cfg`` input, as KSampler and CFGGuider define it."""
    return io.Float.Input("cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip=TOOLTIPS["cfg"])


def validate_diffier_inputs(mode: Any, inner_guidance: Any = None, preset: Any = None, at_cfg_1: Any = None,
                            **combos: tuple[Any, list[str]]) -> bool | str:
    """The nodes' ``validate_inputs``: True, or the error text ComfyUI shows at queue time.

    It checks only the combo inputs, whose values ComfyUI 0.3.75 does not check for V3 nodes (``mode``,
    ``inner_guidance``, ``preset``, ``at_cfg_1``; ``combos`` maps the node's other combo inputs to
    ``(value, options)``). Every other input is left to ComfyUI on purpose: 0.3.75 skips its own ``min``/``max``
    check for each input named as an argument of ``validate_inputs`` and reports a failing ``validate_inputs``
    against *all* its arguments, so an out-of-range ``eta`` checked here would come back attached to every
    argument. Left to ComfyUI's schema check, ``eta = 2.0`` comes back against ``eta`` alone ("Value 2.0 bigger than max
    of 1.0"). What ``min``/``max`` cannot catch (NaN, ``start_percent`` > ``end_percent``, a value that
    arrives through a link) is rejected when the node runs, by :class:`~diffier_core.config.DiffIERSettings`,
    with a ``DiffIERParameterError`` naming the input, the value and the range.

    Args:
        mode: the ``mode`` combo value (``None`` when linked: checked when the node runs).
        inner_guidance: the optional ``inner_guidance`` combo value (``None`` when absent or linked).
        preset: the optional ``preset`` combo value (``None`` when absent or linked).
        at_cfg_1: the optional ``at_cfg_1`` combo value (``None`` when absent or linked).
        **combos: further combo inputs, ``name=(value, options)``.
    """
    try:
        choices = {"mode": (mode, list(MODES)), "inner_guidance": (inner_guidance, list(INNER_GUIDANCE)),
                   "preset": (preset, list(PRESETS)), "at_cfg_1": (at_cfg_1, list(AT_CFG_1)), **combos}
        for name, (value, options) in choices.items():
            if value is not None and value not in options:
                raise DiffIERParameterError(name, value, f"one of {options}")
    except DiffIERError as exc:
        return str(exc)
    return True


class DiffIERNode(io.ComfyNode):
    """Base of the three DiffIER nodes (not a node itself): the shared schema frame.

    A subclass writes ``define_schema`` as ``cls.diffier_schema(...)`` with its own leading inputs, and
    ``execute`` taking its own inputs and ``**diffier: Unpack[DiffIERInputs]``; DiffIER's inputs
    (:func:`diffier_inputs`) always follow the node's own and become one
    :class:`~diffier_core.config.DiffIERSettings` (``diffier_core.presets.settings_for``).
    """

    @classmethod
    def diffier_schema(cls, node_id: str, display_name: str, alias: str, inputs: list[io.Input],
                       outputs: list[io.Output], description: str) -> io.Schema:
        """The node's schema: category ``sampling/diffier``, DiffIER search aliases, ``inputs`` then DiffIER's.

        Args:
            node_id: the node id saved workflows refer to (never change it).
            display_name: the title in the node menu.
            alias: one more search alias besides "DiffIER" and "iterative error reduction".
            inputs: the node's own inputs, before DiffIER's.
            outputs: the node's outputs.
            description: the node's help text.
        """
        return io.Schema(
            node_id=node_id,
            **adapter.schema_extras(search_aliases=["DiffIER", "iterative error reduction", alias]),
            display_name=display_name,
            category=CATEGORY,
            description=description,
            inputs=[*inputs, *diffier_inputs()],
            outputs=outputs,
        )


class DiffIERCombosNode(DiffIERNode):
    """A DiffIER node whose only combo inputs are DiffIER's (the Guider and the CFG Guider): it checks them at queue
    time; KSampler (DiffIER) adds its sampler and scheduler combos to the same check."""

    @classmethod
    def validate_inputs(cls, mode: Any, inner_guidance: Any = None, preset: Any = None,
                        at_cfg_1: Any = None) -> bool | str:
        """Only the combos: ComfyUI range-checks eta, threshold, ... per input (see validate_diffier_inputs)."""
        return validate_diffier_inputs(mode, inner_guidance, preset, at_cfg_1)
