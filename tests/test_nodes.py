"""The three nodes inside a real, in-process ComfyUI: loader, sampling paths, model kinds, composability.

Float comparisons: a ``torch.equal`` claim here compares two runs that execute the same kernels on
the same shapes in this one process (a rerun, another route into the same sampling code, DiffIER switched off):
it holds on any CPU, as a same-machine claim (bits across machines are not claimed). Where the two sides compute
differently (a batch of 2 vs a batch of 1), the tolerance is derived from float32 resolution and the latent's
magnitude (:func:`batch_float_bound`, tests/float_bounds.py).
"""

from __future__ import annotations

import copy
import functools
import json

import pytest
import torch
from tiny_models import make_latent, make_model

from benchmarks.instruments import ModelRows, SyncCounter

pytestmark = pytest.mark.integration

NODE_IDS = ("DiffIERGuider", "KSamplerDiffIER", "DiffIERCFGGuider")
DIFFIER = {"mode": "consistency", "eta": 0.05, "threshold": 1e-3, "max_iters": 4, "start_percent": 0.0,
           "end_percent": 1.0}


@functools.cache
def tiny(kind: str):
    return make_model(kind, seed=0)


def slice_cond(cond, i):
    return [[c[i:i + 1], {k: (v[i:i + 1] if torch.is_tensor(v) else v) for k, v in extra.items()}]
            for c, extra in cond]


def ksampler(run_node, tm, node="KSampler", model=None, seed=0, steps=3, cfg=4.0, sampler="euler",
             positive=None, negative=None, latent=None, denoise=1.0, **diffier):
    positive = positive if positive is not None else tm.make_cond(1, seed=1)
    negative = negative if negative is not None else tm.make_cond(1, seed=0)
    latent = latent if latent is not None else make_latent(tm, 1)
    out = run_node(node, model=model if model is not None else tm.patcher, seed=seed, steps=steps, cfg=cfg,
                   sampler_name=sampler, scheduler="normal", positive=positive, negative=negative,
                   latent_image=latent, denoise=denoise, **diffier)
    return out[0]["samples"], (json.loads(out[1]) if len(out) > 1 else None)


def patched(run_node, tm, **overrides):
    (m,) = run_node("DiffIERGuider", model=tm.patcher, **{**DIFFIER, **overrides})
    return m


# -- loading -------------------------------------------------------------------------------------
def test_pack_loaded_by_comfyui_loader_with_three_nodes(comfy_nodes, pack_module):
    assert hasattr(pack_module, "comfy_entrypoint")
    for node_id in NODE_IDS:
        assert node_id in comfy_nodes.NODE_CLASS_MAPPINGS
    assert comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS["DiffIERGuider"] == "DiffIER Guider (model patch)"
    assert comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS["KSamplerDiffIER"] == "KSampler (DiffIER)"
    assert comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS["DiffIERCFGGuider"] == "DiffIER CFG Guider"


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_every_input_has_a_tooltip_and_node_a_description(comfy_nodes, node_id):
    cls = comfy_nodes.NODE_CLASS_MAPPINGS[node_id]
    info = cls.GET_NODE_INFO_V1()
    assert info["description"]
    for name, spec in {**info["input"]["required"], **info["input"].get("optional", {})}.items():
        assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert info["input"]["optional"]["inner_guidance"][1]["default"] == "cond"
    for name in ("eta", "max_iters"):
        assert "turns DiffIER off" in info["input"]["required"][name][1]["tooltip"]


def test_ksampler_diffier_inputs_are_ksampler_inputs_then_diffier(comfy_nodes):
    core_inputs = list(comfy_nodes.NODE_CLASS_MAPPINGS["KSampler"].INPUT_TYPES()["required"])
    ours = list(comfy_nodes.NODE_CLASS_MAPPINGS["KSamplerDiffIER"].INPUT_TYPES()["required"])
    assert ours == core_inputs + list(DIFFIER)
    spec = comfy_nodes.NODE_CLASS_MAPPINGS["KSamplerDiffIER"].INPUT_TYPES()["required"]
    assert spec["eta"][1]["default"] == 0.05 and spec["threshold"][1]["default"] == 1e-3
    assert spec["max_iters"][1]["default"] == 4 and spec["mode"][1]["default"] == "consistency"


# -- sampling on every model kind ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["eps", "v", "flow", "video", "audio"])
@pytest.mark.parametrize("mode", ["consistency", "paper"])
def test_ksampler_diffier_on_every_model_kind(run_node, kind, mode):
    tm = tiny(kind)
    plain, _ = ksampler(run_node, tm)
    ours, info = ksampler(run_node, tm, node="KSamplerDiffIER", **{**DIFFIER, "mode": mode})
    assert ours.shape == plain.shape and torch.isfinite(ours).all()
    assert info["steps_corrected"] == 3 and info["mode"] == mode
    assert not torch.equal(ours, plain)
    if mode == "consistency":
        assert info["extra_model_evals"] >= 3 and info["mean_iterations"] >= 1
        assert (ours - plain).abs().mean() > 1e-4 * plain.abs().mean()
    else:
        assert info["extra_model_evals"] == 0


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_three_routes_give_the_same_image(run_node, kind):
    """KSamplerDiffIER == KSampler(DiffIERGuider(model)) == SamplerCustomAdvanced(DiffIERCFGGuider).

    Bit for bit: all three reach the same ComfyUI sampling code with the same batches, so they run the same
    arithmetic in this process (a same-machine claim; it holds on any CPU).
    """
    tm = tiny(kind)
    pos, neg = tm.make_cond(1, seed=1), tm.make_cond(1, seed=0)
    a, _ = ksampler(run_node, tm, node="KSamplerDiffIER", seed=5, positive=pos, negative=neg, **DIFFIER)
    b, _ = ksampler(run_node, tm, model=patched(run_node, tm), seed=5, positive=pos, negative=neg)
    (guider,) = run_node("DiffIERCFGGuider", model=tm.patcher, positive=pos, negative=neg, cfg=4.0, **DIFFIER)
    (noise,) = run_node("RandomNoise", noise_seed=5)
    (sampler,) = run_node("KSamplerSelect", sampler_name="euler")
    (sigmas,) = run_node("BasicScheduler", model=tm.patcher, scheduler="normal", steps=3, denoise=1.0)
    out = run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                   latent_image=make_latent(tm, 1))
    c = out[0]["samples"]
    assert torch.equal(a, b)
    assert torch.equal(a, c)


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "euler_ancestral", "dpmpp_2m_sde", "ddim"])
def test_deterministic_and_stochastic_samplers_reproduce_bit_for_bit(run_node, sampler):
    """Same seed, rerun in one process: the same bits (same-machine claim); another seed differs."""
    tm = tiny("eps")
    a, info = ksampler(run_node, tm, node="KSamplerDiffIER", sampler=sampler, seed=3, **DIFFIER)
    b, _ = ksampler(run_node, tm, node="KSamplerDiffIER", sampler=sampler, seed=3, **DIFFIER)
    c, _ = ksampler(run_node, tm, node="KSamplerDiffIER", sampler=sampler, seed=4, **DIFFIER)
    assert torch.isfinite(a).all() and info["steps_corrected"] >= 3
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_inner_noise_follows_the_seed(run_node):
    """Two runs with the same initial latent noise but different DiffIER seeds differ only via DiffIER."""
    tm = tiny("eps")
    m = patched(run_node, tm)
    a, _ = ksampler(run_node, tm, model=m, seed=11)
    b, _ = ksampler(run_node, tm, model=m, seed=11)
    assert torch.equal(a, b)


def batch_vs_solo(run_node, tm, pos, neg, seed: int, node: str = "KSampler",
                  **extra) -> tuple[list[float], torch.Tensor, dict]:
    """Largest |batch-of-2 output − batch-of-1 output| per sample (same seed, per-sample prompts), the batch
    output and the batch run's info."""
    both, info = ksampler(run_node, tm, node=node, seed=seed, positive=pos, negative=neg, latent=make_latent(tm, 2),
                          **extra)
    diffs = []
    for i in range(2):
        solo, _ = ksampler(run_node, tm, node=node, seed=seed, positive=slice_cond(pos, i),
                           negative=slice_cond(neg, i), latent=make_latent(tm, 1, batch_index=[i]), **extra)
        diffs.append(float((both[i:i + 1] - solo).abs().max()))
    return diffs, both, info


#: float32 machine epsilon (2^-23): the spacing of float32 numbers just above 1
EPS_F32 = torch.finfo(torch.float32).eps
#: ulps of |x| one model evaluation may move an output when its kernels sum in another order (see below)
ULPS_PER_EVAL = 16
#: how far above the bound the difference between the batch's two samples must be (sample mixing's size)
MIXING_MARGIN = 1e3


def batch_float_bound(x: torch.Tensor, steps: int, max_iters: int) -> float:
    """Bound on |batch-of-2 − batch-of-1| that any x86-64/ARM CPU stays under when samples do not mix.

    A batch of two runs the same arithmetic per sample as a batch of one, except that batched kernels
    (matmul/conv blocking, SIMD width, threads) may add the terms of a sum in another order. Each reordered
    float32 sum differs by a few units in the last place of its result, i.e. by ~eps_f32·|value|; one model
    evaluation stacks a few such layers. Measured on the tiny models here (|x| ≈ 470 after 3 Euler steps):
    0 on an Intel Xeon, and ≈ 10 ulps of max|x| over plain KSampler's 6 evaluations (≈ 1.7 per evaluation,
    5e-4 absolute) on AMD EPYC; DiffIER's 15 evaluations differ by about as much, so the per-evaluation
    differences add up without being amplified. The bound allows ``ULPS_PER_EVAL`` = 16 ulps per evaluation,
    ~10× the worst seen, and adds them linearly over every evaluation of the run:
    ``bound = ULPS_PER_EVAL · eps_f32 · max|x| · steps · (2 + 2·max_iters)`` (cond + uncond per step, at most
    two per DiffIER inner iteration), ≈ 0.027 here. Being relative to the tensors' magnitude it holds at any
    latent scale; sample mixing would move a sample by about the gap between the two samples (≈ 460 here,
    ~2e4 × the bound).

    Args:
        x: the batch output (its largest magnitude sets the float32 resolution).
        steps: sampler steps of the run.
        max_iters: DiffIER's cap on inner iterations per step (0 for plain KSampler).
    """
    return ULPS_PER_EVAL * EPS_F32 * float(x.abs().max()) * steps * (2 + 2 * max_iters)


def assert_batch_independent(run_node, tm, pos, neg, seed: int, steps: int = 3) -> dict:
    """Each sample of a DiffIER batch equals its batch-1 run up to float32 reordering noise, and mixing samples
    would be caught by orders of magnitude.

    The bound is :func:`batch_float_bound` (derived from eps_f32, the latent's magnitude and the number of model
    evaluations), or 4× what plain KSampler itself shows between batch sizes on this CPU if that is larger.
    Sample mixing changes a sample by about the difference between the batch's two samples, so that difference
    must exceed the bound ``MIXING_MARGIN`` (1e3) times (in practice ~2e4 times): even a leak of 0.1 % of the
    other sample into a sample would fail the first assertion.
    Returns the DiffIER batch run's info.
    """
    floor, _, _ = batch_vs_solo(run_node, tm, pos, neg, seed, steps=steps)
    diffs, both, info = batch_vs_solo(run_node, tm, pos, neg, seed, node="KSamplerDiffIER", steps=steps, **DIFFIER)
    bound = max(batch_float_bound(both, steps, DIFFIER["max_iters"]), 4 * max(floor))
    gap = float((both[0] - both[1]).abs().max())
    for diff in diffs:
        assert diff <= bound, (diff, bound, floor)
    assert gap > MIXING_MARGIN * bound, (gap, bound)
    return info


def test_batch_of_two_prompts_equals_batch_of_one(run_node):
    tm = tiny("eps")
    pos, neg = tm.make_cond(2, seed=7), tm.make_cond(2, seed=0)
    info = assert_batch_independent(run_node, tm, pos, neg, seed=9)
    assert len(info["steps"][0]["iterations"]) == 2


# -- the contract with ComfyUI ---------------------------------------------------------------------
def test_cfg_one_is_plain_ksampler_bit_for_bit(run_node):
    """At cfg = 1 with ``at_cfg_1 = skip`` (the default) DiffIER never runs: both runs are the same arithmetic in one
    process (same-machine claim), and the summary says why (tests/test_at_cfg_1.py: the other routes, the log)."""
    tm = tiny("eps")
    plain, _ = ksampler(run_node, tm, cfg=1.0)
    ours, info = ksampler(run_node, tm, node="KSamplerDiffIER", cfg=1.0, **DIFFIER)
    assert torch.equal(plain, ours) and info["steps_corrected"] == 0
    assert info["skipped"]["cfg_1"] == 3 and "at_cfg_1 = correct" in info["notice"]


@pytest.mark.parametrize("override", [{"eta": 0.0}, {"max_iters": 0}, {"start_percent": 1.0, "end_percent": 1.0}])
def test_off_values_are_plain_ksampler_bit_for_bit(run_node, override):
    """Switched off, DiffIER adds no operation: the same arithmetic as plain KSampler (same-machine claim)."""
    tm = tiny("eps")
    plain, _ = ksampler(run_node, tm)
    ours, info = ksampler(run_node, tm, node="KSamplerDiffIER", **{**DIFFIER, **override})
    assert torch.equal(plain, ours) and info["steps_corrected"] == 0
    assert info["notice"].startswith("DiffIER did nothing in this run")


def test_step_window_limits_corrected_steps(run_node):
    tm = tiny("eps")
    _, info = ksampler(run_node, tm, node="KSamplerDiffIER", steps=6, **{**DIFFIER, "end_percent": 0.5})
    assert 0 < info["steps_corrected"] < 6
    sigmas = [s["sigma"] for s in info["steps"]]
    assert sigmas == sorted(sigmas, reverse=True)  # the early (high-σ) steps


def test_input_model_is_not_mutated(run_node):
    tm = make_model("eps", seed=0)
    before_opts = copy.copy(tm.patcher.model_options)
    before_post = list(tm.patcher.model_options.get("sampler_post_cfg_function", []))
    before_wrappers = copy.deepcopy(tm.patcher.wrappers)
    plain_before, _ = ksampler(run_node, tm)
    m = patched(run_node, tm)
    ksampler(run_node, tm, model=m)
    ksampler(run_node, tm, node="KSamplerDiffIER", **DIFFIER)
    assert m is not tm.patcher
    assert tm.patcher.model_options.get("sampler_post_cfg_function", []) == before_post
    assert tm.patcher.wrappers == before_wrappers and tm.patcher.model_options.keys() == before_opts.keys()
    plain_after, _ = ksampler(run_node, tm)
    assert torch.equal(plain_before, plain_after)


def test_chains_with_apg_and_cfg_zero_star(run_node):
    tm = tiny("eps")
    (apg,) = run_node("APG", model=tm.patcher, eta=1.0, norm_threshold=5.0, momentum=0.0)
    (apg_diffier,) = run_node("DiffIERGuider", model=apg, **DIFFIER)
    (chain,) = run_node("CFGZeroStar", model=apg_diffier)
    assert len(apg.model_options["sampler_pre_cfg_function"]) == 1
    assert len(chain.model_options["sampler_post_cfg_function"]) == 2   # DiffIER, then CFG-Zero*
    outs = {}
    for name, m in {"apg": apg, "apg+diffier": apg_diffier, "chain": chain}.items():
        outs[name], _ = ksampler(run_node, tm, model=m)
        assert torch.isfinite(outs[name]).all()
    assert not torch.equal(outs["apg"], outs["apg+diffier"])
    assert not torch.equal(outs["apg+diffier"], outs["chain"])


def test_two_diffier_patches_chain_independently(run_node):
    tm = tiny("eps")
    once = patched(run_node, tm)
    (twice,) = run_node("DiffIERGuider", model=once, **{**DIFFIER, "mode": "paper"})
    a, _ = ksampler(run_node, tm, model=once)
    b, _ = ksampler(run_node, tm, model=twice)
    assert torch.isfinite(b).all() and not torch.equal(a, b)


def test_paper_sum_reduction_wipes_the_prediction_in_comfyui(run_node, pack_module):
    """Why the literal reading is not offered: on a real sampling run it replaces the prediction by noise."""
    core = pack_module.diffier_core
    patch_mod = pack_module.nodes.patch
    tm = tiny("eps")
    plain, _ = ksampler(run_node, tm, steps=4)
    results = {}
    for reduction in ("mean", "sum"):
        config = core.DiffIERSettings(mode="paper", reduction=reduction, threshold=0.0, max_iters=10)
        model = patch_mod.DiffIERPatch(config).apply(tm.patcher)
        results[reduction], _ = ksampler(run_node, tm, model=model, steps=4)
    dev = {r: ((v - plain).norm() / plain.norm()).item() for r, v in results.items()}
    assert dev["mean"] < 0.02          # mean reduction: a per-element step of 2η/N (N = 256 here) is tiny
    assert dev["sum"] > 0.3            # sum reduction: only 0.9^10 of ε_cfg survives each step
    assert dev["sum"] > 20 * dev["mean"], dev


def test_validation_messages_name_the_input(comfy_nodes, run_node):
    """validate_inputs judges only the combos; NaN and start > end are rejected when the node runs."""
    for node_id in NODE_IDS:
        combos = {"mode": "consistency", "inner_guidance": "cond"}
        if node_id == "KSamplerDiffIER":
            combos.update(sampler_name="euler", scheduler="normal")
        cls = comfy_nodes.NODE_CLASS_MAPPINGS[node_id]
        assert cls.validate_inputs(**combos) is True
        assert "'mode'" in cls.validate_inputs(**{**combos, "mode": "fast"})
        assert "'inner_guidance'" in cls.validate_inputs(**{**combos, "inner_guidance": "both"})
        if node_id == "KSamplerDiffIER":
            assert "'sampler_name'" in cls.validate_inputs(**{**combos, "sampler_name": "nope"})
            assert "'scheduler'" in cls.validate_inputs(**{**combos, "scheduler": "nope"})
        assert cls.validate_inputs(**{**combos, "mode": None}) is True   # linked: checked at run time
    tm = tiny("eps")
    for bad, needles in [({"eta": float("nan")}, ("'eta'", "nan", "[0.0, 1.0]")),
                         ({"threshold": float("nan")}, ("'threshold'", "nan")),
                         ({"start_percent": 0.8, "end_percent": 0.2}, ("'start_percent'", "end_percent (0.2)"))]:
        for node_id in NODE_IDS:
            inputs = {**DIFFIER, **bad}
            if node_id == "DiffIERGuider":
                call = functools.partial(run_node, node_id, model=tm.patcher, **inputs)
            elif node_id == "DiffIERCFGGuider":
                call = functools.partial(run_node, node_id, model=tm.patcher, positive=tm.make_cond(1, seed=1),
                                         negative=tm.make_cond(1, seed=0), cfg=4.0, **inputs)
            else:
                call = functools.partial(ksampler, run_node, tm, node=node_id, **inputs)
            with pytest.raises(ValueError) as err:
                call()
            assert all(n in str(err.value) for n in needles), (node_id, bad, str(err.value))


def test_an_out_of_range_value_is_reported_against_its_input_only(comfy_nodes, comfy_loop):
    """ComfyUI's own schema check judges every numeric input, one error per bad input.

    In 0.3.75 an input named as an argument of ``validate_inputs`` is not range-checked by ComfyUI and a
    failing ``validate_inputs`` is reported against all of its arguments, so these errors must come from
    ComfyUI's ``min``/``max`` check: each names exactly the input it belongs to.
    """
    import execution

    prompt = {"1": {"class_type": "KSamplerDiffIER", "inputs": {
        "model": ["2", 0], "seed": 0, "steps": 20, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal",
        "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0, **DIFFIER}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "none.safetensors"}},
        "3": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["5", 0]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 1], "text": "x"}}}

    def errors_of(**bad) -> list[dict]:
        p = copy.deepcopy(prompt)
        p["1"]["inputs"].update(bad)
        ok, errors, _ = comfy_loop.run_until_complete(execution.validate_inputs("p", p, "1", {}))
        assert ok is False, bad
        return errors

    cases = [({"eta": 2.0}, "eta", "value_bigger_than_max"), ({"eta": -0.1}, "eta", "value_smaller_than_min"),
             ({"threshold": 5.0}, "threshold", "value_bigger_than_max"),
             ({"start_percent": 1.5}, "start_percent", "value_bigger_than_max"),
             ({"end_percent": -1.0}, "end_percent", "value_smaller_than_min"),
             ({"max_iters": 1000}, "max_iters", "value_bigger_than_max"),
             ({"steps": -3}, "steps", "value_smaller_than_min")]
    for bad, name, kind in cases:
        errors = errors_of(**bad)
        assert [(e["extra_info"]["input_name"], e["type"]) for e in errors] == [(name, kind)], (bad, errors)
        assert str(bad[name]) in errors[0]["message"]
    # several bad inputs at once: one error each, nothing attached to the inputs that are fine
    errors = errors_of(eta=2.0, steps=-3, mode="fast")
    by_input = {e["extra_info"]["input_name"]: e for e in errors}
    assert by_input["eta"]["type"] == "value_bigger_than_max" and by_input["steps"]["type"] == "value_smaller_than_min"
    assert "'mode'" in by_input["mode"]["details"] and "'fast'" in by_input["mode"]["details"]  # 0.3.75 skips V3 combos
    assert not {"threshold", "start_percent", "end_percent", "max_iters", "seed", "cfg"} & set(by_input)


@pytest.mark.parametrize("mode, per_step", [("paper", 0), ("consistency", 1)])
def test_host_syncs_per_step_in_a_real_run(run_node, pack_module, mode, per_step):
    """Beyond plain KSampler, DiffIER adds at most one host sync per step (none in paper mode).

    Per-run work (reading the initial noise for the seeds, the one copy of the step records) is a
    constant, so the per-step count is the slope between a 4-step and an 8-step run.
    """
    counter = SyncCounter
    tm = tiny("eps")
    extra = {}
    for steps in (4, 8):
        with counter() as plain:
            ksampler(run_node, tm, steps=steps)
        with counter() as ours:
            _, info = ksampler(run_node, tm, node="KSamplerDiffIER", steps=steps, **{**DIFFIER, "mode": mode})
        assert info["steps_corrected"] == steps
        extra[steps] = ours.count - plain.count
    assert (extra[8] - extra[4]) / 4 == per_step, extra
    assert extra[4] <= 4 * per_step + 8, extra   # per-run constant stays small


def test_inner_guidance_cond_is_the_default_and_costs_one_row_per_iteration(run_node):
    """cond (default) re-evaluates the conditional branch only: B model rows per inner iteration, not 2B."""
    tm = tiny("eps")
    rows = {}
    outs = {}
    for variant in ("default", "cond", "cfg"):
        counted = ModelRows()
        extra = {} if variant == "default" else {"inner_guidance": variant}
        outs[variant], info = ksampler(run_node, tm, node="KSamplerDiffIER", model=counted.on(tm.patcher),
                                       **{**DIFFIER, "threshold": 0.0}, **extra)
        rows[variant] = counted.rows
        assert info["extra_model_evals"] == 3 * 4
    assert torch.equal(outs["default"], outs["cond"]) and not torch.equal(outs["cond"], outs["cfg"])
    assert rows["cond"] == 3 * 2 + 3 * 4 * 1     # CFG pass (cond + uncond) + one row per inner iteration
    assert rows["cfg"] == 3 * 2 + 3 * 4 * 2
