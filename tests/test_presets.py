"""The ``preset`` input of the three DiffIER nodes.

* each preset's model evaluations, counted row by row through ComfyUI's real sampler (an ``APPLY_MODEL`` wrapper,
  as benchmarks/harness.py counts), on all three routes, against the bound the preset promises;
* a workflow without ``preset`` gives the image that ``preset = quality`` and ``preset = custom`` give, and the
  image of its explicit inputs as settings applied directly (``DiffIERPatch(DiffIERSettings(...))``), bit for bit:
  the same kernels on the same shapes in one process (a same-machine claim, as in tests/test_nodes.py);
* a bad preset is an error naming ``preset`` (at queue time through ComfyUI's own validation, and when the node runs);
* on a real server, an old API prompt (no ``preset``, no ``at_cfg_1``) queues, runs and equals ``preset = quality``
  and ``at_cfg_1 = skip``; a bad preset or ``at_cfg_1`` is a 400 naming the input;
* the shipped presets' settings are the choice recorded in docs/results/archive/frontier_presets.json, which the
  cost-frontier benchmark wrote on its tuning seeds (archived with its code at the commit that made it); the numbers
  the ``preset`` tooltip quotes are what the confirmatory documents (docs/results/evidence/confirmatory_*.json)
  record for each preset against ``quality`` and plain CFG at matched adherence.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
from pathlib import Path

import pytest
import torch
from tiny_models import make_latent, make_model

from benchmarks.instruments import ModelRows

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
NODE_IDS = ("DiffIERGuider", "KSamplerDiffIER", "DiffIERCFGGuider")
DIFFIER = {"mode": "consistency", "eta": 0.05, "threshold": 1e-3, "max_iters": 4, "start_percent": 0.0,
           "end_percent": 1.0}
PRESETS_JSON = REPO / "docs" / "results" / "archive" / "frontier_presets.json"


@functools.cache
def tiny():
    return make_model("eps", seed=0)


def sample(run_node, route: str, model, steps: int, seed: int = 3, cfg: float = 4.0, tm=None,
           scheduler: str = "normal", **diffier):
    """One euler run of ``route`` (a node id) with the DiffIER inputs ``diffier``; the latent."""
    tm = tm or tiny()
    pos, neg, latent = tm.make_cond(1, seed=1), tm.make_cond(1, seed=0), make_latent(tm, 1)
    if route == "KSamplerDiffIER" or route == "KSampler":
        out = run_node(route, model=model, seed=seed, steps=steps, cfg=cfg, sampler_name="euler", scheduler=scheduler,
                       positive=pos, negative=neg, latent_image=latent, denoise=1.0, **diffier)
        return out[0]["samples"]
    if route == "DiffIERGuider":
        (patched,) = run_node("DiffIERGuider", model=model, **diffier)
        return sample(run_node, "KSampler", patched, steps, seed, cfg, tm, scheduler)
    (guider,) = run_node("DiffIERCFGGuider", model=model, positive=pos, negative=neg, cfg=cfg, **diffier)
    (noise,) = run_node("RandomNoise", noise_seed=seed)
    (sampler,) = run_node("KSamplerSelect", sampler_name="euler")
    (sigmas,) = run_node("BasicScheduler", model=tm.patcher, scheduler=scheduler, steps=steps, denoise=1.0)
    out = run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                   latent_image=latent)
    return out[0]["samples"]


def rows_of(run_node, route: str, steps: int, tm=None, **kwargs) -> int:
    rows = ModelRows()
    sample(run_node, route, rows.on((tm or tiny()).patcher), steps, tm=tm, **kwargs)
    return rows.rows


# -- evaluation counts -------------------------------------------------------------------------------
@pytest.mark.parametrize("route", NODE_IDS)
def test_each_preset_costs_what_it_promises(pack_module, run_node, route):
    """Plain CFG: 2 rows per euler step. balanced: exactly one cond row more per step (1.5×); fast: one cond row on
    every 2nd step of its window, within 1.2×; quality: 1 to 4 extra rows per step. The rows counted at the model
    equal the evaluations DiffIER reports (KSampler (DiffIER)'s diffier_info), on every route."""
    P = pack_module.diffier_core.presets
    budgets = {"balanced": 1.5, "fast": 1.2}
    for steps in (10, 16):
        plain = rows_of(run_node, "KSampler", steps)
        assert plain == 2 * steps
        for name, budget in [*budgets.items(), ("quality", None)]:
            got = rows_of(run_node, route, steps, **DIFFIER, preset=name)
            rows = ModelRows()
            out = run_node("KSamplerDiffIER", model=rows.on(tiny().patcher), seed=3, steps=steps, cfg=4.0,
                           sampler_name="euler", scheduler="normal", positive=tiny().make_cond(1, seed=1),
                           negative=tiny().make_cond(1, seed=0), latent_image=make_latent(tiny(), 1), denoise=1.0,
                           **DIFFIER, preset=name)
            assert got == rows.rows == plain + json.loads(out[1])["extra_model_evals"], (route, name, steps)
            if budget is None:
                assert 2 * steps + steps <= got <= 2 * steps + 4 * steps   # ≥ 1 iteration per step, ≤ max_iters
                assert got > 1.5 * plain   # full DiffIER really is the expensive one here
                assert rows_of(run_node, route, steps, **DIFFIER, preset="custom") == got
                continue
            s = P.CHEAP_PRESETS[name]
            assert plain < got <= budget * plain + 1e-9, (route, name, steps, got / plain)
            assert got - plain <= P.extra_rows_bound(s, steps)
            if (s.start_percent, s.end_percent) == (0.0, 1.0):
                assert got - plain == math.ceil(steps / s.stride) * s.max_iters, (route, name, steps, got)


def test_cheap_presets_cost_on_every_comfyui_scheduler(pack_module, run_node):
    """What the tooltip says: balanced exactly 1.5×; fast at most 1.2× on every scheduler at 10 and 20 steps on EPS
    and flow models, except linear_quadratic on EPS (1.25×); 1.15× with the normal scheduler."""
    import comfy.samplers

    flow = make_model("flow", seed=0)
    for tm, kind, steps_list in ((tiny(), "eps", (10, 20)), (flow, "flow", (10,))):
        for scheduler in comfy.samplers.SCHEDULER_NAMES:
            for steps in steps_list:
                plain = rows_of(run_node, "KSampler", steps, tm=tm, scheduler=scheduler)
                assert plain == 2 * steps
                ratio = {n: rows_of(run_node, "KSamplerDiffIER", steps, tm=tm, scheduler=scheduler, **DIFFIER,
                                    preset=n) / plain for n in ("balanced", "fast")}
                assert ratio["balanced"] == 1.5, (kind, scheduler, steps)
                limit = 1.25 if (kind, scheduler) == ("eps", "linear_quadratic") else 1.2
                assert 1.0 < ratio["fast"] <= limit + 1e-9, (kind, scheduler, steps, ratio)
                if scheduler == "normal":
                    assert ratio["fast"] == 1.15
    assert "1.25× with linear_quadratic" in _tooltip(pack_module) and "exactly 1.5×" in _tooltip(pack_module)


def _tooltip(pack_module) -> str:
    return pack_module.diffier_core.presets.preset_tooltip()


def test_cheap_presets_ignore_the_explicit_inputs(run_node):
    """balanced/fast replace every other DiffIER input: widgets set elsewhere change nothing."""
    for name in ("balanced", "fast"):
        a = sample(run_node, "KSamplerDiffIER", tiny().patcher, 6, **DIFFIER, preset=name)
        b = sample(run_node, "KSamplerDiffIER", tiny().patcher, 6, **{**DIFFIER, "eta": 0.9, "max_iters": 9,
                                                                       "start_percent": 0.5}, preset=name,
                   inner_guidance="cfg")
        assert torch.equal(a, b), name
    c = sample(run_node, "KSamplerDiffIER", tiny().patcher, 6, **{**DIFFIER, "eta": 0.9}, preset="custom")
    d = sample(run_node, "KSamplerDiffIER", tiny().patcher, 6, **DIFFIER, preset="custom")
    assert not torch.equal(c, d)   # custom: the inputs rule


# -- old workflows ---------------------------------------------------------------------------------
def test_without_preset_the_image_is_bit_identical_to_quality_and_to_before(pack_module, run_node):
    tm = tiny()
    nodes = pack_module.nodes
    inputs = {**DIFFIER, "inner_guidance": "cond"}
    # the explicit inputs as settings, applied directly: what every node runs without the preset input
    settings = pack_module.diffier_core.DiffIERSettings(**inputs)
    before = sample(run_node, "KSampler", nodes.patch.DiffIERPatch(settings).apply(tm.patcher), 5)
    plain = sample(run_node, "KSampler", tm.patcher, 5)
    assert not torch.equal(before, plain)   # DiffIER did something
    for route in NODE_IDS:
        old = sample(run_node, route, tm.patcher, 5, **inputs)                     # an old workflow: no preset
        older = sample(run_node, route, tm.patcher, 5, **DIFFIER)                   # nor inner_guidance
        assert torch.equal(old, before), route
        assert torch.equal(older, before), route
        for preset in ("quality", "custom"):
            assert torch.equal(sample(run_node, route, tm.patcher, 5, **inputs, preset=preset), before), (route,
                                                                                                          preset)


def test_preset_is_optional_after_inner_guidance_and_defaults_to_quality(comfy_nodes):
    """Optional, after ``inner_guidance``; only ``at_cfg_1`` (tests/test_at_cfg_1.py) follows it."""
    for node_id in NODE_IDS:
        info = comfy_nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1()
        optional = info["input"]["optional"]
        assert list(optional) == ["inner_guidance", "preset", "at_cfg_1"]
        assert "preset" not in info["input"]["required"]
        assert optional["preset"][1]["options"] == ["quality", "balanced", "fast", "custom"]
        assert optional["preset"][1]["default"] == "quality"


# -- validation ------------------------------------------------------------------------------------
def test_a_bad_preset_is_rejected_naming_the_input(comfy_nodes, comfy_loop, run_node):
    import execution

    for node_id in NODE_IDS:
        cls = comfy_nodes.NODE_CLASS_MAPPINGS[node_id]
        combos = {"mode": "consistency", "inner_guidance": "cond"}
        if node_id == "KSamplerDiffIER":
            combos.update(sampler_name="euler", scheduler="normal")
        assert cls.validate_inputs(**combos, preset="fast") is True
        assert cls.validate_inputs(**combos) is True       # absent: an old workflow
        msg = cls.validate_inputs(**combos, preset="turbo")
        assert "'preset'" in msg and "'turbo'" in msg and "balanced" in msg, msg
    # at queue time, through ComfyUI's own prompt validation
    prompt = {"1": {"class_type": "KSamplerDiffIER", "inputs": {
        "model": ["2", 0], "seed": 0, "steps": 20, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal",
        "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0, **DIFFIER,
        "preset": "turbo"}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "none.safetensors"}},
        "3": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["5", 0]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 1], "text": "x"}}}
    ok, errors, _ = comfy_loop.run_until_complete(execution.validate_inputs("p", copy.deepcopy(prompt), "1", {}))
    assert ok is False
    by_input = {e["extra_info"]["input_name"]: e for e in errors}
    assert "preset" in by_input and "'turbo'" in by_input["preset"]["details"], errors
    # a value that reaches the node anyway (through a link) fails when it runs, naming the input
    with pytest.raises(ValueError, match="'preset'"):
        sample(run_node, "KSamplerDiffIER", tiny().patcher, 2, **DIFFIER, preset="turbo")


def test_resolve_preset_unit(pack_module):
    P = pack_module.diffier_core.presets
    explicit = pack_module.diffier_core.DiffIERSettings("paper", 0.1, 0.0, 7, 0.2, 0.8, "cfg")
    assert P.resolve_preset(None, explicit) is explicit
    assert P.resolve_preset("quality", explicit) is explicit and P.resolve_preset("custom", explicit) is explicit
    assert P.resolve_preset("fast", explicit) == P.CHEAP_PRESETS["fast"]
    for bad in ("Fast", "", 3):
        with pytest.raises(pack_module.diffier_core.DiffIERParameterError, match="'preset'"):
            P.resolve_preset(bad, explicit)


def test_settings_for_builds_the_inputs_once_and_resolves_the_preset(pack_module):
    """The node inputs become one ``DiffIERSettings``: validated under every preset, the absent optional inputs at
    the core's defaults, a cheap preset's own settings with the node's ``at_cfg_1``."""
    core = pack_module.diffier_core
    P = core.presets
    assert P.settings_for(**DIFFIER) == core.DiffIERSettings(**DIFFIER)
    assert P.settings_for(**DIFFIER).inner_guidance == core.DEFAULTS.inner_guidance == "cond"
    fast = P.settings_for(**DIFFIER, preset="fast", at_cfg_1="correct")
    assert fast == dataclasses.replace(P.CHEAP_PRESETS["fast"], at_cfg_1="correct")
    for preset in P.PRESETS:
        with pytest.raises(core.DiffIERParameterError, match="'eta'"):
            P.settings_for(**{**DIFFIER, "eta": 2.0}, preset=preset)
    with pytest.raises(core.DiffIERParameterError, match="'preset'"):
        P.settings_for(**DIFFIER, preset="turbo")


# -- the presets come from the measured frontier; their numbers from the confirmatory run ----------------------
def test_preset_settings_are_the_archived_frontier_choice(pack_module):
    P = pack_module.diffier_core.presets
    chosen = json.loads(PRESETS_JSON.read_text())
    assert sorted(chosen["testbeds"]) == ["digits", "known_score"]
    docs = {tb: json.loads((REPO / "docs" / "results" / "archive" / f"frontier_{tb}.json").read_text())
            for tb in chosen["testbeds"]}
    for name, settings in P.CHEAP_PRESETS.items():
        c = chosen["presets"][name]
        want = c["settings"]
        assert (settings.mode, settings.eta, settings.threshold, settings.max_iters, settings.start_percent,
                settings.end_percent, settings.inner_guidance, settings.stride) == (
            want["mode"], want["eta"], want["threshold"], want["max_iters"], want["start_percent"],
            want["end_percent"], want["inner_guidance"], want["stride"]), name
        for numbers in c["per_testbed"].values():
            assert numbers["evals_ratio"] <= c["budget"] + 1e-9
        # the choice is the rule applied to the recorded tuning numbers: the largest smallest tuning share over the
        # testbeds among the points within budget on every testbed, ties (within 2 %) to the larger mean share
        ok = [lab for lab in docs["digits"]["points"]
              if all(d["points"][lab]["kind"] == "diffier"
                     and d["points"][lab]["tuning"]["evals_ratio"] <= c["budget"] + 1e-9 for d in docs.values())]
        top = max(_shares(docs, lab)[0] for lab in ok)
        tied = [lab for lab in ok if _shares(docs, lab)[0] >= top - 0.02 * abs(top)]
        assert sorted(tied) == sorted(c["tied_on_smallest_share"]), name
        assert c["label"] == max(tied, key=lambda lab: _shares(docs, lab)[1]), name


def _confirmatory_measures(config: str) -> dict[str, dict[str, tuple]]:
    """Per cheap preset and testbed group, what the committed confirmatory documents record at ``config``:
    (evaluations ratio to plain CFG, better/worse than quality, better/worse than plain CFG, levels)."""
    out: dict[str, dict[str, tuple]] = {"balanced": {}, "fast": {}}
    for path in sorted((REPO / "docs" / "results" / "evidence").glob("confirmatory_*.json")):
        doc = json.loads(path.read_text())
        for group in doc["groups"]:
            key = doc["testbed"] if len(doc["groups"]) == 1 else f"{doc['testbed']}/{group['group']}"
            runs = [c["frontier"] for c in group["configs"] if c["config"] == config]
            if not runs:
                continue
            frontier = runs[0]
            evals = {line["name"]: line["evals_per_sample"] for line in frontier["lines"]}
            for name in out:
                line = f"diffier_{name}"
                out[name][key] = (evals[line] / evals["cfg"], *(
                    _count(frontier, line, reference, verdict)
                    for reference in ("diffier_quality", "cfg") for verdict in ("better", "worse")),
                    len(frontier["levels"]))
    return out


def _count(frontier: dict, line: str, reference: str, verdict: str) -> int:
    """The adherence levels where ``line``'s verdict against ``reference`` is ``verdict``."""
    return sum(p["line"] == line and p["reference"] == reference and p["verdict"] == verdict for p in frontier["pairs"])


def test_preset_numbers_and_tooltip_come_from_the_confirmatory_documents(pack_module, comfy_nodes):
    P = pack_module.diffier_core.presets
    recorded = _confirmatory_measures(P.MEASURED_CONFIG)
    tooltip = comfy_nodes.NODE_CLASS_MAPPINGS["DiffIERGuider"].GET_NODE_INFO_V1()["input"]["optional"]["preset"][1][
        "tooltip"]
    assert set(P.MEASURED) == set(P.CHEAP_PRESETS)
    for name, per_group in P.MEASURED.items():
        assert set(per_group) == set(recorded[name]), name
        for group, measure in per_group.items():
            want = recorded[name][group]
            assert measure.evals_ratio == pytest.approx(want[0], abs=5e-3), (name, group)
            assert tuple(measure)[1:] == want[1:], (name, group)
            assert measure.evals_ratio <= P.evals_ratio_bound(P.CHEAP_PRESETS[name], 20) + 1e-9
            assert f"{P.TESTBED_NAMES[group]} {measure.evals_ratio:.2f}× evaluations, better/worse than quality at " \
                   f"{measure.better_than_quality}/{measure.worse_than_quality} and than plain CFG at " \
                   f"{measure.better_than_cfg}/{measure.worse_than_cfg} of {measure.levels}" in tooltip, (name, group)
    assert "archive" not in tooltip and "share" not in tooltip


def _shares(docs: dict, label: str) -> tuple[float, float]:
    """The smallest and the mean tuning share of ``label`` over the testbeds."""
    v = [d["points"][label]["tuning"]["share"] for d in docs.values()]
    return min(v), sum(v) / len(v)


# -- through the HTTP API of a real server ------------------------------------------------------------
def _digits_prompt(prefix: str, **diffier) -> dict:
    """The digits demo model → KSampler (DiffIER) → SaveLatent, as an old API workflow (no ``preset``, no
    ``at_cfg_1``); ``diffier`` adds or overrides KSampler (DiffIER)'s inputs."""
    return {
        "1": {"class_type": "DiffIERDemoModelLoader", "inputs": {"model_name": "digits_diffusion.safetensors"}},
        "2": {"class_type": "DiffIERDemoCondition", "inputs": {"model": ["1", 0], "digit": "7"}},
        "3": {"class_type": "DiffIERDemoCondition", "inputs": {"model": ["1", 0], "digit": "unconditional"}},
        "4": {"class_type": "DiffIERDemoEmptyLatent", "inputs": {"batch_size": 1}},
        "5": {"class_type": "KSamplerDiffIER", "inputs": {
            "model": ["1", 0], "seed": 11, "steps": 4, "cfg": 3.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0, **DIFFIER,
            **diffier}},
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": prefix}},
    }


@pytest.mark.slow
def test_old_api_workflow_and_presets_on_a_real_server():
    """An API prompt without ``preset`` and ``at_cfg_1`` queues and runs and equals ``preset = quality`` and
    ``at_cfg_1 = skip``; ``balanced`` runs with one extra evaluation per step; at cfg 1 the old prompt is plain
    sampling and says so, ``at_cfg_1 = correct`` corrects; a bad preset or at_cfg_1 is a 400 naming the input."""
    from safetensors.torch import load_file

    from scripts.comfy_http import PromptRejected
    from scripts.comfy_server import ComfyServer

    runs = {"old": {}, "quality": {"preset": "quality"}, "skip": {"at_cfg_1": "skip"},
            "balanced": {"preset": "balanced"}, "cfg1_old": {"cfg": 1.0},
            "cfg1_correct": {"cfg": 1.0, "at_cfg_1": "correct"}}
    with ComfyServer() as server:
        latents, texts = {}, {}
        for name, extra in runs.items():
            result = server.run(_digits_prompt(f"preset_{name}", **extra), timeout=300)
            texts[name] = " ".join(result.outputs["5"]["text"])
            record = result.outputs["6"]["latents"][0]
            latents[name] = load_file(str(server.output_file(record)))["latent_tensor"]
        assert torch.equal(latents["old"], latents["quality"])
        assert torch.equal(latents["old"], latents["skip"])
        assert not torch.equal(latents["old"], latents["balanced"])
        assert "4 steps corrected, 1.00 mean iterations, 4 extra evaluations" in texts["balanced"], texts
        assert "0 steps corrected" in texts["cfg1_old"] and "at_cfg_1 = correct" in texts["cfg1_old"], texts
        assert "4 steps corrected" in texts["cfg1_correct"], texts
        assert not torch.equal(latents["cfg1_old"], latents["cfg1_correct"])
        for bad in ({"preset": "turbo"}, {"at_cfg_1": "always"}):
            with pytest.raises(PromptRejected) as info:
                server.client.queue_prompt(_digits_prompt("preset_bad", **bad))
            assert info.value.status == 400
            errors = info.value.body["node_errors"]["5"]["errors"]
            (name, value), = bad.items()
            assert name in {e["extra_info"]["input_name"] for e in errors}, errors
            assert value in json.dumps(errors)
        assert server.alive()
