"""The benchmark testbeds (``benchmarks/testbeds``) through a real ComfyUI, and the "one registry" guard.

* ``benchmarks/tuning.py`` is the only benchmark module that names a method's ComfyUI node (an AST scan of every
  other module under ``benchmarks/`` for string literals equal to a node id; the sweep's aliases must point at
  tuning's ids).
* Known scores: the GMM as a ComfyUI model matches its analytic denoiser; sampling the exact mixture leaves no Eq. 8
  gap along the trajectory while the imperfect model does; plain CFG's score is finite and reproducible per seed,
  and the evaluation counts are CFG's (2 per step, 1 at ω = 1) and more for DiffIER.
* Digits: the FD of the test features against themselves is 0; a run's FD is finite; pooling seeds works.
* SR (both models): the PSNR of HR against itself is infinite, seeds use different images, plain CFG's PSNR is
  finite and above 10 dB.

The end-to-end runs of the protocol on these beds are ``test_benchmark_tuned.py``'s quick runs.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from pack_loader import import_from_folder

REPO = Path(__file__).resolve().parent.parent
_PKG = "_diffier_benchmarks_under_test"


def _bench(module: str):
    """``benchmarks.<module>`` loaded by file path (the repository root is not importable under pytest)."""
    return import_from_folder(_PKG, REPO / "benchmarks", module)


# ---------------------------------------------------------------------------------------------------
# one place where a method is declared


def _node_id_literals(source: str, ids: set[str]) -> list[tuple[int, str]]:
    """``(line, literal)`` of every string literal in ``source`` that is one of the node ``ids``."""
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip() in ids]


def test_only_tuning_declares_the_methods_node_ids():
    T = _bench("tuning")
    ids = set(T.NODE_IDS.values()) | {"EpsilonScaling"}
    assert {"DiffIERGuider", "APG", "RescaleCFG", "CFGZeroStar", "TCFG", "Epsilon Scaling"} <= ids
    # the scan finds a declaration where there is one
    assert _node_id_literals('ANCHOR = ("APG", {"eta": 1.0})\n"""APG in prose is fine."""', ids) == [(1, "APG")]
    tuning = REPO / "benchmarks" / "tuning.py"
    found = {str(p.relative_to(REPO)): hits for p in sorted((REPO / "benchmarks").rglob("*.py")) if p != tuning
             for hits in [_node_id_literals(p.read_text(), ids)] if hits}
    assert found == {}, f"node ids declared outside benchmarks/tuning.py: {found}"
    methods = _bench("sweep.methods")
    assert {node for node, _ in methods.ALIASES.values()} <= ids and methods.DIFFIER_NODE == T.NODE_IDS["diffier"]
    grids = T.method_grids(quick=False)
    assert {n for g in grids.values() for s in g for n, _ in s.patches} == set(T.NODE_IDS.values())


# ---------------------------------------------------------------------------------------------------
# through a real ComfyUI


@pytest.fixture(scope="module")
def harness(comfy_root, comfy_nodes, run_node, pack_module):
    return _bench("harness").Harness((comfy_root, comfy_nodes, run_node, pack_module))


@pytest.mark.integration
def test_gmm_model_through_comfyui_matches_the_analytic_denoiser(comfy_nodes):
    G = _bench("testbeds.gmm")
    CM = _bench("testbeds.comfy_model")
    gmm = G.make_gmm(seed=0).blurred(var_scale=2.0, leak=0.3)
    model = CM.make_patcher(gmm).model
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    onehot = torch.nn.functional.one_hot(labels, 4).float().unsqueeze(1)
    g = torch.Generator().manual_seed(0)
    for sigma in (60.0, 2.0, 0.05):
        x = gmm.sample(labels, g).reshape(6, 4, 8, 8) + sigma * torch.randn((6, 4, 8, 8), generator=g)
        s = torch.full((6,), sigma)
        for ctx, rows in ((onehot, labels), (torch.zeros_like(onehot), torch.full((6,), 4))):
            denoised = model.apply_model(x, s, c_crossattn=ctx)
            expected = gmm.denoise_rows(x.reshape(6, -1), s, rows).reshape(x.shape)
            assert torch.isfinite(denoised).all()
            # float32 arithmetic on both sides; the model inverts ComfyUI's input scaling, hence the tolerance
            torch.testing.assert_close(denoised, expected, rtol=1e-4, atol=1e-4 * max(1.0, sigma))


@pytest.mark.integration
def test_known_score_bed_exact_model_has_no_gap_and_cfg_scores_are_finite(harness):
    KS = _bench("testbeds.known_score")
    T = _bench("tuning")
    bed = KS.KnownScoreBed(40, 6, ["overspread"], harness=harness)
    cfg = T.Job("cfg")
    exact = KS.exact_gap(bed, cfg, 1.0, seed=0, exact_model=True)
    imperfect = KS.exact_gap(bed, cfg, 1.0, seed=0)
    assert len(exact) == len(imperfect) == 6
    # the same float32 mixture on both sides: only rounding separates them, far below the imperfect model's gap
    assert max(exact) < 1e-3 * min(imperfect), (exact, imperfect)
    a, b = bed.run("overspread", cfg, 3.0, 0, 6), bed.run("overspread", cfg, 3.0, 0, 6)
    assert math.isfinite(a["set"]) and a["set"] == b["set"] and a["nonfinite"] == 0
    assert bed.run("overspread", cfg, 3.0, 1, 6)["set"] != a["set"]      # another seed: other noise and reference
    assert a["evals"] == 12 and bed.run("overspread", cfg, 1.0, 0, 6)["evals"] == 6
    diffier = next(s for s in T.method_grids(quick=True)["diffier"] if s.label.startswith("diffier(eta=0.05"))
    d = bed.run("overspread", T.Job(diffier.label, diffier.patches), 3.0, 0, 6)
    assert d["evals"] > 12 and math.isfinite(d["set"])
    ci = bed.set_bootstrap([d], [a], 50)
    assert ci["lo"] <= ci["mean"] <= ci["hi"] or math.isclose(ci["lo"], ci["hi"])
    with pytest.raises(ValueError, match="regime must be one of"):
        KS.KnownScoreBed(40, 6, ["wobbly"], harness=harness)


@pytest.mark.integration
def test_digits_bed_scores_against_the_test_split(harness):
    D = _bench("testbeds.digits")
    M = _bench("metrics")
    T = _bench("tuning")
    bed = D.DigitsBed(10, 2, harness=harness)
    tf = bed.shared.test_features
    assert tf.shape == (1000, 64) and abs(M.frechet_distance(tf, tf)) < 1e-6
    runs = [bed.run("digits", T.Job("cfg"), 3.0, seed, 2) for seed in (0, 1)]
    assert all(math.isfinite(r["set"]) and r["set"] > 0 and r["feats"].shape == (10, 64) for r in runs)
    assert runs[0]["evals"] == 4 and math.isfinite(bed.pooled_set(runs))
    with pytest.raises(ValueError, match="samples must be at least 10"):
        D.DigitsBed(5, 2, harness=harness)


@pytest.mark.integration
@pytest.mark.parametrize("testbed", ["sr", "sr_photos"])
def test_sr_beds_psnr_and_disjoint_images(harness, testbed):
    S = _bench("testbeds.sr")
    T = _bench("tuning")
    bed = S.SRBed(testbed, 3, 2, harness=harness)
    hr0, hr1 = bed.hr(0), bed.hr(1)
    size = 28 if testbed == "sr" else 32
    assert hr0.shape == hr1.shape == (3, 1, size, size) and 0.0 <= float(hr0.min()) <= float(hr0.max()) <= 1.0
    assert not any(torch.equal(a, b) for a in hr0 for b in hr1)          # seeds use different images
    assert torch.isinf(S.image_quality(hr0, hr0)["psnr"]).all()
    r = bed.run(bed.groups[0], T.Job("cfg"), 1.0, 0, 2)
    assert r["nonfinite"] == 0 and 10.0 < r["set"] < 60.0 and r["evals"] == 2
    assert 10.0 < bed.bicubic([0])["psnr"] < 60.0
    with pytest.raises(ValueError, match="images must be in 1..64"):
        S.SRBed(testbed, 65, 2, harness=harness)
