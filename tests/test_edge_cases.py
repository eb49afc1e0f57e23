"""In process: bad input, faults and edge cases on the real ComfyUI sampling path.

Float comparisons: ``torch.equal`` claims compare runs of the same arithmetic in this one process (reruns, or a
DiffIER run whose every correction was discarded against plain CFG): same-machine claims that hold on any CPU.
Batch-vs-solo comparisons use the float32 bound of ``test_nodes.batch_float_bound``.
"""

from __future__ import annotations

import functools
import logging

import pytest
import torch
from test_nodes import DIFFIER, assert_batch_independent, ksampler
from tiny_models import make_latent, make_model

from benchmarks.instruments import PeakMemory

pytestmark = pytest.mark.integration


@functools.cache
def tiny(kind: str = "eps", dtype: torch.dtype = torch.float32):
    return make_model(kind, seed=0, dtype=dtype)


def inject(tm, fault, *, when):
    """A clone of ``tm``'s model whose ``when(call_index, x)``-selected model calls are rewritten by ``fault``."""
    import comfy.patcher_extension

    calls = [0]

    def wrapper(executor, x, t, *args, **kwargs):
        out = executor(x, t, *args, **kwargs)
        calls[0] += 1
        return fault(out) if when(calls[0], x) else out

    m = tm.patcher.clone()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "fault", wrapper)
    return m


def nan_in_first_sample(out):
    out = out.clone()
    out[0] = float("nan")          # cond row 0 (cond and uncond are batched: rows [c0, c1, u0, u1])
    return out


def test_nan_prediction_is_passed_through_and_named_not_hidden(run_node, caplog):
    """A NaN from the model in sample 0 at step 2 stays visible; sample 1 is untouched by it."""
    tm = tiny()
    pos, neg = tm.make_cond(2, seed=7), tm.make_cond(2, seed=0)
    # with max_iters = 1 the model calls alternate: CFG pass, inner evaluation; call 3 = step 1's CFG pass
    faulty = inject(tm, nan_in_first_sample, when=lambda i, x: i == 3)
    with caplog.at_level(logging.WARNING, logger="DiffIER"):
        out, info = ksampler(run_node, tm, node="KSamplerDiffIER", model=faulty, positive=pos, negative=neg,
                             latent=make_latent(tm, 2), **{**DIFFIER, "max_iters": 1})
    assert torch.isnan(out[0]).any()
    assert torch.isfinite(out[1]).all()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "step 1" in messages and "sample 0" in messages and "non-finite" in messages
    flags = [s["input_finite"] for s in info["steps"]]
    assert flags[0] == [True, True] and flags[1][0] is False


def test_nonfinite_inner_evaluation_is_discarded_keeping_the_step_finite(run_node, caplog):
    """If only DiffIER's own re-evaluation goes non-finite, the step's finite estimate is kept.

    Bit for bit plain CFG: the discarded corrections leave the same arithmetic on the sampling path (the extra
    evaluations are separate model calls), in one process (a same-machine claim)."""
    tm = tiny()
    # with max_iters = 1 the model calls alternate: CFG pass, inner evaluation (the even calls)
    faulty = inject(tm, lambda out: out * float("inf"), when=lambda i, x: i % 2 == 0)
    plain, _ = ksampler(run_node, tm)
    with caplog.at_level(logging.WARNING, logger="DiffIER"):
        out, info = ksampler(run_node, tm, node="KSamplerDiffIER", model=faulty,
                             **{**DIFFIER, "max_iters": 1})
    assert torch.isfinite(out).all()
    assert all(s["kept"] == [False] for s in info["steps"])
    assert torch.equal(out, plain)          # every correction discarded: exactly plain CFG
    assert "discarded" in " ".join(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_models(run_node, dtype):
    tm = tiny("eps", dtype)
    assert tm.patcher.model.get_dtype() == dtype
    out, info = ksampler(run_node, tm, node="KSamplerDiffIER", **DIFFIER)
    assert torch.isfinite(out).all() and info["steps_corrected"] == 3
    assert all(s["kept"] == [True] for s in info["steps"])


def test_cfg_below_one_is_corrected(run_node):
    tm = tiny()
    plain, _ = ksampler(run_node, tm, cfg=0.5)
    out, info = ksampler(run_node, tm, node="KSamplerDiffIER", cfg=0.5, **DIFFIER)
    assert torch.isfinite(out).all() and info["steps_corrected"] == 3 and not torch.equal(out, plain)


def test_img2img_denoise_below_one_and_one_step_schedule(run_node):
    tm = tiny()
    start = {"samples": torch.randn(1, *tm.latent_shape, generator=torch.Generator().manual_seed(3))}
    out, info = ksampler(run_node, tm, node="KSamplerDiffIER", steps=4, denoise=0.5, latent=start, **DIFFIER)
    assert torch.isfinite(out).all() and info["steps_corrected"] == 4
    out1, info1 = ksampler(run_node, tm, node="KSamplerDiffIER", steps=1, **DIFFIER)
    assert torch.isfinite(out1).all() and info1["steps_corrected"] == 1


def test_all_zero_uncond(run_node):
    tm = tiny()
    (zero,) = run_node("ConditioningZeroOut", conditioning=tm.make_cond(1, seed=0))
    assert torch.count_nonzero(zero[0][0]) == 0
    out, info = ksampler(run_node, tm, node="KSamplerDiffIER", negative=zero, **DIFFIER)
    assert torch.isfinite(out).all() and info["steps_corrected"] == 3


def test_batch_of_mixed_prompts_against_zero_and_text_negatives(run_node):
    """Batch 2 whose negatives differ (one all-zero): each sample still equals its batch-1 run, within the float32
    bound of ``batch_float_bound`` (any CPU), while the two samples differ by > 1e3 bounds (mixing is caught)."""
    tm = tiny()
    pos = tm.make_cond(2, seed=3)
    neg = tm.make_cond(2, seed=4)
    neg[0][0][0] = 0.0
    assert_batch_independent(run_node, tm, pos, neg, seed=2)


def test_same_model_in_two_branches_patched_and_not(run_node):
    """The DiffIER branch does not leak into the plain branch that shares the loader's MODEL."""
    tm = make_model("eps", seed=0)
    plain_before, _ = ksampler(run_node, tm)
    (patched,) = run_node("DiffIERGuider", model=tm.patcher, **DIFFIER)
    ours, _ = ksampler(run_node, tm, model=patched)
    plain_after, _ = ksampler(run_node, tm)
    ours_again, _ = ksampler(run_node, tm, model=patched)
    assert torch.equal(plain_before, plain_after) and torch.equal(ours, ours_again)
    assert not torch.equal(ours, plain_after)


def test_interrupt_during_inner_loop_stops_and_next_run_succeeds(run_node):
    """ComfyUI's interrupt flag, raised while DiffIER's inner evaluations run, stops sampling promptly."""
    import comfy.model_management as mm

    tm = tiny()
    faulty = inject(tm, lambda out: out, when=lambda i, x: False)
    calls = [0]

    def raise_flag(out):
        calls[0] += 1
        mm.interrupt_current_processing(True)
        return out

    interrupting = inject(tm, raise_flag, when=lambda i, x: i == 3)   # step 0, 2nd inner evaluation
    with pytest.raises(mm.InterruptProcessingException):
        ksampler(run_node, tm, node="KSamplerDiffIER", model=interrupting, steps=20,
                 **{**DIFFIER, "threshold": 0.0})
    assert calls[0] == 1
    assert not mm.processing_interrupted()  # the flag was consumed by the raise
    out, info = ksampler(run_node, tm, node="KSamplerDiffIER", model=faulty, **DIFFIER)
    assert torch.isfinite(out).all() and info["steps_corrected"] == 3


def test_huge_latent_working_set_is_linear(pack_module):
    """DiffIER's own memory grows linearly with the latent (no quadratic buffers)."""
    core = pack_module.diffier_core
    per_element = []
    for hw in (64, 256):
        x = torch.randn(1, 4, hw, hw)
        d = torch.randn(1, 4, hw, hw)
        with PeakMemory() as m:
            core.diffier_step(x, d, *core.convention_scales(torch.tensor(0.5), "eps"),
                              core.DiffIERSettings(threshold=0.0), core.PerSampleNoise([0]), evaluate=lambda xp, d=d: d)
        per_element.append(m.peak_bytes / x.numel())
    assert per_element[1] <= 16.5 and abs(per_element[0] - per_element[1]) < 0.5   # ≤ 4 float32 latents
