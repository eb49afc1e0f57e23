"""nodes/comfy_adapter.py: every ComfyUI touch point checked at load time; moved symbols give one clear error.

The symbols are removed or replaced with ``monkeypatch`` in these tests only, and put back (and the
adapter re-checked) after each test.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import sys

import comfy.model_patcher
import comfy.samplers
import comfyui_version
import pytest
import torch
from tiny_models import make_latent, make_model

pytestmark = pytest.mark.integration

DIFFIER = {"mode": "consistency", "eta": 0.05, "threshold": 1e-3, "max_iters": 2, "start_percent": 0.0,
           "end_percent": 1.0}


@functools.cache
def tiny():
    return make_model("eps", seed=0)


@pytest.fixture
def adapter(pack_module):
    return sys.modules[f"{pack_module.__name__}.nodes.comfy_adapter"]


@pytest.fixture
def moved(adapter, monkeypatch):
    """``monkeypatch`` for ComfyUI symbols; afterwards the symbols are restored and the adapter re-checked."""
    yield monkeypatch
    monkeypatch.undo()
    assert adapter.check_touch_points() == {}


def diffier_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "DiffIER" and r.levelno >= logging.ERROR]


def ksampler(run_node, node="KSamplerDiffIER", **diffier):
    tm = tiny()
    out = run_node(node, model=tm.patcher, seed=3, steps=3, cfg=4.0, sampler_name="euler", scheduler="normal",
                   positive=tm.make_cond(1, seed=1), negative=tm.make_cond(1, seed=0), latent_image=make_latent(tm),
                   denoise=1.0, **diffier)
    return out[0]["samples"], (json.loads(out[1]) if len(out) > 1 else None)


# -- the installed ComfyUI has everything ---------------------------------------------------------
def test_every_touch_point_is_present_in_this_comfyui(adapter, caplog):
    caplog.set_level(logging.INFO, logger="DiffIER")
    assert adapter.check_touch_points() == {}
    assert diffier_errors(caplog) == []
    assert adapter.comfyui_version() == comfyui_version.__version__
    features = {p.feature for p in adapter.TOUCH_POINTS}
    assert all(adapter.available(f) for f in features)


def test_the_check_ran_when_comfyui_loaded_the_pack(adapter, comfy_nodes):
    """The module-level check has filled the status (one entry per feature that had problems: none)."""
    assert "DiffIERGuider" in comfy_nodes.NODE_CLASS_MAPPINGS
    assert adapter._status == {}


# -- something moved: one clear error at load time -------------------------------------------------
def test_a_removed_function_logs_one_error_naming_version_symbol_and_upgrade(adapter, moved, caplog):
    moved.delattr(comfy.samplers, "calc_cond_batch")
    caplog.set_level(logging.INFO, logger="DiffIER")
    problems = adapter.check_touch_points()
    assert problems == {adapter.INNER: ["comfy.samplers.calc_cond_batch is missing"]}
    (error,) = diffier_errors(caplog)
    assert f"ComfyUI {comfyui_version.__version__}" in error
    assert "comfy.samplers.calc_cond_batch is missing" in error
    assert "consistency mode" in error and "What to do: update ComfyUI-DiffIER" in error


def test_several_moved_symbols_still_give_exactly_one_error(adapter, moved, caplog):
    moved.delattr(comfy.samplers.KSampler, "SCHEDULERS")
    moved.delattr(comfy.model_patcher.ModelPatcher, "add_wrapper_with_key")
    caplog.set_level(logging.INFO, logger="DiffIER")
    adapter.check_touch_points()
    (error,) = diffier_errors(caplog)
    assert "comfy.samplers.KSampler.SCHEDULERS is missing" in error
    assert "comfy.model_patcher.ModelPatcher.add_wrapper_with_key is missing" in error
    assert "seeded with 0" in error  # the seed wrapper's fallback is named


def test_a_changed_signature_is_reported(adapter, moved, caplog):
    def calc_cond_batch(model, conds, x, t):  # a release that renamed and dropped parameters
        return []

    moved.setattr(comfy.samplers, "calc_cond_batch", calc_cond_batch)
    caplog.set_level(logging.INFO, logger="DiffIER")
    problems = adapter.check_touch_points()
    assert problems[adapter.INNER] == ["comfy.samplers.calc_cond_batch no longer takes ['x_in', 'timestep', "
                                       "'model_options']"]
    assert len(diffier_errors(caplog)) == 1


def test_a_post_cfg_key_that_comfyui_no_longer_passes_is_reported(adapter, moved, caplog):
    def cfg_function(model, cond_pred, uncond_pred, cond_scale, x, timestep, model_options={}, cond=None,  # noqa: B006
                     uncond=None):
        result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
        for fn in model_options.get("sampler_post_cfg_function", []):
            result = fn({"denoised": result, "cond": cond, "uncond": uncond, "model": model, "sigma": timestep,
                         "model_options": model_options, "input": x})  # cond_scale left out
        return result

    moved.setattr(comfy.samplers, "cfg_function", cfg_function)
    caplog.set_level(logging.INFO, logger="DiffIER")
    problems = adapter.check_touch_points()
    assert problems[adapter.HOOK] == ["comfy.samplers.cfg_function no longer uses ['cond_scale']"]
    (error,) = diffier_errors(caplog)
    assert "cond_scale" in error and comfyui_version.__version__ in error


@pytest.mark.parametrize(("version", "advice"), [("0.3.40", "update ComfyUI to 0.3.52 or newer"),
                                                 ("0.40.2", "update ComfyUI-DiffIER")])
def test_the_advice_depends_on_the_version(adapter, moved, caplog, version, advice):
    moved.setattr(comfyui_version, "__version__", version)
    moved.delattr(comfy.samplers.CFGGuider, "set_cfg")
    caplog.set_level(logging.INFO, logger="DiffIER")
    adapter.check_touch_points()
    (error,) = diffier_errors(caplog)
    assert f"ComfyUI {version} does not provide" in error and f"What to do: {advice}" in error


def test_a_paired_batch_model_class_that_this_comfyui_lacks_is_not_reported(adapter, moved, caplog):
    """Older ComfyUI versions have no Hunyuan3Dv2_1: nothing to pair, nothing missing, no error logged."""
    import comfy.model_base

    moved.delattr(comfy.model_base, adapter.PAIRED_BATCH_MODELS[0])
    caplog.set_level(logging.INFO, logger="DiffIER")
    problems = adapter.check_touch_points()
    assert problems == {adapter.PAIRED: [f"comfy.model_base.{adapter.PAIRED_BATCH_MODELS[0]} is missing"]}
    assert not adapter.available(adapter.PAIRED) and diffier_errors(caplog) == []


# -- at sampling time: a clear ComfyUIMismatchError, or the documented fallback --------------------
def test_a_missing_hook_api_fails_the_node_with_a_clear_error_not_attribute_error(adapter, moved, run_node,
                                                                                pack_module):
    moved.delattr(comfy.model_patcher.ModelPatcher, "set_model_sampler_post_cfg_function")
    adapter.check_touch_points()
    with pytest.raises(Exception) as excinfo:
        run_node("DiffIERGuider", model=tiny().patcher, **DIFFIER)
    assert type(excinfo.value).__name__ == "ComfyUIMismatchError"
    assert isinstance(excinfo.value, pack_module.diffier_core.DiffIERError)
    message = str(excinfo.value)
    assert "ModelPatcher.set_model_sampler_post_cfg_function is missing" in message
    assert comfyui_version.__version__ in message
    assert excinfo.value.name == adapter.HOOK and excinfo.value.got == [
        "comfy.model_patcher.ModelPatcher.set_model_sampler_post_cfg_function is missing"]


def test_post_cfg_args_without_a_key_raise_a_clear_error(adapter):
    args = {key: None for key in adapter.POST_CFG_KEYS if key != "sigma"}
    with pytest.raises(adapter.ComfyUIMismatchError, match=r"no longer passes \['sigma'\]"):
        adapter.guided_step(args, "key", lambda sampling, sigma: pytest.fail("no run is opened"))


def test_guided_step_finds_the_stored_run_or_opens_one(adapter):
    """The run the outer-sample wrapper stored is the step's; without one, ``open_run`` opens it from the model's
    sampling and the step's σ."""

    @dataclasses.dataclass
    class Run:
        model_sampling: object

    tm = tiny()
    sampling = tm.model.model_sampling
    x, sigma = torch.randn(1, 4, 8, 8), torch.tensor([2.0])
    args = {"denoised": x * 0.5, "cond": None, "uncond": None, "cond_scale": 4.0, "sigma": sigma, "input": x,
            "model": tm.model, "model_options": {}}
    opened = []
    step = adapter.guided_step(args, "key", lambda s, sig: opened.append((s, sig)) or Run(s))
    assert opened == [(sampling, sigma)] and step.run.model_sampling is sampling
    assert step.x is x and step.denoised is args["denoised"] and step.cond_scale == 4.0 and step.paired_batch == ""
    a, b = step.scales()
    assert torch.equal(a, torch.ones(1)) and torch.equal(b, sigma)     # an EPS model: x = x0 + σ ε
    stored = Run(sampling)
    adapter.store_run(args["model_options"], "key", stored)
    assert adapter.guided_step(args, "key", lambda s, sig: pytest.fail("the run was stored")).run is stored


def test_without_the_outer_sample_wrapper_diffier_falls_back_to_seed_zero(adapter, moved, run_node, caplog):
    reference, _ = ksampler(run_node, **DIFFIER)
    adapter.check_touch_points([adapter.TouchPoint("comfy.patcher_extension", "WrappersMP.GONE", adapter.SEED)])
    assert not adapter.available(adapter.SEED)
    caplog.set_level(logging.INFO, logger="DiffIER")
    a, info = ksampler(run_node, **DIFFIER)
    b, _ = ksampler(run_node, **DIFFIER)
    assert torch.isfinite(a).all() and info["steps_corrected"] == 3
    assert torch.equal(a, b)                      # still reproducible
    assert not torch.equal(a, reference)          # but the inner noise no longer follows the sampler's seed
    assert any("inner-loop noise seeded with 0" in r.getMessage() for r in caplog.records)


def test_without_the_interrupt_function_the_inner_loop_still_runs(adapter, moved, run_node):
    reference, _ = ksampler(run_node, **DIFFIER)
    adapter.check_touch_points([adapter.TouchPoint("comfy.model_management", "gone_interrupt", adapter.INTERRUPT)])
    assert not adapter.available(adapter.INTERRUPT)
    ours, info = ksampler(run_node, **DIFFIER)
    assert torch.equal(ours, reference) and info["extra_model_evals"] >= 3


# -- newer APIs where present ------------------------------------------------------------------------
def test_newer_io_options_are_passed_only_where_this_comfyui_has_them(adapter):
    io = adapter.io
    extras = adapter.input_extras(io.Float.Input, min=0.0, advanced=True, not_an_option=1)
    assert extras["min"] == 0.0 and "not_an_option" not in extras
    assert ("advanced" in extras) == ("advanced" in inspect.signature(io.Float.Input).parameters)
    schema = adapter.schema_extras(node_id="x", search_aliases=["y"], not_a_field=1)
    assert schema["node_id"] == "x" and "not_a_field" not in schema
    assert ("search_aliases" in schema) == ("search_aliases" in {f.name for f in dataclasses.fields(io.Schema)})


def test_nodes_register_search_aliases_only_where_supported(adapter, comfy_nodes):
    info = comfy_nodes.NODE_CLASS_MAPPINGS["KSamplerDiffIER"].GET_NODE_INFO_V1()
    supported = bool(adapter.schema_extras(search_aliases=["x"]))
    assert ("DiffIER" in (info.get("search_aliases") or [])) == supported
