"""``python -m benchmarks.frontier --testbed known_score --quick`` then ``--choose`` (CI smoke run).

The quick run (a minute on 2 CPU cores) must write a JSON document and a PNG in which: tuning and test seeds are
disjoint; every point's evaluation ratio is the count its settings imply (plain CFG 2 rows per step, one cond row
per corrected call with one iteration, ``ceil(n / stride)`` corrected calls, the controls' extra steps); wall-time
ratios were measured; every share is its gain over the quality point's, recomputed here from the recorded per-ω
scores; the per-budget picks are the best tuning shares within budget (recomputed); and ``--choose`` turns the
document into presets that keep to their budgets.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUDGETS = {"balanced": 1.5, "fast": 1.2}


def _frontier(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.frontier", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("frontier")
    _frontier("--testbed", "known_score", "--quick", "--out", str(out))
    return out, json.loads((out / "frontier_known_score_quick.json").read_text())


def _gain(scores: dict, cfg: dict, lower: bool, aggregate: str) -> float:
    vals = [(math.log(scores[o] / cfg[o]) if aggregate == "log_ratio" else scores[o] - cfg[o]) for o in scores]
    v = sum(vals) / len(vals)
    return -v if lower else v


def test_quick_frontier_document(quick):
    out, doc = quick
    assert doc["schema"] == "diffier.frontier/v1" and doc["testbed"] == "known_score" and doc["quick"] is True
    assert not set(doc["tuning_seeds"]) & set(doc["test_seeds"])
    assert (out / "frontier_known_score_quick.png").stat().st_size > 10_000
    assert doc["runtime_s"]["total_s"] > 0 and doc["runtime_s"]["tuning_s"] > 0 and doc["runtime_s"]["test_s"] > 0
    pts = doc["points"]
    steps = doc["steps"]
    lower, agg = doc["metric"]["lower_is_better"], doc["metric"]["all_omega_aggregate"]
    kinds = {p["kind"] for p in pts.values()}
    assert kinds == {"cfg", "control", "diffier"}
    quality = [lab for lab, p in pts.items() if p["family"] == "quality"]
    assert quality == ["diffier(eta=0.05,it=4)"]
    for phase in ("tuning", "test"):
        cfg = pts["cfg"][phase]
        assert cfg["evals_per_sample"] == 2 * steps and cfg["evals_ratio"] == 1.0
        gq = _gain(pts[quality[0]][phase]["scores"], cfg["scores"], lower, agg)
        for lab, p in pts.items():
            ph = p[phase]
            assert ph["wall_time_ratio"] > 0 and ph["wall_s"] > 0, lab
            g = _gain(ph["scores"], cfg["scores"], lower, agg)
            assert ph["gain"] == pytest.approx(g, abs=1e-12), (lab, phase)
            assert ph["share"] == pytest.approx(g / gq, rel=1e-9) if gq > 0 else math.isnan(ph["share"])
            s = p["settings"]
            if p["kind"] == "control":
                assert ph["evals_ratio"] == pytest.approx(s["steps"] / steps)
            elif p["kind"] == "diffier" and s["max_iters"] == 1 and (s["start_percent"], s["end_percent"]) == (0, 1):
                # one cond row on every stride-th guided call, the first included
                assert ph["evals_per_sample"] == 2 * steps + math.ceil(steps / s["stride"]), lab
            elif p["kind"] == "diffier":
                assert 2 * steps < ph["evals_per_sample"] <= 2 * steps + s["max_iters"] * steps, lab
    for p in pts.values():
        if p["kind"] == "cfg":
            continue
        for o in doc["omegas"]:
            e = p["test"]["per_omega"][o]
            assert e["vs_cfg"]["lo"] <= e["vs_cfg"]["hi"] and e["vs_cfg"]["sig"] in ("better", "worse", "tie")
            assert len(e["per_seed"]) == len(doc["test_seeds"])
    assert pts[quality[0]]["test"]["share"] == pytest.approx(1.0) or math.isnan(pts[quality[0]]["test"]["share"])
    for name, budget in BUDGETS.items():
        ok = {lab: p for lab, p in pts.items()
              if p["kind"] == "diffier" and p["tuning"]["evals_ratio"] <= budget + 1e-9
              and math.isfinite(p["tuning"]["share"])}
        pick = doc["picks_on_tuning"][name]
        if not ok:
            assert pick is None
            continue
        assert pick in ok and all(ok[pick]["tuning"]["share"] >= p["tuning"]["share"] for p in ok.values())


def test_choose_writes_presets_within_budget(quick):
    out, doc = quick
    _frontier("--choose", "--quick", "--out", str(out))
    chosen = json.loads((out / "frontier_presets_quick.json").read_text())
    assert chosen["testbeds"] == ["known_score"]
    for name, budget in BUDGETS.items():
        c = chosen["presets"][name]
        if c is None:
            continue
        p = doc["points"][c["label"]]
        assert p["kind"] == "diffier" and p["tuning"]["evals_ratio"] <= budget + 1e-9
        assert c["settings"] == p["settings"]
        nums = c["per_testbed"]["known_score"]
        assert nums["evals_ratio"] == p["test"]["evals_ratio"] and nums["test_share"] == p["test"]["share"] or \
            math.isnan(nums["test_share"])
