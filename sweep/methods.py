"""The ``--method`` grammar: which MODEL → MODEL patch nodes a sweep column inserts before the sampler.

A method is ``[LABEL=]STEP[+STEP...]``; a step is ``NAME[:key=value[,key=value...]]``, where NAME is a
ComfyUI node id (``DiffIERGuider``, ``APG``, ``RescaleCFG``, ``CFGZeroStar``, ``TCFG``, any node whose
``model`` input and first output are MODEL) or one of the aliases in :data:`ALIASES`. The steps chain in
the order written: ``rescalecfg+diffier`` is loader → RescaleCFG → DiffIER Guider → sampler. ``cfg``
(also ``plain``, ``none``) is the empty chain: the workflow as the user wired it.

A value may list alternatives separated by ``|``; the method then expands into one column per
combination (``diffier:eta=0.02|0.05,max_iters=2|4`` gives four columns). Values are read as JSON where
they parse (numbers, ``true``/``false``), otherwise as text (``mode=paper``).

Examples::

    cfg
    diffier
    diffier:eta=0.1,max_iters=8
    diffier-cfg                       # inner_guidance=cfg
    rescalecfg:multiplier=0.7+diffier
    apg:eta=1.0,norm_threshold=5|10
    fast=diffier:max_iters=2
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from benchmarks.tuning import NODE_IDS

#: alias -> (ComfyUI node id, inputs the alias sets); the node ids are the benchmarks' one registry's
#: (:data:`benchmarks.tuning.NODE_IDS`), every other input is the node's default
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "diffier": (NODE_IDS["diffier"], {}),
    "diffier-paper": (NODE_IDS["diffier"], {"mode": "paper"}),
    "diffier-cfg": (NODE_IDS["diffier"], {"inner_guidance": "cfg"}),
    "apg": (NODE_IDS["apg"], {}),
    "rescalecfg": (NODE_IDS["rescalecfg"], {}),
    "rescale": (NODE_IDS["rescalecfg"], {}),
    "cfgzero": (NODE_IDS["cfgzerostar"], {}),
    "cfgzerostar": (NODE_IDS["cfgzerostar"], {}),
    "cfg-zero*": (NODE_IDS["cfgzerostar"], {}),
    "tcfg": (NODE_IDS["tcfg"], {}),
}
PLAIN = ("cfg", "plain", "none")
DIFFIER_NODE = NODE_IDS["diffier"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.*\- ]*$")


class MethodSpecError(ValueError):
    """A ``--method`` value that does not parse; the message names the value and the grammar."""


@dataclass(frozen=True)
class Step:
    """One patch node: its ComfyUI node id and the inputs set on it (``model`` is wired by the sweep)."""

    node: str
    inputs: tuple[tuple[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "inputs": dict(self.inputs)}


@dataclass(frozen=True)
class Method:
    """A sweep column: a label and the chain of patch steps (empty: plain CFG)."""

    label: str
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def canonical(self) -> list[dict[str, Any]]:
        """What identifies the method in a job hash (the label does not: renaming keeps results)."""
        return [s.as_dict() for s in self.steps]

    @property
    def uses_diffier(self) -> bool:
        return any(s.node == DIFFIER_NODE for s in self.steps)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _parse_step(text: str, spec: str) -> tuple[str, str, dict[str, Any], list[tuple[str, list[Any]]]]:
    """``(name as written, node id, fixed inputs, [(key, alternatives)])`` of one step."""
    name, _, args = text.strip().partition(":")
    name = name.strip()
    if not name or not _NAME.match(name):
        raise MethodSpecError(f"--method {spec!r}: bad node name {name!r} (expected a ComfyUI node id such as "
                              f"RescaleCFG or an alias: {', '.join(sorted(ALIASES))})")
    node, fixed = ALIASES.get(name.lower(), (name, {}))
    options: list[tuple[str, list[Any]]] = []
    for pair in filter(None, (a.strip() for a in args.split(","))):
        key, eq, raw = pair.partition("=")
        key = key.strip()
        if not eq or not key or not raw.strip():
            raise MethodSpecError(f"--method {spec!r}: {pair!r} is not key=value (e.g. diffier:eta=0.1,max_iters=4)")
        if key == "model":
            raise MethodSpecError(f"--method {spec!r}: 'model' is wired by the sweep and cannot be set")
        options.append((key, [_value(v.strip()) for v in raw.split("|")]))
    return name, node, dict(fixed), options


def _split_label(spec: str) -> tuple[str | None, str]:
    head, eq, rest = spec.partition("=")
    if eq and rest.strip() and not any(c in head for c in ":,+") and head.strip():
        return head.strip(), rest.strip()
    return None, spec.strip()


def parse_method(spec: str) -> list[Method]:
    """All columns one ``--method`` value expands into (one unless a value lists ``|`` alternatives).

    Args:
        spec: the ``--method`` text, e.g. ``"rescalecfg:multiplier=0.7+diffier:eta=0.05|0.1"``.
    """
    label, chain = _split_label(spec)
    if not chain:
        raise MethodSpecError(f"--method {spec!r}: empty method")
    if chain.lower() in PLAIN:
        return [Method(label or "cfg")]
    parsed = [_parse_step(part, spec) for part in chain.split("+")]
    axes = [(i, key, values) for i, (_, _, _, options) in enumerate(parsed) for key, values in options]
    expands = any(len(values) > 1 for _, _, values in axes)
    methods = []
    for combo in itertools.product(*(values for _, _, values in axes)):
        chosen: dict[int, dict[str, Any]] = {}
        for (i, key, _), value in zip(axes, combo, strict=True):
            chosen.setdefault(i, {})[key] = value
        steps = tuple(Step(node, tuple(sorted({**fixed, **chosen.get(i, {})}.items())))
                      for i, (_, node, fixed, _) in enumerate(parsed))
        if not expands:
            name = label or chain.replace(" ", "")
        else:
            varied = ",".join(f"{key}={_fmt(value)}" for (_, key, values), value in zip(axes, combo, strict=True)
                              if len(values) > 1)
            name = f"{label}[{varied}]" if label else "+".join(
                raw + (":" + ",".join(f"{k}={_fmt(v)}" for k, v in chosen[i].items()) if i in chosen else "")
                for i, (raw, _, _, _) in enumerate(parsed))
        methods.append(Method(name, steps))
    return methods


def parse_methods(specs: list[str]) -> list[Method]:
    """Every column of the sweep, in order; labels must be unique."""
    methods = [m for spec in specs for m in parse_method(spec)]
    seen: dict[str, Method] = {}
    for m in methods:
        if m.label in seen:
            raise MethodSpecError(f"--method: two columns are both labelled {m.label!r}; give one a label "
                                  f"(LABEL=...)")
        seen[m.label] = m
    return methods
