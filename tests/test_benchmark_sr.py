"""Smoke run of the super-resolution testbed (``python -m benchmarks.sr --quick``): JSON schema, finite
metrics, plots written, and plain CFG at ω = 1 actually super-resolves (PSNR far above zero on both shipped SR
models; above bicubic upsampling on digits)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("sr_quick")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sr", "--quick", "--out", str(out)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "sr.json").read_text()), out


def test_schema_and_finite_metrics(quick_report):
    report, out = quick_report
    assert report["schema_version"] == 1 and report["quick"] is True
    assert set(report["datasets"]) == {"digits", "photos"}
    for ds, rep in report["datasets"].items():
        assert rep["model"]["file"].startswith("sr_") and rep["model"]["parameters"] > 0
        methods = {r["method"] for r in rep["results"]}
        assert {"cfg", "diffier-consistency", "diffier-paper-mean", "rescalecfg", "apg", "cfgzerostar"} <= methods
        keys = ("psnr", "ssim", "accuracy", "fd") if ds == "digits" else ("psnr", "ssim")
        for r in rep["results"]:
            assert len(r["per_seed"]) == len(report["config"]["seeds"]) and r["nonfinite_samples"] == 0
            for k in keys:
                assert math.isfinite(r["mean"][k]), (ds, r["method"], r["omega"], k)
            assert -1.0 <= r["mean"]["ssim"] <= 1.0
            if r["method"] != "cfg":
                assert set(r["delta_vs_cfg"]) == set(keys)
        assert {"bicubic"} <= set(rep["baselines"]) and (out / f"sr_grid_{ds}.npz").stat().st_size > 100
        by = {(r["method"], r["omega"]): r for r in rep["results"]}
        steps = report["config"]["steps"]
        assert by[("cfg", 1.0)]["mean"]["evals_per_sample"] == steps       # no uncond pass at ω = 1
        assert by[("cfg", 3.0)]["mean"]["evals_per_sample"] == 2 * steps
        assert by[("diffier-consistency", 3.0)]["mean"]["evals_per_sample"] > 2 * steps
        # at ω = 1 DiffIER is off: identical to plain CFG
        assert by[("diffier-consistency", 1.0)]["mean"]["psnr"] == by[("cfg", 1.0)]["mean"]["psnr"]
    for name in ("sr_quality_vs_omega.png", "sr_grid.png"):
        assert (out / name).stat().st_size > 1000


def test_plain_cfg_super_resolves(quick_report):
    report, _ = quick_report
    for ds, rep in report["datasets"].items():
        cfg1 = next(r for r in rep["results"] if r["method"] == "cfg" and r["omega"] == 1.0)
        bicubic = rep["baselines"]["bicubic"]["psnr"]
        assert cfg1["mean"]["psnr"] > 11.0, ds
        if ds == "digits":   # the photo model trails bicubic by far (docs/evidence/sr.md); digits beats it
            assert cfg1["mean"]["psnr"] > bicubic, (ds, cfg1["mean"]["psnr"], bicubic)
