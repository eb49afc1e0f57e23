"""Testbed 1 (known scores): the GMM as a real ComfyUI model, and a smoke run of the benchmark.

``python -m benchmarks.known_score --quick --out <tmp>`` must write a complete, finite JSON document
in which plain CFG shows its ω sweet spot (better at some interior ω than at both ω = 1 and the
largest ω) in every error regime.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pack_loader import import_from_folder

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
_PKG = "_diffier_benchmarks_under_test"


def _bench(module: str):
    """``benchmarks.<module>`` loaded by file path (the repository root is not importable under pytest)."""
    return import_from_folder(_PKG, REPO / "benchmarks", module)


def test_gmm_model_through_comfyui_matches_the_analytic_denoiser(comfy_nodes):
    G = _bench("testbeds.gmm")
    CM = _bench("testbeds.comfy_model")
    gmm = G.make_gmm(seed=0).blurred(var_scale=2.0, leak=0.3)
    patcher = CM.make_patcher(gmm)
    model = patcher.model
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
            torch.testing.assert_close(denoised, expected, rtol=1e-4, atol=1e-4 * max(1.0, sigma))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("known_score")
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.known_score", "--quick", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for png in ("known_score_quality_vs_omega_quick.png", "known_score_gap_per_step_quick.png"):
        assert (out / png).stat().st_size > 10_000
    return json.loads((out / "known_score_quick.json").read_text())


def test_schema(quick):
    assert quick["schema"] == "diffier.known_score/v1" and quick["quick"] is True
    cfg = quick["config"]
    assert cfg["dim"] >= 256 and cfg["num_classes"] >= 2 and cfg["comps_per_class"] >= 2 and cfg["seeds"] >= 2
    assert [float(o) for o in quick["omegas"]] == [1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0]
    names = {m["name"] for m in quick["methods"]}
    for required in ("cfg", "diffier-cons(eta=.05,it=4)", "diffier-paper(mean)", "rescalecfg(0.7)",
                     "apg(eta=1,r=5)", "cfgzerostar", "eq9-oracle", "eq9-estimate"):
        assert required in names
    assert set(quick["results"]) == {"overspread", "collapse"}
    for regime, by_method in quick["results"].items():
        assert set(by_method) == names
        for method in quick["methods"]:
            by_omega = by_method[method["name"]]
            assert list(by_omega) == (["free"] if method["omega_free"] else quick["omegas"])
            for okey, metrics in by_omega.items():
                assert set(metrics) == set(quick["metrics"])
                for name, st in metrics.items():
                    assert len(st["values"]) == cfg["seeds"]
                    assert all(math.isfinite(v) for v in st["values"]), (regime, method["name"], okey, name)
                    assert math.isfinite(st["mean"]) and math.isfinite(st["ci95"])
                steps = quick["per_step"][regime][method["name"]][okey]
                assert len(steps["sigma"]) == len(steps["eps"]) == len(steps["score"]) > 0
    # cost accounting: plain CFG evaluates cond + uncond once per step; ω = 1 skips the uncond pass
    steps = cfg["steps"]
    cfg_rows = quick["results"]["overspread"]["cfg"]
    assert cfg_rows["1"]["evals_per_sample"]["mean"] == steps
    assert cfg_rows["5"]["evals_per_sample"]["mean"] == 2 * steps
    assert quick["results"]["overspread"]["diffier-cons(eta=.05,it=4)"]["5"]["evals_per_sample"]["mean"] > 2 * steps
    assert quick["results"]["overspread"]["diffier-paper(mean)"]["5"]["evals_per_sample"]["mean"] == 2 * steps


def test_plain_cfg_has_a_sweet_spot(quick):
    for regime, by_method in quick["results"].items():
        ed = [by_method["cfg"][o]["energy_distance"]["mean"] for o in quick["omegas"]]
        interior = min(ed[1:-1])
        assert interior < ed[0] and interior < ed[-1], (regime, ed)
        assert quick["summary"][regime]["cfg_sweet_spot"]["has_sweet_spot"]
