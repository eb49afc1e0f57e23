"""DiffIER on every model family ComfyUI 0.3.75 lists (tiny random-weight models: tests/tiny_families.py).

For each family (test id = the ``comfy.supported_models`` class name), through real ComfyUI nodes:
KSampler (DiffIER) and DiffIER Guider + KSampler at cfg > 1 run end to end, stay finite, change the sample
against plain KSampler, give the same bits for the same seed and for both routes, keep the samples of a batch
independent, and at cfg = 1 follow ``at_cfg_1``: ``skip`` is plain KSampler bit for bit, ``correct`` corrects
(finite, deterministic, both routes alike). Flux-style families get their guidance from the real
``FluxGuidance`` node. docs/COMPATIBILITY.md's family table lists these tests.

Runs are shared between the tests of a family (:func:`run`), so each family samples 14 times:
2 steps, tiny latents, batch ≤ 2. Float comparisons follow tests/float_bounds.py: ``torch.equal`` where both
sides run the same kernels on the same shapes in this process (a rerun, another route, DiffIER skipped);
a bound derived from float32 resolution where they do not (a batch of 2 against a batch of 1).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import pytest
import torch
from float_bounds import EPS_F32
from tiny_families import FAMILIES, Family, make_family
from tiny_models import make_latent

from benchmarks.instruments import ModelRows

pytestmark = pytest.mark.integration

STEPS = 2
CFG = 4.0
SEED = 5
DIFFIER = {"mode": "consistency", "eta": 0.05, "threshold": 1e-3, "max_iters": 2, "start_percent": 0.0,
           "end_percent": 1.0}
NAMES = list(FAMILIES)
#: families whose batch holds independent samples (not the frames of one video)
BATCHED = [name for name in NAMES if not FAMILIES[name].batch_is_frames]
#: families ComfyUI can sample at cfg = 1
CFG_1 = [name for name in NAMES if FAMILIES[name].cfg_1 is None]


@functools.cache
def tiny(name: str):
    return make_family(name, seed=0)


@functools.cache
def prompts(run_node, name: str) -> tuple[list, list]:
    """Positive and negative CONDITIONING of one prompt each, as a text encoder gives them (batch 1)."""
    fam: Family = FAMILIES[name]
    tm = tiny(name)
    pos, neg = tm.make_cond(1, seed=1), tm.make_cond(1, seed=0)
    if fam.positive_node is not None:
        node_id, inputs = fam.positive_node
        (pos,) = run_node(node_id, conditioning=pos, **inputs)
    return pos, neg


def sample(run_node, name: str, route: str, cfg: float = CFG, index: int | None = 0, **diffier) -> tuple:
    """One sampling run: ``(latent, info)``.

    Args:
        route: ``plain`` (KSampler), ``ksampler`` (KSampler (DiffIER)) or ``guider`` (DiffIER Guider + KSampler).
        index: the sample of a batch of 2 to run alone (its ``batch_index``); None runs the batch of 2.
        diffier: DiffIER inputs over ``DIFFIER``.
    """
    fam: Family = FAMILIES[name]
    tm = tiny(name)
    pos, neg = prompts(run_node, name)
    extra = fam.latent_extra() if fam.latent_extra is not None else {}
    if fam.batch_is_frames:
        latent = make_latent(tm, fam.latent_rows, **extra)
    elif index is None:
        latent = make_latent(tm, 2, **extra)
    else:
        latent = make_latent(tm, 1, batch_index=[index], **extra)
    inputs = {"seed": SEED, "steps": STEPS, "cfg": cfg, "sampler_name": "euler", "scheduler": "normal",
              "positive": pos, "negative": neg, "latent_image": latent, "denoise": 1.0}
    model = tm.patcher
    diffier = {**DIFFIER, **fam.diffier, **diffier}
    if route == "ksampler":
        out = run_node("KSamplerDiffIER", model=model, **inputs, **diffier)
        return out[0]["samples"], json.loads(out[1])
    if route == "guider":
        (model,) = run_node("DiffIERGuider", model=model, **diffier)
    out = run_node("KSampler", model=model, **inputs)
    return out[0]["samples"], None


#: the runs the tests share, by key: (route, cfg, index, DiffIER inputs), see :func:`sample`
RUNS = {
    "plain": ("plain", CFG, 0, {}),
    "diffier": ("ksampler", CFG, 0, {}),
    "diffier_again": ("ksampler", CFG, 0, {}),
    "guider": ("guider", CFG, 0, {}),
    "plain_1": ("plain", CFG, 1, {}),
    "diffier_1": ("ksampler", CFG, 1, {}),
    "plain_batch": ("plain", CFG, None, {}),
    "diffier_batch": ("ksampler", CFG, None, {}),
    "plain_cfg1": ("plain", 1.0, 0, {}),
    "skip_cfg1": ("ksampler", 1.0, 0, {"at_cfg_1": "skip"}),
    "skip_cfg1_guider": ("guider", 1.0, 0, {"at_cfg_1": "skip"}),
    "correct_cfg1": ("ksampler", 1.0, 0, {"at_cfg_1": "correct"}),
    "correct_cfg1_again": ("ksampler", 1.0, 0, {"at_cfg_1": "correct"}),
    "correct_cfg1_guider": ("guider", 1.0, 0, {"at_cfg_1": "correct"}),
}
_DONE: dict[tuple[str, str], tuple] = {}


def run(run_node, name: str, key: str) -> tuple:
    """The family's run ``key`` of :data:`RUNS` (sampled once per session, shared by the tests)."""
    if (name, key) not in _DONE:
        route, cfg, index, diffier = RUNS[key]
        _DONE[(name, key)] = sample(run_node, name, route, cfg=cfg, index=index, **diffier)
    return _DONE[(name, key)]


# -- cfg > 1 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_diffier_runs_and_changes_the_sample(run_node, name):
    plain, _ = run(run_node, name, "plain")
    ours, info = run(run_node, name, "diffier")
    assert ours.shape == plain.shape and torch.isfinite(plain).all()
    assert torch.isfinite(ours).all()
    assert info["steps_corrected"] == STEPS and info["extra_model_evals"] >= STEPS
    assert not torch.equal(ours, plain)
    assert float((ours - plain).abs().mean()) > 1e-4 * float(plain.abs().mean())


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_sample(run_node, name):
    a, _ = run(run_node, name, "diffier")
    b, _ = run(run_node, name, "diffier_again")
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_guider_route_equals_ksampler_diffier(run_node, name):
    a, _ = run(run_node, name, "diffier")
    b, _ = run(run_node, name, "guider")
    assert torch.equal(a, b)


#: ulps of max|x| that one model evaluation may move a sample when batched kernels sum in another order
ULPS_PER_EVAL = 16
#: how far above the bound the gap between the batch's two samples must be (the size of sample mixing)
MIXING_MARGIN = 1e3


def batch_bound(x: torch.Tensor, evals: int) -> float:
    """``ULPS_PER_EVAL · eps_f32 · max|x| · evals``: |batch-of-2 − batch-of-1| when samples do not mix.

    A batch of two runs each sample through the same arithmetic as a batch of one, except that batched
    kernels may add the terms of a sum in another order, which moves a result by a few ulps of its magnitude
    per evaluation (tests/test_nodes.py measures ≈ 2 per evaluation on AMD EPYC, 0 on Intel Xeon); the bound
    allows 16 per evaluation, added over every evaluation of the run.
    """
    return ULPS_PER_EVAL * EPS_F32 * float(x.abs().max()) * evals


@pytest.mark.parametrize("name", BATCHED)
def test_batch_samples_are_independent(run_node, name):
    """Sample i of a batch of 2 equals the batch-of-1 run of sample i (``batch_index`` i: ComfyUI draws each
    sample's initial noise from the seed and its batch index, and DiffIER its inner noise likewise).

    The bound is :func:`batch_bound` over DiffIER's evaluations, or 4× what plain KSampler shows between batch
    sizes on this CPU if that is larger; mixing the samples would move each by about the gap between them,
    which must exceed the bound ``MIXING_MARGIN`` times.
    """
    plain_batch, _ = run(run_node, name, "plain_batch")
    floor = max(float((plain_batch[i:i + 1] - run(run_node, name, key)[0]).abs().max())
                for i, key in enumerate(("plain", "plain_1")))
    both, info = run(run_node, name, "diffier_batch")
    evals = STEPS * 2 + info["extra_model_evals"]
    bound = max(batch_bound(both, evals), 4 * floor)
    for i, key in enumerate(("diffier", "diffier_1")):
        solo, _ = run(run_node, name, key)
        assert float((both[i:i + 1] - solo).abs().max()) <= bound, (i, bound, floor)
    gap = float((both[0] - both[1]).abs().max())
    assert gap > MIXING_MARGIN * bound, (gap, bound)


# -- cfg = 1 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CFG_1)
def test_cfg_1_skip_is_plain_ksampler(run_node, name):
    plain, _ = run(run_node, name, "plain_cfg1")
    skipped, info = run(run_node, name, "skip_cfg1")
    guided, _ = run(run_node, name, "skip_cfg1_guider")
    assert torch.isfinite(plain).all()
    assert torch.equal(skipped, plain) and torch.equal(guided, plain)
    assert info["steps_corrected"] == 0 and info["skipped"]["cfg_1"] == info["guided_steps"] == STEPS
    assert "cfg = 1" in info["notice"]


@pytest.mark.parametrize("name", CFG_1)
def test_cfg_1_correct_corrects(run_node, name):
    plain, _ = run(run_node, name, "plain_cfg1")
    ours, info = run(run_node, name, "correct_cfg1")
    again, _ = run(run_node, name, "correct_cfg1_again")
    guided, _ = run(run_node, name, "correct_cfg1_guider")
    assert torch.isfinite(ours).all()
    assert info["steps_corrected"] == STEPS
    assert not torch.equal(ours, plain)
    assert torch.equal(ours, again) and torch.equal(ours, guided)


# -- models that evaluate cond and uncond as one pair ------------------------------------------------------
@pytest.mark.parametrize("name", ["Hunyuan3Dv2_1", "Hunyuan3Dv2"])
def test_a_paired_batch_model_evaluates_both_branches_with_inner_guidance_cond(run_node, pack_module, caplog, name):
    """Hunyuan3Dv2_1's network splits every batch into an (uncond, cond) pair, so with the default
    ``inner_guidance = cond`` (the families above run it) each inner evaluation runs both branches: two model rows
    per evaluation instead of one, and the log says so once per run. Hunyuan3Dv2 (no pairing) stays at one row."""
    paired = name in pack_module.nodes.comfy_adapter.PAIRED_BATCH_MODELS
    assert paired == (name == "Hunyuan3Dv2_1")
    rows = ModelRows()
    model = rows.on(tiny(name).patcher)
    pos, neg = prompts(run_node, name)
    caplog.set_level(logging.INFO, logger="DiffIER")
    out = run_node("KSamplerDiffIER", model=model, seed=SEED, steps=STEPS, cfg=CFG, sampler_name="euler",
                   scheduler="normal", positive=pos, negative=neg, latent_image=make_latent(tiny(name), 1), denoise=1.0,
                   **DIFFIER)
    info = json.loads(out[1])
    assert torch.isfinite(out[0]["samples"]).all() and info["steps_corrected"] == STEPS
    assert rows.rows == 2 * STEPS + (2 if paired else 1) * info["extra_model_evals"], (rows.rows, info)
    said = [r.getMessage() for r in caplog.records if "evaluates cond and uncond as one pair" in r.getMessage()]
    assert said == ([f"DiffIER: {name} evaluates cond and uncond as one pair, so inner_guidance = cond evaluates both "
                     "branches (two model rows per inner iteration) and uses the conditional one"] if paired else [])


# -- docs/COMPATIBILITY.md's family table --------------------------------------------------------------
COMPATIBILITY = Path(__file__).resolve().parent.parent / "docs" / "COMPATIBILITY.md"
#: the table's check columns: (header, test function, the families it is parametrised over)
CHECKS = [
    ("runs, changes", test_diffier_runs_and_changes_the_sample, NAMES),
    ("same bits", test_same_seed_same_sample, NAMES),
    ("Guider route", test_guider_route_equals_ksampler_diffier, NAMES),
    ("batch", test_batch_samples_are_independent, BATCHED),
    ("cfg 1 skip", test_cfg_1_skip_is_plain_ksampler, CFG_1),
    ("cfg 1 correct", test_cfg_1_correct_corrects, CFG_1),
]
#: why a check does not apply to a family (the table's footnote marks)
NOT_APPLICABLE = {"batch": "¹", "cfg 1 skip": "²", "cfg 1 correct": "²"}


def conditioning_keys(run_node, name: str) -> str:
    """The positive prompt's conditioning keys besides the text context, as the table lists them."""
    pos, _ = prompts(run_node, name)
    keys = sorted(k for k, v in pos[0][1].items() if not (k == "pooled_output" and v is None))
    return ", ".join(f"`{k}`" for k in keys) or "—"


def matrix_rows(run_node) -> list[str]:
    """The table as this module's tests make it: one row per family, ✓ where a test asserts the check."""
    header = ["family", "`ModelType`", "conditioning besides the text context"]
    header += [f"{title}: `{fn.__name__}`" for title, fn, _ in CHECKS]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in NAMES:
        cells = [f"`{name}`", tiny(name).model.model_type.name, conditioning_keys(run_node, name)]
        cells += ["✓" if name in names else NOT_APPLICABLE[title] for title, _, names in CHECKS]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def test_compatibility_table_lists_every_family_and_its_tests(run_node):
    """docs/COMPATIBILITY.md's table between the FAMILY-MATRIX markers is what this module tests, row for row."""
    import comfy.supported_models

    assert sorted(NAMES) == sorted(cls.__name__ for cls in comfy.supported_models.models)
    text = COMPATIBILITY.read_text(encoding="utf-8")
    start, end = "<!-- FAMILY-MATRIX:START -->\n", "<!-- FAMILY-MATRIX:END -->"
    documented = text[text.index(start) + len(start):text.index(end)].strip().splitlines()
    expected = matrix_rows(run_node)
    assert documented == expected, "docs/COMPATIBILITY.md's family table should read:\n" + "\n".join(expected)
