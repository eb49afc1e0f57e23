"""The model's noise convention, read off its own ``model_sampling.noise_scaling`` as ``x = a(σ) x₀ + b(σ) ε``.

* every tiny model kind gives exactly the scales of its named convention (eps: a = 1, b = σ; flow: a = 1 − σ,
  b = σ), per sample, so the images of these models are the ones the two hard-coded conventions gave;
* a flow model whose CONST sampling has a noise scale s = 7.5 (newer ComfyUI's ``noise_scale``, set by its
  ``ModelNoiseScale`` node; HiDream-O1 uses 8.0 and 7.5), installed as ComfyUI's own ModelSampling* nodes do
  (``clone()`` then ``add_object_patch("model_sampling", ...)``): KSampler (DiffIER) samples, finite and
  deterministic, and the inner loop re-noises a recorded step as x' = a x̂₀ + b ε with b = s·σ;
* a ``noise_scaling`` that is not affine is a clear ``DiffIERError`` naming the class and what it gave;
* b = 0 (no noise: newer ComfyUI's ``IMG_TO_IMG_FLOW``) leaves every step unchanged, bit-identical to KSampler
  (same arithmetic in one process: a same-machine claim), with one warning per run.
"""

from __future__ import annotations

import functools
import logging

import pytest
import torch
from float_bounds import assert_f32_close, f32_bound, max_abs
from test_nodes import DIFFIER, ksampler
from tiny_models import make_latent, make_model

pytestmark = pytest.mark.integration

#: the noise scale HiDream-O1 samples with (newer ComfyUI's CONST.noise_scale)
NOISE_SCALE = 7.5


@functools.cache
def tiny(kind: str):
    return make_model(kind, seed=0)


@functools.cache
def samplings():
    """Model-sampling classes built the way ComfyUI's ModelSampling* nodes build theirs (a sampling base + a
    prediction type), with the noise conventions this file tests."""
    import comfy.model_sampling as ms

    class ScaledNoiseFlow(ms.ModelSamplingDiscreteFlow, ms.CONST):
        """Flow with a noise scale s: x = (1 − σ) x₀ + s σ ε."""

        noise_scale = NOISE_SCALE

        def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
            sigma = ms.reshape_sigma(sigma, noise.ndim)
            return (1.0 - sigma) * latent_image + sigma * (self.noise_scale * noise)

    class NoNoiseFlow(ms.ModelSamplingDiscreteFlow, ms.CONST):
        """An image-to-image flow whose sample never contains noise: x = x₀ (b = 0 at every σ)."""

        def calculate_denoised(self, sigma, model_output, model_input):
            return model_output

        def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
            return latent_image

    class CurvedFlow(ms.ModelSamplingDiscreteFlow, ms.CONST):
        """Not affine in ε: x = (1 − σ) x₀ + σ ε + 0.05 σ ε²."""

        def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
            sigma = ms.reshape_sigma(sigma, noise.ndim)
            return (1.0 - sigma) * latent_image + sigma * noise + 0.05 * sigma * noise * noise

    return {"scaled": ScaledNoiseFlow, "no_noise": NoNoiseFlow, "curved": CurvedFlow}


def with_sampling(tm, name: str):
    """A clone of ``tm``'s model with the model sampling ``name`` (as ComfyUI's ModelSampling* nodes install one)."""
    sampling = samplings()[name](tm.model.model_config)
    m = tm.patcher.clone()
    m.add_object_patch("model_sampling", sampling)
    return m, sampling


# -- reading the convention ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, convention", [("eps", "eps"), ("v", "eps"), ("audio", "eps"), ("flow", "flow"),
                                              ("video", "flow")])
def test_each_model_kind_gives_its_named_convention_exactly(pack_module, kind, convention):
    adapter, core = pack_module.nodes.comfy_adapter, pack_module.diffier_core
    sampling = tiny(kind).model.model_sampling
    sigma = torch.tensor([0.03, 0.4, 0.97, 2.5, 14.6]) if convention == "eps" else torch.tensor([0.03, 0.4, 0.97, 1.0])
    a, b = adapter.noise_scales(sampling, sigma)
    want_a, want_b = core.convention_scales(sigma, convention)
    assert torch.equal(a, want_a) and torch.equal(b, want_b)      # bit for bit: the images are those of before
    a_all, b_all = adapter.affine_noise_scales(sampling, sigma)
    assert torch.equal(a_all, want_a) and torch.equal(b_all, want_b)


def test_scaled_noise_flow_gives_b_equal_to_s_sigma(pack_module):
    adapter = pack_module.nodes.comfy_adapter
    _, sampling = with_sampling(tiny("flow"), "scaled")
    sigma = torch.tensor([0.1, 0.5, 0.9])
    a, b = adapter.noise_scales(sampling, sigma)
    torch.testing.assert_close(a, 1.0 - sigma, rtol=0, atol=f32_bound(1.0, ops=2))
    torch.testing.assert_close(b, NOISE_SCALE * sigma, rtol=0, atol=f32_bound(NOISE_SCALE, ops=2))


def test_a_non_affine_noise_scaling_is_a_clear_error(pack_module, run_node):
    core, adapter = pack_module.diffier_core, pack_module.nodes.comfy_adapter
    _, curved = with_sampling(tiny("flow"), "curved")

    class Offset:
        def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
            return latent_image + sigma * noise + 0.1

    sigmas = torch.tensor([1.0, 0.6, 0.2])
    with pytest.raises(core.DiffIERError, match="CurvedFlow is not affine") as err:
        adapter.affine_noise_scales(curved, sigmas)
    assert "a·x0 + b·ε" in str(err.value) and "σ = " in str(err.value)
    with pytest.raises(core.DiffIERError, match=r"Offset is not affine.*noise_scaling\(σ, 0, 0\) = 0\.1"):
        adapter.affine_noise_scales(Offset(), sigmas)
    # on the real sampling path: the run stops before its first step, naming the class
    model, _ = with_sampling(tiny("flow"), "curved")
    with pytest.raises(core.DiffIERError, match="CurvedFlow is not affine"):
        ksampler(run_node, tiny("flow"), node="KSamplerDiffIER", model=model, **DIFFIER)
    plain, _ = ksampler(run_node, tiny("flow"), model=model)            # the model itself samples fine
    assert torch.isfinite(plain).all()


# -- a noise scale s ≠ 1 -----------------------------------------------------------------------------------
def test_flow_with_noise_scale_samples_finite_and_deterministic(run_node):
    tm = tiny("flow")
    model, _ = with_sampling(tm, "scaled")
    plain, _ = ksampler(run_node, tm, model=model)
    ours, info = ksampler(run_node, tm, node="KSamplerDiffIER", model=model, **DIFFIER)
    again, _ = ksampler(run_node, tm, node="KSamplerDiffIER", model=model, **DIFFIER)
    other, _ = ksampler(run_node, tm, node="KSamplerDiffIER", model=model, seed=1, **DIFFIER)
    assert torch.isfinite(ours).all() and info["steps_corrected"] == 3 and info["notice"] == ""
    assert torch.equal(ours, again) and not torch.equal(ours, other) and not torch.equal(ours, plain)
    unscaled, _ = ksampler(run_node, tm, node="KSamplerDiffIER", **DIFFIER)
    assert not torch.equal(ours, unscaled)


def test_inner_loop_renoises_with_b_equal_to_s_sigma(pack_module, run_node):
    """A recorded run (consistency, one inner iteration per euler step): each step's inner evaluation gets
    x' = a x̂₀ + b ε with a = 1 − σ, b = s σ, x̂₀ the step's guided estimate and ε the step's draw of DiffIER's
    seeded noise (recreated from the sampler's seed and initial noise).

    Bound (tests/float_bounds.py): x' is two products and a sum (3 roundings) on values up to
    ``scale = max|a x̂₀|, |b ε|``, recomputed here the same way: ``4 · eps_f32 · scale``. Re-noising with
    b = σ (ignoring the noise scale) misses by (s − 1) σ |ε| ≈ 6σ, > 1e3 bounds at every step (asserted).
    """
    import comfy.patcher_extension as pe

    core = pack_module.diffier_core
    tm = tiny("flow")
    model, _ = with_sampling(tm, "scaled")
    events, run_start = [], {}

    def outer(executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
              disable_pbar=False, seed=None, **kwargs):
        run_start.update(noise=noise.clone(), seed=seed)
        return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed, **kwargs)

    def post_cfg(args):
        events.append(("step", args["denoised"].clone(), args["sigma"].clone()))
        return args["denoised"]

    def apply_model(executor, x, t, *args, **kwargs):
        events.append(("model", x.clone(), None))
        return executor(x, t, *args, **kwargs)

    model.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, "record", outer)
    model.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "record", apply_model)
    model.set_model_sampler_post_cfg_function(post_cfg)       # runs before DiffIER's: sees what DiffIER gets
    _, info = ksampler(run_node, tm, node="KSamplerDiffIER", model=model,
                       **{**DIFFIER, "threshold": 0.0, "max_iters": 1})
    assert info["steps_corrected"] == 3 and info["extra_model_evals"] == 3
    noise = core.PerSampleNoise(core.sample_seeds(run_start["seed"], run_start["noise"]))
    checked = 0
    for i, (kind, denoised, sigma) in enumerate(events):
        if kind != "step":
            continue
        x_prime = events[i + 1][1]                                 # the next model call: the inner evaluation
        eps = noise(denoised.float())                               # this step's draw
        a, b = (1.0 - sigma).reshape(-1, 1, 1, 1), (NOISE_SCALE * sigma).reshape(-1, 1, 1, 1)
        expected = a * denoised + b * eps
        bound = f32_bound(max_abs(a * denoised, b * eps, expected), ops=4)
        assert_f32_close(x_prime, expected, bound, wrong=a * denoised + sigma.reshape(-1, 1, 1, 1) * eps)
        checked += 1
    assert checked == 3


# -- no noise (b = 0) ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["consistency", "paper"])
def test_no_noise_steps_are_left_unchanged_and_said_once(run_node, caplog, mode):
    tm = tiny("flow")
    model, _ = with_sampling(tm, "no_noise")
    plain, _ = ksampler(run_node, tm, model=model)
    with caplog.at_level(logging.INFO, logger="DiffIER"):
        ours, info = ksampler(run_node, tm, node="KSamplerDiffIER", model=model, **{**DIFFIER, "mode": mode})
    assert torch.equal(plain, ours)
    assert info["steps_corrected"] == 0 and info["extra_model_evals"] == 0 and info["skipped"]["no_noise"] == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "no noise at 3 of 3 guided steps" in warnings[0], warnings
    assert "NoNoiseFlow" in warnings[0] and warnings[0] == info["notice"]


def test_no_noise_model_samples_plainly_through_every_route(run_node):
    """The guider routes skip it the same way (one latent per route, all equal to plain KSampler)."""
    tm = tiny("flow")
    model, _ = with_sampling(tm, "no_noise")
    plain, _ = ksampler(run_node, tm, model=model)
    (patched,) = run_node("DiffIERGuider", model=model, **DIFFIER)
    routed, _ = ksampler(run_node, tm, model=patched)
    pos, neg = tm.make_cond(1, seed=1), tm.make_cond(1, seed=0)
    (guider,) = run_node("DiffIERCFGGuider", model=model, positive=pos, negative=neg, cfg=4.0, **DIFFIER)
    (noise,) = run_node("RandomNoise", noise_seed=0)
    (sampler,) = run_node("KSamplerSelect", sampler_name="euler")
    (sigmas,) = run_node("BasicScheduler", model=model, scheduler="normal", steps=3, denoise=1.0)
    (out, _) = run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                        latent_image=make_latent(tm, 1))
    assert torch.equal(plain, routed) and torch.equal(plain, out["samples"])
