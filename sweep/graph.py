"""The user's API-format workflow: find its sampler, insert a method's patch chain, set ω, prompt and seed.

Everything here is a pure function on the workflow dict (``{node_id: {"class_type", "inputs"}}``, what
ComfyUI's "Export (API)" writes and ``POST /prompt`` takes) and on a server's ``/object_info``. The input
workflow is never changed: every function that edits returns a deep copy.

Only four things change in a job's copy of the workflow: the patch nodes are added (their ``model``
wired to what fed the sampler's model input, the sampler's model input wired to the last of them), the
sampler's CFG weight, the positive prompt's text (when prompts are given) and the seed (when seeds are
given). A sampler with DiffIER built in (``KSamplerDiffIER``, ``DiffIERCFGGuider``) gets ``eta = 0`` (its
own DiffIER off), so that every column, the ``cfg`` one included, is decided by the inserted chain alone.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from .methods import DIFFIER_NODE, Method

PATCH_PREFIX = "diffier_sweep_"


class WorkflowError(ValueError):
    """The workflow cannot be swept as given; the message names the node and input."""


@dataclass(frozen=True)
class SamplerKind:
    """Where a sampler class keeps its model, CFG weight, positive conditioning and seed."""

    model: str = "model"
    cfg: str = "cfg"
    positive: str = "positive"
    seed: str | None = "seed"  # None: the seed is on the RandomNoise node feeding SamplerCustomAdvanced
    own_diffier: bool = False


SAMPLERS: dict[str, SamplerKind] = {
    "KSampler": SamplerKind(),
    "KSamplerAdvanced": SamplerKind(seed="noise_seed"),
    "KSamplerDiffIER": SamplerKind(own_diffier=True),
    "SamplerCustom": SamplerKind(seed="noise_seed"),
    "CFGGuider": SamplerKind(seed=None),
    "DiffIERCFGGuider": SamplerKind(seed=None, own_diffier=True),
}


@dataclass(frozen=True)
class Target:
    """A literal input of one node: ``node_id.input``."""

    node: str
    input: str

    def __str__(self) -> str:
        return f"{self.node}.{self.input}"


@dataclass(frozen=True)
class SweepPoints:
    """Where the sweep writes: the sampler (model, CFG), the prompt text and the seed (``None``: not swept)."""

    sampler: str
    kind: SamplerKind
    cfg: Target
    prompt: Target | None
    seed: Target | None


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int) \
        and isinstance(value[1], int)


def load_workflow(text: str, source: str = "workflow") -> dict[str, dict]:
    """Parse and check an API-format workflow (a UI-format file gets a message saying how to export).

    Args:
        text: the JSON text.
        source: the file name, for messages.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise WorkflowError(f"{source}: not JSON ({exc})") from exc
    if isinstance(data, dict) and "prompt" in data and isinstance(data["prompt"], dict):
        data = data["prompt"]  # a saved POST /prompt body
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowError(f"{source}: this is a UI-format workflow (it has 'nodes' and 'links'); save it with "
                            f"Workflow → Export (API) in ComfyUI and pass that file")
    if not isinstance(data, dict) or not data:
        raise WorkflowError(f"{source}: expected an API-format workflow, a JSON object of nodes")
    for node_id, node in data.items():
        if not isinstance(node, dict) or "class_type" not in node or not isinstance(node.get("inputs", {}), dict):
            raise WorkflowError(f"{source}: node {node_id!r} has no class_type/inputs; is this an API-format "
                                f"workflow (Workflow → Export (API))?")
        node.setdefault("inputs", {})
    return {str(k): v for k, v in data.items()}


def find_sampler(workflow: dict[str, dict], sampler_id: str | None = None) -> str:
    """The id of the one sampler node (``sampler_id`` picks one when there are several).

    Args:
        workflow: the API workflow.
        sampler_id: the ``--sampler`` choice, or None.
    """
    found = [k for k, v in workflow.items() if v["class_type"] in SAMPLERS]
    supported = ", ".join(SAMPLERS)
    if sampler_id is not None:
        if sampler_id not in workflow:
            raise WorkflowError(f"--sampler {sampler_id}: the workflow has no node {sampler_id!r} "
                                f"(its samplers: {_describe(workflow, found) or 'none'})")
        if workflow[sampler_id]["class_type"] not in SAMPLERS:
            raise WorkflowError(f"--sampler {sampler_id}: node {sampler_id} is a {workflow[sampler_id]['class_type']}, "
                                f"not one of the samplers the sweep can drive ({supported})")
        return sampler_id
    if not found:
        custom = [k for k, v in workflow.items() if v["class_type"] == "SamplerCustomAdvanced"]
        hint = (f" (node {custom[0]} is SamplerCustomAdvanced: its guider must be a CFGGuider or DiffIERCFGGuider)"
                if custom else "")
        raise WorkflowError(f"the workflow has no sampler node{hint}; the sweep drives one of: {supported}")
    if len(found) > 1:
        raise WorkflowError(f"the workflow has {len(found)} sampler nodes ({_describe(workflow, found)}); pick the "
                            f"one to sweep with --sampler NODE_ID")
    return found[0]


def _describe(workflow: dict[str, dict], ids: list[str]) -> str:
    return ", ".join(f"{k}: {workflow[k]['class_type']}" for k in ids)


def parse_target(text: str, workflow: dict[str, dict], what: str) -> Target:
    """``NODE_ID.INPUT`` of ``--prompt-input``/``--seed-input``, checked against the workflow."""
    node, dot, name = text.rpartition(".")
    if not dot or not node or not name:
        raise WorkflowError(f"--{what}-input {text!r}: expected NODE_ID.INPUT, e.g. 6.text")
    if node not in workflow:
        raise WorkflowError(f"--{what}-input {text!r}: the workflow has no node {node!r}")
    if name not in workflow[node]["inputs"]:
        raise WorkflowError(f"--{what}-input {text!r}: node {node} ({workflow[node]['class_type']}) has no input "
                            f"{name!r} (it has: {', '.join(workflow[node]['inputs'])})")
    if is_link(workflow[node]["inputs"][name]):
        raise WorkflowError(f"--{what}-input {text!r}: that input is wired to node "
                            f"{workflow[node]['inputs'][name][0]}; name the node that holds the value")
    return Target(node, name)


def _literal(workflow: dict[str, dict], node: str, name: str, what: str, flag: str) -> Target:
    inputs = workflow[node]["inputs"]
    if name not in inputs:
        raise WorkflowError(f"node {node} ({workflow[node]['class_type']}) has no {name!r} input to set the {what}; "
                            f"name it with {flag}")
    if is_link(inputs[name]):
        src = str(inputs[name][0])
        raise WorkflowError(f"node {node} ({workflow[node]['class_type']}) gets its {what} from node {src} "
                            f"({workflow.get(src, {}).get('class_type', '?')}); name the input that holds it with "
                            f"{flag} NODE_ID.INPUT")
    return Target(node, name)


def _seed_target(workflow: dict[str, dict], sampler: str, kind: SamplerKind) -> Target:
    if kind.seed is not None:
        return _literal(workflow, sampler, kind.seed, "seed", "--seed-input")
    users = [k for k, v in workflow.items() if v["class_type"] == "SamplerCustomAdvanced"
             and is_link(v["inputs"].get("guider")) and str(v["inputs"]["guider"][0]) == sampler]
    if len(users) != 1:
        raise WorkflowError(f"guider node {sampler} feeds {len(users)} SamplerCustomAdvanced nodes; name the seed "
                            f"with --seed-input NODE_ID.INPUT")
    noise = users[0]
    link = workflow[noise]["inputs"].get("noise")
    if not is_link(link) or "noise_seed" not in workflow.get(str(link[0]), {}).get("inputs", {}):
        raise WorkflowError(f"SamplerCustomAdvanced node {noise} gets no RandomNoise with a noise_seed; name the seed "
                            f"with --seed-input NODE_ID.INPUT")
    return _literal(workflow, str(link[0]), "noise_seed", "seed", "--seed-input")


def _prompt_target(workflow: dict[str, dict], sampler: str, kind: SamplerKind) -> Target:
    link = workflow[sampler]["inputs"].get(kind.positive)
    if not is_link(link):
        raise WorkflowError(f"sampler node {sampler} has no wired {kind.positive!r} input; name the prompt with "
                            f"--prompt-input NODE_ID.INPUT")
    node = str(link[0])
    if "text" not in workflow.get(node, {}).get("inputs", {}):
        cls = workflow.get(node, {}).get("class_type", "?")
        raise WorkflowError(f"the sampler's positive input comes from node {node} ({cls}), which has no 'text' input; "
                            f"name the input that holds the prompt with --prompt-input NODE_ID.INPUT")
    return _literal(workflow, node, "text", "prompt", "--prompt-input")


def sweep_points(workflow: dict[str, dict], sampler_id: str | None = None, prompt_input: str | None = None,
                 seed_input: str | None = None, need_prompt: bool = False, need_seed: bool = False,
                 cfg_input: str | None = None) -> SweepPoints:
    """Find the sampler and every input the sweep writes, or raise :class:`WorkflowError` naming the problem.

    Args:
        workflow: the API workflow.
        sampler_id: ``--sampler``.
        prompt_input, seed_input, cfg_input: ``--prompt-input`` / ``--seed-input`` / ``--cfg-input``
            (``NODE_ID.INPUT``), or None to find them (the positive CLIPTextEncode's ``text``; the sampler's
            seed or its RandomNoise's; the sampler's CFG weight).
        need_prompt, need_seed: whether prompts / seeds are swept (otherwise a missing target is fine).
    """
    sampler = find_sampler(workflow, sampler_id)
    kind = SAMPLERS[workflow[sampler]["class_type"]]
    if not is_link(workflow[sampler]["inputs"].get(kind.model)):
        raise WorkflowError(f"sampler node {sampler} ({workflow[sampler]['class_type']}) has no wired "
                            f"{kind.model!r} input")
    cfg = parse_target(cfg_input, workflow, "cfg") if cfg_input else _literal(workflow, sampler, kind.cfg,
                                                                               "CFG weight", "--cfg-input")
    prompt = seed = None
    if prompt_input:
        prompt = parse_target(prompt_input, workflow, "prompt")
    elif need_prompt:
        prompt = _prompt_target(workflow, sampler, kind)
    if seed_input:
        seed = parse_target(seed_input, workflow, "seed")
    elif need_seed:
        seed = _seed_target(workflow, sampler, kind)
    return SweepPoints(sampler, kind, cfg, prompt, seed)


def upstream_patches(workflow: dict[str, dict], points: SweepPoints, class_types: tuple[str, ...]) -> list[str]:
    """Ids of nodes of ``class_types`` on the sampler's model path (followed through every ``model`` input)."""
    found, seen = [], set()
    link = workflow[points.sampler]["inputs"].get(points.kind.model)
    while is_link(link) and str(link[0]) in workflow and str(link[0]) not in seen:
        node_id = str(link[0])
        seen.add(node_id)
        if workflow[node_id]["class_type"] in class_types:
            found.append(node_id)
        link = workflow[node_id]["inputs"].get("model")
    return found


def build_job_workflow(workflow: dict[str, dict], points: SweepPoints, method: Method, omega: float,
                       prompt: str | None, seed: int | None) -> dict[str, dict]:
    """A copy of the workflow with the method's chain inserted and ω, prompt and seed set.

    Args:
        workflow: the user's API workflow (not changed).
        points: from :func:`sweep_points`.
        method: the column (its steps become nodes ``diffier_sweep_1``, ``diffier_sweep_2``, ...).
        omega: the CFG weight.
        prompt, seed: the values to set, or None to keep the workflow's.
    """
    wf = copy.deepcopy(workflow)
    sampler = wf[points.sampler]["inputs"]
    upstream = sampler[points.kind.model]
    for i, step in enumerate(method.steps, start=1):
        node_id = f"{PATCH_PREFIX}{i}"
        if node_id in wf:
            raise WorkflowError(f"the workflow already has a node {node_id!r}; the sweep needs that id for its patch")
        wf[node_id] = {"class_type": step.node, "inputs": {**dict(step.inputs), "model": upstream},
                       "_meta": {"title": f"sweep: {method.label}"}}
        upstream = [node_id, 0]
    sampler[points.kind.model] = upstream
    if points.kind.own_diffier:
        sampler["eta"] = 0.0  # the chain alone decides; see the module docstring
    wf[points.cfg.node]["inputs"][points.cfg.input] = float(omega)
    if prompt is not None and points.prompt is not None:
        wf[points.prompt.node]["inputs"][points.prompt.input] = prompt
    if seed is not None and points.seed is not None:
        wf[points.seed.node]["inputs"][points.seed.input] = int(seed)
    return wf


# -- /object_info checks ---------------------------------------------------------------------------------------

def input_specs(info: dict, class_type: str) -> dict[str, list]:
    """``{input name: spec}`` (required and optional) of a node class in ``/object_info``."""
    spec = info.get(class_type, {}).get("input", {})
    return {**spec.get("required", {}), **spec.get("optional", {})}


def combo_options(spec: Any) -> list | None:
    """The allowed values of a combo input spec (old ``[[...], {...}]`` and V3 ``["COMBO", {"options"}]``)."""
    if not isinstance(spec, list | tuple) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1].get("options")
    return None


_MODEL_FOLDERS = {"ckpt_name": "checkpoints", "unet_name": "diffusion_models", "vae_name": "vae",
                  "lora_name": "loras", "clip_name": "text_encoders", "clip_name1": "text_encoders",
                  "clip_name2": "text_encoders", "control_net_name": "controlnet", "model_name": "models",
                  "upscale_model": "upscale_models"}


def check_against_server(workflow: dict[str, dict], info: dict, server: str, methods: list[Method]) -> list[str]:
    """Everything a server lacks to run the sweep, one clear sentence each (empty: it can run it).

    Checks the pack (``DiffIERGuider``) when a method uses DiffIER, every node class of the workflow and of
    the methods, every combo value of the workflow (a missing checkpoint, LoRA, VAE...: the value is not in
    the loader's list) and the names of the methods' inputs.

    Args:
        workflow: the user's API workflow.
        info: the server's ``/object_info``.
        server: its URL, for the messages.
        methods: the sweep's columns.
    """
    problems = []
    if any(m.uses_diffier for m in methods) and DIFFIER_NODE not in info:
        problems.append(f"server {server} has no {DIFFIER_NODE} node: the ComfyUI-DiffIER pack is not installed "
                        f"there (custom_nodes/ComfyUI-DiffIER) or failed to load (see that server's console)")
    for node_id, node in workflow.items():
        cls = node["class_type"]
        if cls not in info:
            problems.append(f"server {server} has no node type {cls!r} (workflow node {node_id}); install the "
                            f"node pack that provides it there")
            continue
        specs = input_specs(info, cls)
        for name, value in node["inputs"].items():
            options = combo_options(specs.get(name))
            if options is None or is_link(value) or value in options:
                continue
            what = (f"missing model file: {name} = {value!r} is not in that server's "
                    f"models/{_MODEL_FOLDERS[name]} list" if name in _MODEL_FOLDERS else f"{name} = {value!r} is "
                    f"not one of the allowed values")
            shown = ", ".join(map(repr, options[:12])) + (" ..." if len(options) > 12 else "")
            problems.append(f"server {server}, workflow node {node_id} ({cls}): {what} (the server offers: "
                            f"{shown or 'nothing'})")
    for method in methods:
        for step in method.steps:
            if step.node not in info:
                problems.append(f"server {server} has no node type {step.node!r} (method {method.label!r})")
                continue
            specs = input_specs(info, step.node)
            if specs.get("model", [None])[0] != "MODEL" or info[step.node].get("output", [None])[0] != "MODEL":
                problems.append(f"method {method.label!r}: {step.node} is not a MODEL → MODEL patch node")
            for name, _ in step.inputs:
                if name not in specs:
                    problems.append(f"method {method.label!r}: {step.node} has no input {name!r} on server {server} "
                                    f"(it has: {', '.join(k for k in specs if k != 'model')})")
    return problems


def fill_defaults(workflow: dict[str, dict], info: dict) -> dict[str, dict]:
    """A copy where the sweep's patch nodes get the server's default for every input not set, with types
    coerced to the spec (``FLOAT``/``INT``/``BOOLEAN``), so ``apg`` alone is a complete APG node."""
    wf = copy.deepcopy(workflow)
    for node_id, node in wf.items():
        if not node_id.startswith(PATCH_PREFIX):
            continue
        for name, spec in input_specs(info, node["class_type"]).items():
            if name == "model" or not isinstance(spec, list | tuple):
                continue
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if name not in node["inputs"] and "default" in options:
                node["inputs"][name] = options["default"]
            if name in node["inputs"]:
                node["inputs"][name] = _coerce(spec[0], node["inputs"][name])
    return wf


def _coerce(kind: Any, value: Any) -> Any:
    try:
        if kind == "FLOAT" and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind == "INT" and isinstance(value, float) and value.is_integer():
            return int(value)
    except (TypeError, ValueError):
        return value
    return value
