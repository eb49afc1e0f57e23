"""Per-run state: samplers that share one patched model (one DiffIER patch object) never mix their runs.

A run's record (seeds, window, step records) lives in the ``model_options`` that ComfyUI's ``CFGGuider.sample`` copies
for that run, found by the patch's key; nothing per run lives on the patch object. That matters because newer
ComfyUI's ``ModelPatcher.clone`` copies only the dicts and lists of ``model_options`` and shares their leaves, so
one patch object's hook is shared by every clone made from the patched model (0.3.75 deep-copies it).

* one prompt through ComfyUI's ``PromptExecutor``: one DiffIER Guider into two KSamplers with different seeds, and
  two guiders with different windows (one chained onto the other) into two more: each sampler's image equals the
  image of that sampler run alone, and the runs' log summaries are those of the solo runs;
* newer ComfyUI's clone simulated (the test replaces ``ModelPatcher.clone`` so that ``model_options`` keeps its
  hook objects shared), and two clones sharing one ``model_options`` dict: runs one after the other and a run
  nested inside another run's step give each sampler its solo image and its own summary.

Bit-identical claims compare the same arithmetic in one process (a same-machine claim that holds on any CPU).
"""

from __future__ import annotations

import collections
import copy
import logging

import pytest
import torch
from prompt_runner import execute_prompt
from test_nodes import DIFFIER, ksampler
from tiny_models import make_model

pytestmark = pytest.mark.integration


# -- one prompt, real executor ---------------------------------------------------------------------------------------
def _node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def _ksampler(model: str, seed: int) -> dict:
    return _node("KSampler", model=[model, 0], seed=seed, steps=4, cfg=3.0, sampler_name="euler", scheduler="normal",
                 positive=["2", 0], negative=["3", 0], latent_image=["4", 0], denoise=1.0)


#: the digits demo model (no download) → guiders → four KSamplers, each saved
PROMPT = {
    "1": _node("DiffIERDemoModelLoader", model_name="digits_diffusion.safetensors"),
    "2": _node("DiffIERDemoCondition", model=["1", 0], digit="7"),
    "3": _node("DiffIERDemoCondition", model=["1", 0], digit="unconditional"),
    "4": _node("DiffIERDemoEmptyLatent", batch_size=1),
    "10": _node("DiffIERGuider", model=["1", 0], **DIFFIER),
    "11": _ksampler("10", seed=1),
    "12": _ksampler("10", seed=2),
    "13": _node("DiffIERGuider", model=["1", 0], **{**DIFFIER, "end_percent": 0.5}),
    "14": _node("DiffIERGuider", model=["13", 0], **{**DIFFIER, "mode": "paper", "start_percent": 0.5}),
    "15": _ksampler("13", seed=3),
    "16": _ksampler("14", seed=3),
    **{f"2{k}": _node("SaveLatent", samples=[f"1{k}", 0], filename_prefix=f"run_state_{k}") for k in "1256"},
}
SAMPLERS = ("11", "12", "15", "16")


def _with_ancestors(prompt: dict, outputs: list[str]) -> dict:
    """The part of ``prompt`` that ``outputs`` need."""
    keep, todo = set(), list(outputs)
    while todo:
        node = todo.pop()
        if node not in keep:
            keep.add(node)
            todo += [v[0] for v in prompt[node]["inputs"].values() if isinstance(v, list)]
    return {k: copy.deepcopy(v) for k, v in prompt.items() if k in keep}


def _execute(comfy_loop, prompt: dict, out_dir) -> dict[str, torch.Tensor]:
    """Run ``prompt`` through ComfyUI's ``PromptExecutor``; the LATENT of every KSampler in it."""
    executor = execute_prompt(comfy_loop, prompt, out_dir)
    return {k: executor.caches.outputs.get(k).outputs[0][0]["samples"].clone() for k in prompt
            if prompt[k]["class_type"] == "KSampler"}


def _summaries(caplog) -> collections.Counter:
    return collections.Counter(r.getMessage() for r in caplog.records
                               if r.name == "DiffIER" and "steps corrected" in r.getMessage())


def test_samplers_of_one_prompt_keep_their_own_runs(comfy_nodes, comfy_loop, caplog, tmp_path):
    with caplog.at_level(logging.INFO, logger="DiffIER"):
        together = _execute(comfy_loop, PROMPT, tmp_path)
    logged_together = _summaries(caplog)
    assert sum(logged_together.values()) == 5          # one run per patch per sampler (16 has two patches)
    logged_alone = collections.Counter()
    for k in SAMPLERS:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="DiffIER"):
            alone = _execute(comfy_loop, _with_ancestors(PROMPT, [f"2{k[1]}"]), tmp_path)
        assert list(alone) == [k]
        assert torch.equal(together[k], alone[k]), k
        logged_alone += _summaries(caplog)
    assert logged_together == logged_alone
    assert not torch.equal(together["11"], together["12"])    # the seeds matter
    assert not torch.equal(together["15"], together["16"])    # the second window matters


# -- newer ComfyUI's clone: one hook object shared by every clone ----------------------------------------------------
def _copy_dicts_and_lists(value):
    """Dicts and lists copied all the way down, every other object shared (how newer ComfyUI clones model_options)."""
    if isinstance(value, dict):
        return {k: _copy_dicts_and_lists(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_dicts_and_lists(v) for v in value]
    return value


@pytest.fixture
def shallow_clone(monkeypatch):
    """``ModelPatcher.clone`` as newer ComfyUI's: ``model_options`` keeps its hook objects shared."""
    import comfy.model_patcher

    original = comfy.model_patcher.ModelPatcher.clone

    def clone(self, *args, **kwargs):
        n = original(self, *args, **kwargs)
        n.model_options = _copy_dicts_and_lists(self.model_options)
        return n

    monkeypatch.setattr(comfy.model_patcher.ModelPatcher, "clone", clone)


def _patch(pack_module, summaries: list, **window):
    core = pack_module.diffier_core
    settings = core.DiffIERSettings(mode="consistency", inner_guidance="cond", **window)
    return pack_module.nodes.patch.DiffIERPatch(settings, on_run_end=summaries.append)


def _solo(pack_module, run_node, tm, seed: int, **window) -> tuple[torch.Tensor, dict]:
    """The image and summary of a run with its own, fresh patch object."""
    summaries = []
    image, _ = ksampler(run_node, tm, model=_patch(pack_module, summaries, **window).apply(tm.patcher), seed=seed,
                        steps=4)
    (summary,) = summaries
    return image, summary


def test_clones_sharing_one_hook_keep_their_own_runs(pack_module, run_node, shallow_clone):
    tm = make_model("eps", seed=0)
    summaries = []
    patch = _patch(pack_module, summaries)
    patched = patch.apply(tm.patcher)
    first, second = patched.clone(), patched.clone()
    second.model_options = first.model_options                   # worse than newer ComfyUI: one dict for both
    hook = first.model_options["sampler_post_cfg_function"][-1]
    assert hook.__self__ is patch and patched.model_options["sampler_post_cfg_function"][-1].__self__ is patch
    runs = [(first, 1), (second, 2), (first, 1), (patched, 2)]
    images = [ksampler(run_node, tm, model=m, seed=seed, steps=4)[0] for m, seed in runs]
    solo = {seed: _solo(pack_module, run_node, tm, seed) for seed in (1, 2)}
    assert len(summaries) == 4
    for (_, seed), image, summary in zip(runs, images, summaries, strict=True):
        assert torch.equal(image, solo[seed][0]), seed
        assert summary == solo[seed][1], seed
    assert not torch.equal(solo[1][0], solo[2][0])


def test_a_run_nested_in_another_runs_step_keeps_both_apart(pack_module, run_node, comfy_nodes, shallow_clone):
    """A second sampling run with the same patch object (same hook, same key) starts inside the first run's second
    step and ends before it: each run ends with its solo image and its solo summary.

    The nested run samples a second instance of the same tiny model (same weights): ComfyUI cannot nest two
    samplings of one BaseModel (the inner run's cleanup detaches the outer run's patcher), whatever the hooks.
    """
    tm, twin = make_model("eps", seed=0), make_model("eps", seed=0)
    summaries = []
    patch = _patch(pack_module, summaries)
    outer, inner = patch.apply(tm.patcher), patch.apply(twin.patcher)
    pos, neg = tm.make_cond(1, seed=1), tm.make_cond(1, seed=0)
    nested = {}
    calls = [0]

    def sample_inside(args):
        calls[0] += 1
        if calls[0] == 2:
            (latent,) = comfy_nodes.common_ksampler(inner, 2, 4, 4.0, "euler", "normal", pos, neg,
                                                    {"samples": torch.zeros((1, *tm.latent_shape))})
            nested["image"] = latent["samples"]
        return args["denoised"]

    outer.set_model_sampler_post_cfg_function(sample_inside)   # after DiffIER's hook, in the outer run only
    image, _ = ksampler(run_node, tm, model=outer, seed=1, steps=4, positive=pos, negative=neg)
    assert calls[0] == 4 and "image" in nested
    solo = {seed: _solo(pack_module, run_node, tm, seed) for seed in (1, 2)}
    assert torch.equal(image, solo[1][0]) and torch.equal(nested["image"], solo[2][0])
    inner_summary, outer_summary = summaries                   # the nested run finishes first
    assert inner_summary == solo[2][1] and outer_summary == solo[1][1]


def test_chained_patches_with_different_windows_keep_their_own_runs(pack_module, run_node, shallow_clone):
    """Two patches chained on one model, early and late window: each run records only its own window's steps, and
    the early patch's run is its solo run (the late patch changes nothing before the middle)."""
    tm = make_model("eps", seed=0)
    early, late = [], []
    model = _patch(pack_module, early, end_percent=0.5).apply(tm.patcher)
    model = _patch(pack_module, late, start_percent=0.5).apply(model)
    for seed in (1, 2):
        ksampler(run_node, tm, model=model.clone(), seed=seed, steps=4)
    assert len(early) == len(late) == 2
    for seed, e, lt in zip((1, 2), early, late, strict=True):
        _, solo_early = _solo(pack_module, run_node, tm, seed, end_percent=0.5)
        assert e == solo_early
        assert 0 < e["steps_corrected"] < 4 and 0 < lt["steps_corrected"] < 4
        assert e["steps_corrected"] + lt["steps_corrected"] == 4
        assert min(s["sigma"] for s in e["steps"]) > max(s["sigma"] for s in lt["steps"])
