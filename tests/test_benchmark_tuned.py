"""``python -m benchmarks.tuned --testbed <bed> --quick`` (every method tuned, held-out test seeds).

Beds: ``known_score``, ``digits``, ``sr`` (digits ×4) and ``sr_photos`` (photo patches ×2).

The protocol's selection rules are checked on their own (no ComfyUI), then each testbed's smoke run must write a
complete JSON document and a PNG in which: tuning and test seeds are disjoint, every method's grid fits the one
budget recorded in the JSON, the chosen setting per ω is the best one on the tuning seeds (recomputed here from
the recorded tuning scores), the all-ω choice is the best mean over ω (recomputed too), the test scores are for
exactly the chosen settings on the test seeds, chains are made of the parts' chosen settings, and the equal-cost
controls spend DiffIER's tuned evaluation count.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pack_loader import import_from_folder

REPO = Path(__file__).resolve().parent.parent
_PKG = "_diffier_benchmarks_under_test"
METHODS = ("cfg", "apg", "diffier", "rescalecfg", "epsilon_scaling", "cfgzerostar", "tcfg")


def _tuning():
    """``benchmarks.tuning`` loaded by file path (the repository root is not importable under pytest)."""
    return import_from_folder(_PKG, REPO / "benchmarks", "tuning")


# ---------------------------------------------------------------------------------------------------
# the protocol's rules, without ComfyUI


def test_full_grids_fit_one_budget_and_include_the_recommended_settings():
    T = _tuning()
    grids = T.method_grids(quick=False)
    assert set(grids) == set(METHODS)
    sizes = {n: len(g) for n, g in grids.items()}
    assert sizes["apg"] == sizes["diffier"] == T.BUDGET == 24
    assert sizes["rescalecfg"] == sizes["epsilon_scaling"] == 4 and sizes["cfgzerostar"] == sizes["tcfg"] == 1
    apg = {tuple(p["APG"].items()) for s in grids["apg"] for p in [dict(s.patches)]}
    assert (("eta", 0.0), ("norm_threshold", 0.0), ("momentum", 0.0)) in apg          # the APG paper's eta = 0
    assert len(apg) == 24
    nodes = [dict(s.patches)["DiffIERGuider"] for s in grids["diffier"]]
    windows = {(d["start_percent"], d["end_percent"]) for d in nodes}
    assert windows == {(0.0, 1.0), (0.0, 0.5), (0.5, 1.0)}
    inner = {d["inner_guidance"] for d in nodes}
    assert inner == {"cond", "cfg"}
    assert [dict(s.patches)["Epsilon Scaling"]["scaling_factor"] for s in grids["epsilon_scaling"]] == \
        [1.001, 1.003, 1.005, 1.01]
    quick = T.method_grids(quick=True)
    assert max(len(g) for g in quick.values()) == T.QUICK_BUDGET


def test_selection_per_omega_and_over_all_omega():
    T = _tuning()
    scores = {"a": {"1": 10.0, "5": 100.0}, "b": {"1": 12.0, "5": 50.0}, "c": {"1": float("nan"), "5": 1.0}}
    assert T.choose_per_omega(scores, lower=True) == {"1": "a", "5": "c"}
    assert T.choose_per_omega(scores, lower=False) == {"1": "b", "5": "a"}
    cfg = {"1": 10.0, "5": 100.0}
    # log-ratio: a = (0 + 0)/2, b = (log 1.2 + log 0.5)/2 < 0: b wins although a is best at ω = 1
    best, agg = T.choose_all_omega({k: v for k, v in scores.items() if k != "c"}, cfg, lower=True,
                                   aggregate="log_ratio")
    assert best == "b" and agg["a"] == 0.0 and math.isclose(agg["b"], (math.log(1.2) + math.log(0.5)) / 2)
    best, agg = T.choose_all_omega({"a": {"1": 1.0, "5": 2.0}, "b": {"1": 3.0, "5": 1.0}}, {"1": 0.0, "5": 0.0},
                                   lower=False, aggregate="difference")
    assert best == "b" and agg == {"a": 1.5, "b": 2.0}
    with pytest.raises(ValueError, match="aggregate"):
        T.all_omega_value({"1": 1.0}, {"1": 1.0}, "mean")


def test_overlapping_seeds_are_refused():
    T = _tuning()
    with pytest.raises(ValueError, match=r"tuning_seeds \[1, 2\] and test_seeds \[2, 3\] overlap"):
        T.Protocol(None, None, (1.0,), [1, 2], [2, 3], T.method_grids(quick=True), 10)


def test_significance():
    T = _tuning()
    assert T.significance({"lo": -2.0, "hi": -1.0}, lower=True) == "better"
    assert T.significance({"lo": -2.0, "hi": -1.0}, lower=False) == "worse"
    assert T.significance({"lo": -1.0, "hi": 1.0}, lower=True) == "tie"


# ---------------------------------------------------------------------------------------------------
# the quick runs through a real ComfyUI


@pytest.fixture(scope="module", params=["known_score", "digits", "sr", "sr_photos"])
def quick(request, tmp_path_factory):
    testbed = request.param
    out = tmp_path_factory.mktemp(f"tuned_{testbed}")
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.tuned", "--testbed", testbed, "--quick", "--out",
                           str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (out / f"tuned_{testbed}_quick.png").stat().st_size > 10_000
    return json.loads((out / f"tuned_{testbed}_quick.json").read_text())


def _better(a: float, b: float, lower: bool) -> bool:
    return a < b if lower else a > b


def _relative(by_omega: dict, cfg: dict, aggregate: str) -> float:
    """Mean over ω of a setting's tuning score relative to plain CFG (difference or log-ratio)."""
    if aggregate == "log_ratio":
        vals = [math.log(by_omega[o]["score"] / cfg[o]) for o in cfg]
    else:
        vals = [by_omega[o]["score"] - cfg[o] for o in cfg]
    return sum(vals) / len(vals)


def _ci_ok(c: dict) -> bool:
    return all(math.isfinite(c[k]) for k in ("mean", "lo", "hi")) and c["lo"] <= c["hi"]


@pytest.mark.integration
@pytest.mark.slow
def test_schema_seeds_and_budget(quick):
    assert quick["schema"] == "diffier.tuned/v1" and quick["quick"] is True
    assert quick["command"].startswith("python -m benchmarks.tuned") and "--quick" in quick["command"]
    tune, test = quick["tuning_seeds"], quick["test_seeds"]
    assert tune and test and not set(tune) & set(test)
    budget = quick["budget"]["max_settings_per_method"]
    assert budget == 4
    assert set(quick["methods"]) == set(METHODS)
    for name, m in quick["methods"].items():
        assert m["n_settings"] == len(m["grid"]) == quick["budget"]["settings_per_method"][name] <= budget
        assert len({s["label"] for s in m["grid"]}) == m["n_settings"] and m["knobs_note"]
    assert quick["methods"]["apg"]["n_settings"] == quick["methods"]["diffier"]["n_settings"] == budget
    assert any(s["knobs"]["eta"] == 0.0 for s in quick["methods"]["apg"]["grid"])
    assert all(quick["runtime_s"][k] > 0 for k in ("tuning", "test", "total"))


@pytest.mark.integration
@pytest.mark.slow
def test_chosen_settings_are_the_best_on_the_tuning_seeds(quick):
    _check_choices(quick)


def _check_choices(quick: dict) -> None:
    """Per ω the chosen setting is the best tuning score; the all-ω one the best mean; the test runs used them."""
    lower = quick["metric"]["lower_is_better"]
    agg = quick["metric"]["all_omega_aggregate"]
    for group in quick["groups"]:
        res = quick["results"][group]
        cfg = {o: res["methods"]["cfg"]["tuning_scores"]["cfg"][o]["score"] for o in quick["omegas"]}
        for name, m in res["methods"].items():
            table = m["tuning_scores"]
            assert set(table) == {s["label"] for s in quick["methods"][name]["grid"]}   # every setting was tried
            for o in quick["omegas"]:
                chosen = m["chosen_per_omega"][o]
                best = table[chosen][o]["score"]
                assert not any(_better(v[o]["score"], best, lower) for v in table.values()), (group, name, o)
                assert m["tuning"][o]["setting"] == chosen and m["test"][o]["setting"] == chosen
                assert len(m["test"][o]["per_seed"]) == len(quick["test_seeds"])
                assert len(m["tuning"][o]["per_seed"]) == len(quick["tuning_seeds"])
                if name != "cfg":
                    assert _ci_ok(m["test"][o]["vs_cfg"]) and _ci_ok(m["tuning"][o]["vs_cfg"])
            # the all-ω choice: best mean over ω of the score relative to plain CFG, recomputed here
            rel = {lab: _relative(by_o, cfg, agg) for lab, by_o in table.items()}
            mine = rel[m["chosen_all_omega"]]
            assert not any(_better(v, mine, lower) and not math.isclose(v, mine) for v in rel.values())
            assert all(m["test_all_omega"][o]["setting"] == m["chosen_all_omega"] for o in quick["omegas"])


@pytest.mark.integration
@pytest.mark.slow
def test_chains_use_the_tuned_parts_and_controls_spend_diffiers_evaluations(quick):
    _check_chains_and_controls(quick)


def _check_chains_and_controls(quick: dict) -> None:
    """Chains are made of the parts' chosen settings; the controls spend DiffIER's tuned evaluations."""
    for group in quick["groups"]:
        res = quick["results"][group]
        for chain, parts in quick["chains"].items():
            for o in quick["omegas"]:
                e = res["chains"][chain][o]
                labels = re.fullmatch(r".+\[(.+)\]", e["setting"]).group(1).split(" + ")
                assert labels == [res["methods"][p]["chosen_per_omega"][o] for p in parts], (chain, o)
                assert _ci_ok(e["vs_cfg"]) and all(_ci_ok(e[f"vs_{p}"]) for p in parts)
                # DiffIER ran inside the chain: more evaluations than plain CFG
                assert e["evals_per_sample"] > res["methods"]["cfg"]["test"][o]["evals_per_sample"]
        for o in quick["omegas"]:
            diffier = res["methods"]["diffier"]
            tuned_evals = diffier["tuning_scores"][diffier["chosen_per_omega"][o]][o]["evals_per_sample"]
            steps = {res["controls"][s][o]["steps"] for s in quick["control_samplers"]}
            assert len(steps) == 1 and steps.pop() == max(quick["config"]["test"]["steps"], round(tuned_evals / 2))
            euler = res["controls"]["euler"][o]
            assert abs(euler["evals_per_sample"] - tuned_evals) <= 2          # one Euler step = cond + uncond
            assert {res["controls"][s][o]["sampler"] for s in quick["control_samplers"]} == {
                "euler", "dpmpp_2m", "uni_pc"}
            assert all(_ci_ok(res["controls"][s][o]["vs_diffier"]) for s in quick["control_samplers"])
    for by_o in quick["summary"].values():
        assert set(by_o) == set(quick["omegas"]) and all(v["best"] for v in by_o.values())


# ---------------------------------------------------------------------------------------------------
# the committed full runs (docs/results/tuned_*.json) satisfy the same protocol


@pytest.mark.parametrize("testbed", ["known_score", "digits", "sr", "sr_photos"])
def test_committed_tuned_results_follow_the_protocol(testbed):
    doc = json.loads((REPO / "docs" / "results" / f"tuned_{testbed}.json").read_text())
    assert doc["testbed"] == testbed and doc["quick"] is False
    assert doc["command"] == f"python -m benchmarks.tuned --testbed {testbed} --threads 1 --markdown"
    assert (REPO / "docs" / "results" / f"tuned_{testbed}.png").stat().st_size > 10_000
    assert not set(doc["tuning_seeds"]) & set(doc["test_seeds"])
    assert doc["budget"]["max_settings_per_method"] == 24
    assert doc["budget"]["settings_per_method"] == {"cfg": 1, "apg": 24, "diffier": 24, "rescalecfg": 4,
                                                    "epsilon_scaling": 4, "cfgzerostar": 1, "tcfg": 1}
    assert any(s["knobs"]["eta"] == 0.0 for s in doc["methods"]["apg"]["grid"])
    assert doc["runtime_s"]["total"] > 0
    _check_choices(doc)
    _check_chains_and_controls(doc)
