"""The ``at_cfg_1`` input, and the one warning per run whenever DiffIER leaves guided steps unchanged.

At cfg = 1 ComfyUI skips the negative pass (Flux dev/Kontext with FluxGuidance, SDXL Lightning/Turbo/Hyper and
lightning LoRAs all sample there). ``skip`` (default) leaves those steps as plain sampling and says so;
``correct`` runs DiffIER with the conditional branch as the guided prediction.

* ``skip``: bit-identical to plain KSampler on all three routes (same kernels, same shapes, one process: a
  same-machine claim that holds on any CPU), with exactly one warning per run and KSampler (DiffIER)'s
  ``diffier_info`` and UI text saying why and how to turn it on;
* ``correct``: differs from plain KSampler, finite, the same for a seed and different for another; its extra
  evaluations are one model row per inner iteration per sample (rows counted at the model with an
  ``APPLY_MODEL`` wrapper) whatever ``inner_guidance`` says, none in paper mode; the three routes give the same
  bits;
* an empty window and a disabled config are reported once per run, naming the reason;
* a bad ``at_cfg_1`` is an error naming the input, the value and the options; a prompt without it validates.
"""

from __future__ import annotations

import copy
import functools
import json
import logging

import pytest
import torch
from test_presets import _digits_prompt
from tiny_models import make_latent, make_model

from benchmarks.instruments import ModelRows

pytestmark = pytest.mark.integration

NODE_IDS = ("DiffIERGuider", "KSamplerDiffIER", "DiffIERCFGGuider")
DIFFIER = {"mode": "consistency", "eta": 0.05, "threshold": 1e-3, "max_iters": 4, "start_percent": 0.0,
           "end_percent": 1.0}


@functools.cache
def tiny(kind: str = "eps"):
    return make_model(kind, seed=0)


def run(run_node, route: str, model=None, *, tm=None, cfg: float = 1.0, seed: int = 3, steps: int = 3,
        batch: int = 1, **diffier) -> tuple[torch.Tensor, dict | None]:
    """One euler run of ``route`` (``KSampler`` = plain, or a DiffIER node id): the latent and, for KSampler
    (DiffIER), its ``diffier_info``."""
    tm = tm or tiny()
    model = model if model is not None else tm.patcher
    pos, neg, latent = tm.make_cond(batch, seed=1), tm.make_cond(batch, seed=0), make_latent(tm, batch)
    if route in ("KSampler", "KSamplerDiffIER"):
        out = run_node(route, model=model, seed=seed, steps=steps, cfg=cfg, sampler_name="euler", scheduler="normal",
                       positive=pos, negative=neg, latent_image=latent, denoise=1.0, **diffier)
        return out[0]["samples"], (json.loads(out[1]) if len(out) > 1 else None)
    if route == "DiffIERGuider":
        (patched,) = run_node("DiffIERGuider", model=model, **diffier)
        return run(run_node, "KSampler", patched, tm=tm, cfg=cfg, seed=seed, steps=steps, batch=batch)
    (guider,) = run_node("DiffIERCFGGuider", model=model, positive=pos, negative=neg, cfg=cfg, **diffier)
    (noise,) = run_node("RandomNoise", noise_seed=seed)
    (sampler,) = run_node("KSamplerSelect", sampler_name="euler")
    (sigmas,) = run_node("BasicScheduler", model=tm.patcher, scheduler="normal", steps=steps, denoise=1.0)
    out = run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                   latent_image=latent)
    return out[0]["samples"], None


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "DiffIER" and r.levelno >= logging.WARNING]


# -- the input -------------------------------------------------------------------------------------
def test_at_cfg_1_is_optional_last_and_defaults_to_skip(comfy_nodes):
    for node_id in NODE_IDS:
        info = comfy_nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1()
        optional = info["input"]["optional"]
        assert list(optional)[-1] == "at_cfg_1" and "at_cfg_1" not in info["input"]["required"]
        assert list(optional)[-2] == "preset"
        spec = optional["at_cfg_1"][1]
        assert spec["options"] == ["skip", "correct"] and spec["default"] == "skip"
        assert "skip (default) turns DiffIER off at cfg 1" in spec["tooltip"]
        assert "correct" in spec["tooltip"] and "inner_guidance" in spec["tooltip"]
    cfg_tip = comfy_nodes.NODE_CLASS_MAPPINGS["KSamplerDiffIER"].GET_NODE_INFO_V1()["input"]["required"]["cfg"][1]
    assert "at_cfg_1 = correct" in cfg_tip["tooltip"]


# -- skip ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("route", NODE_IDS)
def test_skip_is_plain_ksampler_bit_for_bit_and_says_so_once(run_node, caplog, route):
    plain, _ = run(run_node, "KSampler")
    for extra in ({}, {"at_cfg_1": "skip"}):          # absent (an old workflow) and explicit
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="DiffIER"):
            ours, info = run(run_node, route, **DIFFIER, **extra)
        assert torch.equal(plain, ours), (route, extra)
        warnings = warnings_of(caplog)
        assert len(warnings) == 1, warnings           # one per run, not one per step
        assert "did nothing" in warnings[0] and "cfg = 1 at 3 of 3 guided steps" in warnings[0]
        assert "at_cfg_1 = correct" in warnings[0]
        if info is not None:
            assert info["steps_corrected"] == 0 and info["at_cfg_1"] == "skip"
            assert info["guided_steps"] == 3 and info["skipped"]["cfg_1"] == 3
            assert info["notice"] == warnings[0]


def test_skip_is_shown_in_ksampler_diffier_ui_text(run_node):
    tm = tiny()
    _, ui = run_node.with_ui("KSamplerDiffIER", model=tm.patcher, seed=0, steps=2, cfg=1.0, sampler_name="euler",
                             scheduler="normal", positive=tm.make_cond(1, seed=1), negative=tm.make_cond(1, seed=0),
                             latent_image=make_latent(tm, 1), denoise=1.0, **DIFFIER)
    text = " ".join(ui["text"])
    assert "0 steps corrected" in text and "cfg = 1" in text and "at_cfg_1 = correct" in text


# -- correct ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_correct_changes_the_image_deterministically_and_routes_agree(run_node, kind):
    tm = tiny(kind)
    plain, _ = run(run_node, "KSampler", tm=tm)
    ours, info = run(run_node, "KSamplerDiffIER", tm=tm, **DIFFIER, at_cfg_1="correct")
    assert torch.isfinite(ours).all() and not torch.equal(ours, plain)
    assert (ours - plain).abs().mean() > 1e-4 * plain.abs().mean()
    assert info["steps_corrected"] == 3 and info["skipped"]["cfg_1"] == 0 and info["notice"] == ""
    again, _ = run(run_node, "KSamplerDiffIER", tm=tm, **DIFFIER, at_cfg_1="correct")
    other, _ = run(run_node, "KSamplerDiffIER", tm=tm, seed=4, **DIFFIER, at_cfg_1="correct")
    assert torch.equal(ours, again) and not torch.equal(ours, other)
    for route in ("DiffIERGuider", "DiffIERCFGGuider"):
        routed, _ = run(run_node, route, tm=tm, **DIFFIER, at_cfg_1="correct")
        assert torch.equal(ours, routed), route


@pytest.mark.parametrize("inner_guidance", ["cond", "cfg"])
def test_correct_costs_one_row_per_iteration_per_sample(run_node, inner_guidance):
    """At cfg 1 the CFG pass is one row per sample; ``correct`` adds one row per inner iteration per sample,
    whatever ``inner_guidance`` says (at ω = 1 the guided prediction is the conditional one)."""
    tm = tiny()
    steps, batch, iters = 3, 2, 4
    rows = ModelRows()
    run(run_node, "KSampler", rows.on(tm.patcher), batch=batch, steps=steps)
    assert rows.rows == steps * batch
    rows = ModelRows()
    out, info = run(run_node, "KSamplerDiffIER", rows.on(tm.patcher), batch=batch, steps=steps,
                    **{**DIFFIER, "threshold": 0.0, "max_iters": iters}, inner_guidance=inner_guidance,
                    at_cfg_1="correct")
    assert rows.rows == steps * batch + steps * iters * batch, rows.rows
    assert info["extra_model_evals"] == steps * iters and info["mean_iterations"] == iters
    assert all(len(s["iterations"]) == batch for s in info["steps"])
    reference, _ = run(run_node, "KSamplerDiffIER", batch=batch, steps=steps,
                       **{**DIFFIER, "threshold": 0.0, "max_iters": iters}, inner_guidance="cond", at_cfg_1="correct")
    assert torch.equal(out, reference)                # cfg inner guidance runs exactly the cond evaluation here


def test_correct_in_paper_mode_adds_no_evaluation(run_node):
    tm = tiny()
    plain, _ = run(run_node, "KSampler")
    rows = ModelRows()
    ours, info = run(run_node, "KSamplerDiffIER", rows.on(tm.patcher), **{**DIFFIER, "mode": "paper"},
                     at_cfg_1="correct")
    assert rows.rows == 3 and info["extra_model_evals"] == 0 and info["steps_corrected"] == 3
    assert torch.isfinite(ours).all() and not torch.equal(ours, plain)


def test_presets_do_not_override_at_cfg_1(run_node):
    plain, _ = run(run_node, "KSampler")
    for preset in ("balanced", "fast"):
        skipped, info = run(run_node, "KSamplerDiffIER", **DIFFIER, preset=preset)
        assert torch.equal(skipped, plain) and info["skipped"]["cfg_1"] == 3, preset
        corrected, info = run(run_node, "KSamplerDiffIER", **DIFFIER, preset=preset, at_cfg_1="correct")
        assert not torch.equal(corrected, plain) and info["steps_corrected"] >= 1, preset


def test_at_other_cfg_values_at_cfg_1_changes_nothing(run_node):
    a, _ = run(run_node, "KSamplerDiffIER", cfg=4.0, **DIFFIER)
    b, _ = run(run_node, "KSamplerDiffIER", cfg=4.0, **DIFFIER, at_cfg_1="correct")
    assert torch.equal(a, b)


# -- the other ways DiffIER does nothing --------------------------------------------------------------
@pytest.mark.parametrize("route", NODE_IDS)
@pytest.mark.parametrize("override, needle", [
    ({"eta": 0.0}, "switched off (eta = 0)"),
    ({"max_iters": 0}, "switched off (max_iters = 0)"),
    ({"start_percent": 1.0, "end_percent": 1.0}, "empty window"),
    ({"start_percent": 0.999, "end_percent": 0.9995}, "empty window"),
])
def test_nothing_done_is_reported_once_per_run(run_node, caplog, route, override, needle):
    plain, _ = run(run_node, "KSampler", cfg=4.0)
    with caplog.at_level(logging.INFO, logger="DiffIER"):
        ours, info = run(run_node, route, cfg=4.0, **{**DIFFIER, **override})
    assert torch.equal(plain, ours)
    warnings = warnings_of(caplog)
    assert len(warnings) == 1 and needle in warnings[0] and "did nothing" in warnings[0], warnings
    if info is not None:
        assert info["steps_corrected"] == 0 and info["notice"] == warnings[0]


def test_a_partial_window_is_not_reported(run_node, caplog):
    with caplog.at_level(logging.INFO, logger="DiffIER"):
        _, info = run(run_node, "KSamplerDiffIER", cfg=4.0, steps=6, **{**DIFFIER, "end_percent": 0.5})
    assert 0 < info["steps_corrected"] < 6 and info["skipped"]["outside_window"] > 0
    assert info["notice"] == "" and warnings_of(caplog) == []


def test_two_runs_two_warnings(run_node, caplog):
    """Each run reports for itself: a patched model sampled twice warns twice, not once and not per step."""
    (patched,) = run_node("DiffIERGuider", model=tiny().patcher, **DIFFIER)
    with caplog.at_level(logging.INFO, logger="DiffIER"):
        run(run_node, "KSampler", patched, seed=1, steps=4)
        run(run_node, "KSampler", patched, seed=2, steps=2)
    warnings = warnings_of(caplog)
    assert len(warnings) == 2
    assert "4 of 4 guided steps" in warnings[0] and "2 of 2 guided steps" in warnings[1]


# -- validation ------------------------------------------------------------------------------------
def _prompt(**diffier) -> dict:
    """The digits demo model → KSampler (DiffIER) at cfg 1 → SaveLatent, an API prompt without ``at_cfg_1``."""
    return _digits_prompt("at_cfg_1", cfg=1.0, **diffier)


def test_a_bad_at_cfg_1_is_rejected_naming_the_input_value_and_options(comfy_nodes, comfy_loop, run_node):
    import execution

    for node_id in NODE_IDS:
        cls = comfy_nodes.NODE_CLASS_MAPPINGS[node_id]
        combos = {"mode": "consistency", "inner_guidance": "cond", "preset": "quality"}
        if node_id == "KSamplerDiffIER":
            combos.update(sampler_name="euler", scheduler="normal")
        assert cls.validate_inputs(**combos) is True                       # absent: an old workflow
        assert cls.validate_inputs(**combos, at_cfg_1="correct") is True
        msg = cls.validate_inputs(**combos, at_cfg_1="always")
        assert "'at_cfg_1'" in msg and "'always'" in msg and "'skip'" in msg and "'correct'" in msg, msg
    # at queue time, through ComfyUI's own prompt validation; the prompt without the input validates
    ok, error, _, node_errors = comfy_loop.run_until_complete(execution.validate_prompt("p", _prompt(), None))
    assert ok, (error, node_errors)
    ok, _, _, node_errors = comfy_loop.run_until_complete(
        execution.validate_prompt("p", copy.deepcopy(_prompt(at_cfg_1="always")), None))
    assert not ok
    errors = node_errors["5"]["errors"]
    assert "at_cfg_1" in {e["extra_info"]["input_name"] for e in errors} and "always" in json.dumps(errors)
    # a value that reaches a node anyway (through a link) fails when it runs, naming the input
    for node_id in NODE_IDS:
        with pytest.raises(ValueError, match="'at_cfg_1'"):
            run(run_node, node_id, **DIFFIER, at_cfg_1="always")
