"""Self-check of tests/tiny_models.py: every tiny model samples through ComfyUI's real KSampler.

Reruns are compared in one process (same-machine claims, any CPU).
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import KINDS, make_latent, make_model

pytestmark = pytest.mark.integration


def _ksampler(run_node, tm, positive, negative, seed=0):
    (latent,) = run_node(
        "KSampler", model=tm.patcher, seed=seed, steps=2, cfg=3.0, sampler_name="euler", scheduler="normal",
        positive=positive, negative=negative, latent_image=make_latent(tm, batch=1), denoise=1.0,
    )
    return latent["samples"]


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_model_ksampler(kind, run_node):
    import comfy.model_sampling

    tm = make_model(kind, seed=0)
    if kind in ("flow", "video"):
        assert isinstance(tm.model.model_sampling, comfy.model_sampling.CONST)
    elif kind == "eps":
        assert isinstance(tm.model.model_sampling, comfy.model_sampling.EPS)
        assert not isinstance(tm.model.model_sampling, comfy.model_sampling.V_PREDICTION)
    elif kind in ("v", "audio"):
        assert isinstance(tm.model.model_sampling, comfy.model_sampling.V_PREDICTION)

    negative = tm.make_cond(batch=1, seed=0)
    out_a = _ksampler(run_node, tm, tm.make_cond(batch=1, seed=1), negative)
    out_b = _ksampler(run_node, tm, tm.make_cond(batch=1, seed=2), negative)

    assert out_a.shape == (1,) + tuple(tm.latent_shape)
    assert out_a.dim() == {"video": 5, "audio": 3}.get(kind, 4)
    assert torch.isfinite(out_a).all() and torch.isfinite(out_b).all()
    assert out_a.abs().max() > 0
    assert not torch.allclose(out_a, out_b), "different prompts must give different samples"

    # Same inputs are deterministic.
    out_a2 = _ksampler(run_node, tm, tm.make_cond(batch=1, seed=1), negative)
    torch.testing.assert_close(out_a, out_a2)


def test_make_cond_batch_and_seed():
    tm = make_model("flow")
    c1, c1b, c2 = tm.make_cond(3, seed=1), tm.make_cond(3, seed=1), tm.make_cond(3, seed=2)
    assert c1[0][0].shape == (3, tm.context_tokens, tm.context_dim)
    assert c1[0][1]["pooled_output"].shape == (3, 32)
    torch.testing.assert_close(c1[0][0], c1b[0][0])
    assert not torch.allclose(c1[0][0], c2[0][0])
    assert make_latent(tm, 2)["samples"].shape == (2, 16, 8, 8)


def test_pack_loaded_and_extras_registered(comfy_nodes):
    for node_id in ("KSampler", "SamplerCustomAdvanced", "APG", "CFGZeroStar", "RescaleCFG"):
        assert node_id in comfy_nodes.NODE_CLASS_MAPPINGS, node_id
