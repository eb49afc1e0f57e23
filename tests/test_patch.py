"""nodes/patch.py: DiffIERPatch on a real ComfyUI sampling run and its post-CFG hook called directly.

* ``apply`` returns a clone with DiffIER's post-CFG hook and outer-sample wrapper; the user's model is untouched.
* The hook reads each guided step from the adapter in one call (``comfy_adapter.guided_step``), hands it to the core
  and returns the core's result: one adapter call per guided step, the returned tensor the one the sampler uses.
* ``stride`` corrects every k-th guided call; the skip reasons are counted in the documented order; an empty window,
  a switched-off DiffIER and cfg = 1 under ``skip`` each say so in the run's notice.
* Outside ComfyUI's sampler entry point (no outer-sample wrapper) the hook opens a run seeded with 0 and
  ``finish_fallback`` reports it.

``torch.equal`` claims compare runs of the same kernels on the same shapes in one process (same-machine claims, as in
tests/test_nodes.py).
"""

from __future__ import annotations

import functools
import logging
import math

import pytest
import torch
from tiny_models import make_latent, make_model

pytestmark = pytest.mark.integration


@functools.cache
def tiny():
    return make_model("eps", seed=0)


def sample(run_node, model, steps: int = 4, cfg: float = 4.0) -> torch.Tensor:
    tm = tiny()
    (out,) = run_node("KSampler", model=model, seed=2, steps=steps, cfg=cfg, sampler_name="euler",
                      scheduler="normal", positive=tm.make_cond(1, seed=1), negative=tm.make_cond(1, seed=0),
                      latent_image=make_latent(tm, 1), denoise=1.0)
    return out["samples"]


def patch_of(pack_module, summaries: list | None = None, **settings):
    core = pack_module.diffier_core
    on_run_end = summaries.append if summaries is not None else None
    return pack_module.nodes.patch.DiffIERPatch(core.DiffIERSettings(**settings), on_run_end=on_run_end)


def test_apply_clones_and_leaves_the_users_model_alone(pack_module):
    tm = tiny()
    before = dict(tm.patcher.model_options)
    patch = patch_of(pack_module)
    patched = patch.apply(tm.patcher)
    assert patched is not tm.patcher and tm.patcher.model_options == before
    hooks = patched.model_options["sampler_post_cfg_function"]
    assert len(hooks) == 1 and hooks[0].__self__ is patch and hooks[0].__func__ is type(patch).post_cfg
    assert patch_of(pack_module).key != patch.key          # two patches never share a run record


def test_the_hook_takes_one_adapter_call_per_guided_step_and_returns_the_cores_result(pack_module, run_node,
                                                                                      monkeypatch):
    adapter = pack_module.nodes.comfy_adapter
    patch_mod = pack_module.nodes.patch
    calls, results = [], []
    guided_step, diffier_step = adapter.guided_step, patch_mod.diffier_step

    def counting_guided_step(*args, **kwargs):
        calls.append(guided_step(*args, **kwargs))
        return calls[-1]

    def recording_diffier_step(*args, **kwargs):
        results.append(diffier_step(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(adapter, "guided_step", counting_guided_step)
    monkeypatch.setattr(patch_mod, "diffier_step", recording_diffier_step)
    summaries: list = []
    sample(run_node, patch_of(pack_module, summaries, mode="paper", threshold=0.0).apply(tiny().patcher), steps=4)
    assert len(calls) == len(results) == summaries[-1]["guided_steps"] == summaries[-1]["steps_corrected"] == 4
    assert all(isinstance(step, adapter.GuidedStep) and step.run is calls[0].run for step in calls)
    assert all(step.paired_batch == "" for step in calls)


def test_stride_corrects_every_kth_guided_call(pack_module, run_node):
    for stride, steps in ((1, 5), (2, 5), (3, 7)):
        summaries: list = []
        sample(run_node, patch_of(pack_module, summaries, stride=stride, max_iters=1).apply(tiny().patcher), steps)
        summary = summaries[-1]
        assert summary["steps_corrected"] == math.ceil(steps / stride), (stride, steps)
        assert summary["extra_model_evals"] == math.ceil(steps / stride)       # one cond evaluation each
        assert summary["guided_steps"] == steps and sum(summary["skipped"].values()) == 0


@pytest.mark.parametrize(("settings", "cfg", "reason", "says"), [
    ({"eta": 0.0}, 4.0, "disabled", "switched off (eta = 0)"),
    ({"max_iters": 0, "at_cfg_1": "correct"}, 1.0, "disabled", "switched off (max_iters = 0)"),
    ({"eta": 0.0}, 1.0, "disabled", "switched off"),                  # off comes before cfg = 1
    ({}, 1.0, "cfg_1", "set at_cfg_1 = correct"),
    ({"start_percent": 1.0, "end_percent": 1.0}, 4.0, "outside_window", "empty window"),
])
def test_a_step_left_unchanged_is_counted_under_its_reason_and_said(pack_module, run_node, settings, cfg, reason,
                                                                     says):
    summaries: list = []
    tm = tiny()
    out = sample(run_node, patch_of(pack_module, summaries, **settings).apply(tm.patcher), steps=3, cfg=cfg)
    summary = summaries[-1]
    assert summary["skipped"][reason] == summary["guided_steps"] == 3 and summary["steps_corrected"] == 0
    assert says in summary["notice"] and summary["notice"].startswith("DiffIER did nothing in this run")
    assert torch.equal(out, sample(run_node, tm.patcher, steps=3, cfg=cfg))   # plain sampling, bit for bit


def test_a_run_summary_has_the_keys_of_the_empty_summary(pack_module, run_node):
    summaries: list = []
    sample(run_node, patch_of(pack_module, summaries).apply(tiny().patcher), steps=2)
    assert set(summaries[-1]) == set(pack_module.nodes.patch.empty_summary())
    assert summaries[-1]["notice"] == ""


def test_outside_the_sampler_entry_point_the_hook_opens_a_run_seeded_with_zero(pack_module, caplog):
    """The hook called directly with ComfyUI's post-CFG args (no outer-sample wrapper): ``paper`` mode corrects
    the step with noise seeded from 0, and ``finish_fallback`` logs and reports the run once."""
    tm = tiny()
    g = torch.Generator().manual_seed(0)
    x, denoised = torch.randn(1, 4, 8, 8, generator=g) * 3.0, torch.randn(1, 4, 8, 8, generator=g)
    args = {"denoised": denoised, "cond": None, "uncond": None, "cond_scale": 4.0, "sigma": torch.tensor([3.0]),
            "input": x, "model": tm.model, "model_options": {}}
    summaries: list = []
    patch = patch_of(pack_module, summaries, mode="paper", threshold=0.0, reduction="sum", max_iters=2)
    caplog.set_level(logging.INFO, logger="DiffIER")
    out = patch.post_cfg(args)
    again = patch.post_cfg(args)
    assert not torch.equal(out, denoised) and torch.isfinite(out).all()
    assert not torch.equal(out, again)          # the run's noise streams on: the second step draws new noise
    core = pack_module.diffier_core
    settings = core.DiffIERSettings(mode="paper", threshold=0.0, reduction="sum", max_iters=2)
    noise = core.PerSampleNoise(core.sample_seeds(0, torch.zeros(1, 1)))
    expected, _ = core.diffier_step(x, denoised, torch.ones(1), torch.tensor([3.0]), settings, noise)
    assert torch.equal(out, expected)           # the same step, the same seed-0 noise, in the same process
    warnings = [r.getMessage() for r in caplog.records if "seeded with 0" in r.getMessage()]
    assert len(warnings) == 1
    assert summaries == []
    patch.finish_fallback()
    assert len(summaries) == 1 and summaries[0]["steps_corrected"] == summaries[0]["guided_steps"] == 2
    patch.finish_fallback()                     # nothing left to close
    assert len(summaries) == 1
