"""Every ComfyUI sampler with DiffIER on, in every grad mode a caller may sample in.

The HTTP server samples under ``torch.inference_mode``; scripts, other custom nodes and in-process
callers often do not, and some samplers (``uni_pc``, ``uni_pc_bh2``) are not wrapped in
``torch.no_grad`` by ComfyUI, so with grad enabled the model's prediction requires grad when it reaches
DiffIER. Each sampler of ``comfy.samplers.KSampler.SAMPLERS`` runs through the real ComfyUI sampling
path (the KSampler (DiffIER) node -> ``nodes.common_ksampler``) on a tiny random-weight SD1.x UNet, and
must give a finite latent that differs from plain CFG, the same in both grad modes.
"""

from __future__ import annotations

import functools
import json

import comfy.samplers
import pytest
import torch
from tiny_models import make_latent, make_model

pytestmark = pytest.mark.integration

GRAD_MODES = {"enable_grad": torch.enable_grad, "inference_mode": torch.inference_mode}
DIFFIER = {"mode": "consistency", "eta": 0.05, "threshold": 1e-3, "max_iters": 2, "start_percent": 0.0,
           "end_percent": 1.0}
STEPS = 3
#: Samplers that ComfyUI runs without torch.no_grad: with grad enabled, DiffIER sees a prediction that
#: requires grad (the case that crashed with "where(): functions with out=... arguments don't support
#: automatic differentiation").
GRAD_SAMPLERS = {"uni_pc", "uni_pc_bh2"}


@functools.cache
def tiny():
    return make_model("eps", seed=0)


def _inputs(tm, sampler: str, model) -> dict:
    return {"model": model, "seed": 7, "steps": STEPS, "cfg": 4.0, "sampler_name": sampler, "scheduler": "normal",
            "positive": tm.make_cond(1, seed=1), "negative": tm.make_cond(1, seed=0), "latent_image": make_latent(tm),
            "denoise": 1.0}


def _recording(tm, seen: list):
    """A clone of the tiny model whose first post-CFG hook records the grad state DiffIER will see."""
    def record(args):
        seen.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled(), args["denoised"].requires_grad))
        return args["denoised"]

    m = tm.patcher.clone()
    m.set_model_sampler_post_cfg_function(record)
    return m


@pytest.mark.parametrize("sampler", comfy.samplers.KSampler.SAMPLERS)
def test_every_sampler_with_diffier_in_every_grad_mode(run_node, sampler):
    tm = tiny()
    with torch.inference_mode():
        (plain,) = run_node("KSampler", **_inputs(tm, sampler, tm.patcher))
    plain = plain["samples"]
    assert torch.isfinite(plain).all(), f"plain {sampler} is not finite on the tiny model"

    results = {}
    for name, grad_mode in GRAD_MODES.items():
        seen: list = []
        with grad_mode():
            latent, info = run_node("KSamplerDiffIER", **_inputs(tm, sampler, _recording(tm, seen)), **DIFFIER)
        ours, info = latent["samples"], json.loads(info)
        assert seen, f"{sampler}: no CFG step reached the post-CFG hooks"
        if name == "inference_mode":
            assert all(inference for _, inference, _ in seen)
        if name == "enable_grad" and sampler in GRAD_SAMPLERS:
            assert any(requires for _, _, requires in seen), f"{sampler} no longer samples with grad"
        assert torch.isfinite(ours).all(), f"{sampler} under {name}: non-finite latent"
        # The result keeps ComfyUI's graph exactly where the sampler had one (straight-through correction).
        assert ours.requires_grad == any(requires for _, _, requires in seen)
        assert info["steps_corrected"] >= 1 and info["extra_model_evals"] >= 1
        assert (ours - plain).abs().mean() > 1e-4 * plain.abs().mean(), f"{sampler} under {name} equals plain CFG"
        results[name] = ours
    torch.testing.assert_close(results["enable_grad"], results["inference_mode"], rtol=1e-5, atol=1e-5)


# -- the core in every grad mode (pure torch) ---------------------------------------------------------
def _core():
    from pack_loader import import_core

    return import_core()


def _step(core, mode: str, x, d, evaluate, calls: list):
    def recorded(x_prime):
        calls.append(torch.is_grad_enabled())
        return evaluate(x_prime)

    config = core.DiffIERSettings(mode=mode, max_iters=3, threshold=0.0)
    return core.diffier_step(x, d, *core.convention_scales(torch.tensor([0.8, 1.3]), "eps"), config,
                             core.PerSampleNoise([3, 4]), evaluate=recorded if mode == "consistency" else None)


@pytest.mark.parametrize("mode", ["consistency", "paper"])
def test_core_gives_the_same_values_in_every_grad_mode_and_never_records_the_inner_loop(mode):
    core = _core()
    g = torch.Generator().manual_seed(0)
    x, d = torch.randn(2, 4, 6, 6, generator=g), torch.randn(2, 4, 6, 6, generator=g)
    weight = torch.tensor(0.6, requires_grad=True)  # a "network" parameter that requires grad
    evaluate = lambda x_prime: x_prime * weight  # noqa: E731
    ref_calls: list = []
    with torch.no_grad():
        reference, _ = _step(core, mode, x, d, evaluate, ref_calls)

    for context in (torch.inference_mode, torch.no_grad, torch.enable_grad):
        calls: list = []
        leaf = d.clone().requires_grad_(True)
        with context():
            out, info = _step(core, mode, x, leaf, evaluate, calls)
        assert torch.equal(out.detach(), reference), f"{mode} under {context.__name__} changed the values"
        assert not any(calls), "an inner model evaluation ran with grad enabled"
        assert len(calls) == len(ref_calls) == (3 if mode == "consistency" else 0)
        assert info.kept.all()
        if context is torch.enable_grad:
            # The prediction's graph is kept, the correction is a constant: d out / d denoised = I.
            assert out.requires_grad
            (grad,) = torch.autograd.grad(out.sum(), leaf)
            torch.testing.assert_close(grad, torch.ones_like(leaf))
            assert weight.grad is None
        else:
            assert not out.requires_grad


def test_core_with_grad_keeps_a_non_finite_sample_unchanged_and_never_turns_inf_into_nan():
    core = _core()
    g = torch.Generator().manual_seed(1)
    x, d = torch.randn(2, 4, 6, 6, generator=g), torch.randn(2, 4, 6, 6, generator=g)
    d[1, 0, 0, 0] = float("inf")
    leaf = d.clone().requires_grad_(True)
    with torch.enable_grad():
        out, info = _step(core, "consistency", x, leaf, lambda x_prime: x_prime * 0.5, [])
    assert info.kept.tolist() == [True, False]
    assert torch.equal(out[1].detach(), d[1])                       # passed through, inf kept as inf
    assert torch.isfinite(out[0]).all() and not torch.equal(out[0].detach(), d[0])
