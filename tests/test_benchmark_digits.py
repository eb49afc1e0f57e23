"""Smoke run of the digits testbed (``python -m benchmarks.digits --quick``): JSON schema, and plain CFG's
ω sweet spot on the shipped demo model.

The sweet spot is asserted on the Fréchet distance in classifier features: it is the one metric that
penalises both failure ends. At ω = 1 the small model draws ambiguous digits (the classifier agrees
with the requested digit for only ~88% of them; FD ≈ 42 in the full run), at ω = 15 it draws
saturated, thick, low-diversity strokes (FD ≈ 229); the minimum is near ω = 1.5 (FD ≈ 35). Class
accuracy and the IS analog saturate by ω ≈ 2 and stay flat (over-guided digits are still very
recognisable), so they cannot show the upper end of the sweet spot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent
METRICS = ("fd", "is", "accuracy", "precision", "recall", "density", "coverage", "evals_per_sample", "wall_s")


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_quick")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.digits", "--quick", "--out", str(out)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "digits_quick.json").read_text()), out


def test_schema(quick_report):
    report, out = quick_report
    assert report["schema_version"] == 1 and report["testbed"] == "digits" and report["quick"] is True
    for key in ("config", "model", "classifier", "reference_real_train", "results", "plots", "sample_grids",
                "total_wall_s"):
        assert key in report
    assert report["classifier"]["test_accuracy"] >= 0.97
    assert set(report["config"]["metrics"]) == set(METRICS)
    methods = {r["method"] for r in report["results"]}
    assert {"cfg", "diffier-consistency", "rescalecfg", "apg", "cfgzerostar"} <= methods
    for r in report["results"]:
        assert {"method", "group", "omega", "sampler", "per_seed", "mean", "ci95"} <= set(r)
        assert len(r["per_seed"]) == len(report["config"]["seeds"])
        for k in METRICS:
            assert isinstance(r["mean"][k], float) and isinstance(r["ci95"][k], float)
        assert 0.0 <= r["mean"]["accuracy"] <= 1.0 and 1.0 <= r["mean"]["is"] <= 10.0
    for name in report["plots"] + report["sample_grids"]:
        assert (out / name).stat().st_size > 1000
    by = {(r["method"], r["omega"]): r["mean"]["evals_per_sample"] for r in report["results"]}
    steps = report["config"]["steps"]
    assert by[("cfg", 1.0)] == steps           # ComfyUI skips the uncond pass at ω = 1
    assert by[("cfg", 3.0)] == 2 * steps
    assert by[("diffier-consistency", 3.0)] > 2 * steps  # the consistency loop re-evaluates the model


def test_plain_cfg_sweet_spot(quick_report):
    report, _ = quick_report
    fd = {r["omega"]: r["mean"]["fd"] for r in report["results"] if r["method"] == "cfg"}
    lo, hi = min(fd), max(fd)
    assert lo == 1.0 and hi == 15.0
    best_inner = min(v for w, v in fd.items() if lo < w < hi)
    assert best_inner < fd[lo] and best_inner < fd[hi], fd
