"""The evidence protocol (``benchmarks/evidence``): its rules on their own, its quick runs through a real ComfyUI, and
the committed documents.

Rules (no ComfyUI): the ω grid and configurations; disjoint seeds, test seeds ≥ 1000; one budget; the best quality a
curve reaches at an adherence level (interpolation, non-monotone curves, unreached levels); the selection (penalty,
tie to the cheaper setting); ``at_cfg_1`` only at ω = 1 and only on DiffIER's nodes; equal-cost steps; shards; the
frontier's paired verdicts and the claims' decision rules on made-up cells.

Quick runs (``python -m benchmarks.evidence all --testbed <bed> --quick``): the tuning document's choices are the rule
applied to its own recorded curves; every cell of the confirmatory document has quality, adherence and diversity at
every ω for every method and equal-cost variant; the equal-cost variants spend the tuned DiffIER's evaluations;
DiffIER with ``at_cfg_1 = skip`` at ω = 1 gives plain CFG's samples; the report is reproduced from the cache.

Committed documents (``docs/results/evidence``): the same structure for the full runs, test seeds ≥ 1000, the
protocol's commit before the results' (where git history is there), and the energy-distance check.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "results" / "evidence"
PROTOCOL = REPO / "docs" / "evidence" / "protocol.md"
TESTBEDS = ("known_score", "digits", "sr", "sr_photos")
#: every seed an earlier run used (the archived tuned/frontier runs and their development runs): the confirmatory
#: run must use none of them
USED_SEEDS = set(range(0, 200))


def _bench(module: str):
    """``benchmarks.<module>``, imported when a test needs it."""
    return importlib.import_module(f"benchmarks.{module}")


# ---------------------------------------------------------------------------------------------------
# the rules


def test_grid_configurations_seeds_and_budget():
    protocol = _bench("evidence.protocol")
    tuning = _bench("tuning")
    assert protocol.OMEGAS == (1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0)
    assert [c.name for c in protocol.CONFIGS] == ["euler-20", "dpmpp_2m-20", "euler-30", "dpmpp_2m-30"]
    assert protocol.TUNING_CONFIG in protocol.CONFIGS
    assert set(protocol.EQUAL_COST) - {c.name for c in protocol.CONFIGS + protocol.QUICK_CONFIGS} == set()
    for table in (protocol.SIZES, protocol.QUICK_SIZES):
        assert set(table) == set(TESTBEDS)
        for sizes in table.values():
            sizes.phases()                                   # raises if tuning and test seeds overlap
            assert min(sizes.test.seeds) >= 1000 and not set(sizes.test.seeds) & USED_SEEDS
    grids = tuning.method_grids()
    assert all(len(g) <= tuning.BUDGET for g in grids.values()) and tuning.BUDGET == 12
    assert len(grids["apg"]) == len(grids["diffier"]) == tuning.BUDGET
    fixed = tuning.fixed_diffier_points()
    assert all(point in grids["diffier"] for point in fixed.values())
    assert fixed["diffier_quality"].patches[0][1]["eta"] == 0.05 and fixed["diffier_quality"].patches[0][1][
        "max_iters"] == 4
    assert set(protocol.METHODS) == {"cfg", *protocol.ANCHORS, *protocol.TUNED, *protocol.FIXED_DIFFIER}


def test_best_quality_at_a_level():
    """The best quality with at least the level's adherence: points beyond it and the crossings of the level."""
    protocol = _bench("evidence.protocol")
    adherence, quality = [0.0, 1.0, 2.0, 1.5], [10.0, 8.0, 12.0, 4.0]
    # at 0.5: the crossing of (0 → 1), 9, and every later point; the best lower value is the last point's 4
    assert protocol.best_quality_at(adherence, quality, 0.5, True) == pytest.approx(4.0)
    assert protocol.best_quality_at(adherence, quality, 0.5, False) == pytest.approx(12.0)
    # at 1.75: the crossings of (1 → 2), 11, and of (2 → 1.5), 8, and the point at 2, 12
    assert protocol.best_quality_at(adherence, quality, 1.75, True) == pytest.approx(8.0)
    assert protocol.best_quality_at(adherence, quality, 1.75, False) == pytest.approx(12.0)
    assert protocol.best_quality_at(adherence, quality, 2.5, True) is None
    # a curve more adherent everywhere reaches every lower level with its best quality
    assert protocol.best_quality_at([5.0, 6.0], [3.0, 1.0], 2.0, True) == pytest.approx(1.0)
    assert protocol.best_quality_at([0.0, float("nan"), 2.0], [1.0, 1.0, 3.0], 1.0, True) == pytest.approx(3.0)


def _curve(protocol, adherence, quality, evals=20.0, calls=1.0):
    n = len(adherence)
    return protocol.Curve(tuple(float(i) for i in range(1, n + 1)), tuple(adherence), tuple(quality), (evals,) * n,
                          (calls,) * n)


def test_selection_penalty_and_tie_to_the_cheaper_setting():
    protocol = _bench("evidence.protocol")
    cfg = _curve(protocol, [0.0, 1.0, 2.0, 3.0], [5.0, 3.0, 4.0, 9.0])          # levels: adherence 1 and 2
    assert [a for _, a in protocol.adherence_levels(cfg)] == [1.0, 2.0]
    curves = {"short": _curve(protocol, [0.0, 1.0, 1.5, 1.6], [5.0, 1.0, 1.0, 1.0]),       # never reaches 2
              "good": _curve(protocol, [0.0, 1.0, 2.0, 3.0], [5.0, 2.0, 2.0, 6.0], evals=60.0),
              "same": _curve(protocol, [0.0, 1.0, 2.0, 3.0], [5.0, 2.0, 2.0 + 0.05, 6.0], evals=30.0)}
    choice = protocol.choose(curves, cfg, lower_is_better=True)
    assert choice.scores["short"] == pytest.approx((1.0 + 9.0) / 2)        # penalty: CFG's worst, 9
    # 'same' is within 2 % of CFG's quality range (6) of 'good' and cheaper: it wins the tie
    assert choice.tied == ("same", "good") and choice.label == "same"
    assert protocol.choose(curves, cfg, lower_is_better=True, candidates=["good"]).label == "good"
    high = protocol.choose({k: _curve(protocol, c.adherence, [-q for q in c.quality]) for k, c in curves.items()},
                           _curve(protocol, cfg.adherence, [-q for q in cfg.quality]), lower_is_better=False)
    assert high.label == "good"                           # equal evaluations now: the better score breaks the tie
    capped = _curve(protocol, [0, 1], [0, 0], evals=60.0)
    assert protocol.is_capped(capped, 20) and not protocol.is_capped(_curve(protocol, [0, 1], [0, 0], 61.0), 20)
    steps = protocol.equal_cost_steps(_curve(protocol, [0, 1], [0, 0], evals=60.0), _curve(protocol, [0, 1], [0, 0],
                                                                                           evals=40.0), 20)
    assert steps == {"1": 30, "2": 30}


def test_at_cfg_1_only_at_omega_1_and_only_on_diffier():
    protocol = _bench("evidence.protocol")
    tuning = _bench("tuning")
    grids = tuning.method_grids()
    chain = tuning.Setting("diffier", "chain", (), grids["apg"][0].patches + grids["diffier"][0].patches)
    job = protocol.Job("diffier", "base", chain, "euler", (("1", 20), ("3", 20)), "correct", (1.0, 3.0))
    at_one = dict(job.patches(1.0, True))
    assert at_one["DiffIERGuider"][tuning.AT_CFG_1] == "correct" and tuning.AT_CFG_1 not in at_one["APG"]
    assert job.patches(3.0, True) == chain.patches and job.patches(1.0, False) == chain.patches


def test_shards_cover_every_cell_once():
    engine = _bench("evidence.engine")
    cells = list(range(23))
    parts = [engine.shard(cells, lambda c: float(c % 5 + 1), i, 3) for i in (1, 2, 3)]
    assert sorted(c for p in parts for c in p) == cells
    loads = [sum(c % 5 + 1 for c in p) for p in parts]
    assert max(loads) - min(loads) <= 5
    with pytest.raises(ValueError, match="shard"):
        engine.shard(cells, float, 4, 3)


def _fake_cells(records, frontier_module, name: str, adherence: list[float], quality: list[float], noise: float,
                rng: np.random.Generator):
    """CellResult-like objects of one line with replicates around the given values."""
    from types import SimpleNamespace

    cells = []
    for k, (a, q) in enumerate(zip(adherence, quality, strict=True)):
        scores = SimpleNamespace(
            adherence=records.estimate(a, a + noise * rng.standard_normal(200) * 0.01),
            quality=records.estimate(q, q + noise * rng.standard_normal(200)))
        job = SimpleNamespace(method=name, variant="base", setting=SimpleNamespace(label=name), name=name)
        cells.append(SimpleNamespace(spec=SimpleNamespace(omega=float(k + 1), job=job), scores=scores,
                                     cost=SimpleNamespace(evals_per_sample=40.0, calls_per_step=1.0)))
    return frontier_module.line_of(name, cells)


def test_frontier_paired_verdicts():
    records = _bench("evidence.records")
    frontier = _bench("evidence.frontier")
    rng = np.random.default_rng(0)
    adherence = [0.0, 1.0, 2.0, 3.0]
    lines = [_fake_cells(records, frontier, "cfg", adherence, [5.0, 4.0, 6.0, 9.0], 0.1, rng),
             _fake_cells(records, frontier, "better", adherence, [5.0, 2.0, 3.0, 5.0], 0.1, rng),
             _fake_cells(records, frontier, "noisy", adherence, [5.0, 4.1, 5.9, 9.0], 3.0, rng),
             _fake_cells(records, frontier, "short", [0.0, 0.5, 1.0, 1.2], [5.0, 4.0, 3.0, 3.0], 0.1, rng)]
    levels = [frontier.Level(2.0, 1.0), frontier.Level(3.0, 2.0)]
    front = frontier.frontier(lines, levels, "quality", "adherence", True,
                              [("better", "cfg"), ("noisy", "cfg"), ("short", "cfg")])
    verdicts = {(p.line, p.cfg_omega): p.verdict for p in front.pairs}
    assert verdicts[("better", 2.0)] == verdicts[("better", 3.0)] == "better"
    assert verdicts[("noisy", 2.0)] == "tie"
    assert verdicts[("short", 3.0)] == "unreached"
    pair = next(p for p in front.pairs if p.line == "short" and p.cfg_omega == 3.0)
    assert pair.unreached_by == "short" and pair.difference is None
    assert frontier.verdict(1.0, 0.5, 1.5, 1.0, lower=True) == "worse"
    assert frontier.verdict(1.0, 0.5, 1.5, 0.5, lower=True) == "undetermined"


def test_claims_decide_per_group_on_their_configurations():
    from types import SimpleNamespace as NS

    claims = _bench("evidence.claims")
    frontier = _bench("evidence.frontier")

    def pair(line, ref, verdict):
        return frontier.PairDifference(line, ref, 2.0, 1.0, None, None, None, 1.0, verdict, None)

    def config(name, verdicts, evals=(60.0, 40.0)):
        lines = [NS(name="diffier", evals_per_sample=evals[0]), NS(name="cfg", evals_per_sample=evals[1])]
        return NS(config=name, frontier=NS(lines=lines, pairs=[pair("diffier", "cfg", v) for v in verdicts]),
                  secondary_frontier=None, cells=[])

    document = NS(testbed="digits", quality=NS(lower_is_better=True),
                  protocol=NS(configs=["euler-20", "euler-30"], equal_cost={"euler-20": ["diffier"]},
                              at_cfg_1_supported=True),
                  groups=[NS(group="a", configs=[config("euler-20", ["better", "tie"]),
                                                 config("euler-30", ["better", "better"])]),
                          NS(group="b", configs=[config("euler-20", ["better", "worse"]),
                                                 config("euler-30", ["better", "better"])])])
    better = claims.FrontierClaim("X", "diffier beats cfg", ("digits",), "diffier", "cfg")
    not_worse = claims.NotWorseClaim("Y", "diffier not worse", ("digits",), "diffier", "cfg")
    cheaper = claims.DominanceClaim("Z", "cfg dominates", ("digits",), "diffier", "cfg")
    results = {(r.claim, r.group): r for r in claims.evaluate(document, (better, not_worse, cheaper))}
    assert results[("X", "a")].verdict == "confirmed" and results[("X", "b")].verdict == "not confirmed"
    assert results[("Y", "b")].verdict == "not confirmed" and len(results[("X", "a")].evidence) == 2
    assert results[("Z", "a")].verdict == "not confirmed"            # it is not cheaper
    assert claims.configs_of(document, claims.FEWEST_STEPS) == ["euler-20"]
    assert claims.configs_of(document, claims.EQUAL_COST_DIFFIER) == ["euler-20"]
    assert claims.evaluate(NS(**{**vars(document), "testbed": "sr"}), (claims.SameOmegaClaim(
        "W", "", ("digits",), "diffier", "cfg"),)) == []
    # euler-30 not run yet: a claim that holds so far waits for it; one that already fails stays failed
    first_stage = NS(**{**vars(document), "configs_pending": ["euler-30"],
                        "groups": [NS(group=g.group, configs=g.configs[:1]) for g in document.groups]})
    staged = {(r.claim, r.group): r for r in claims.evaluate(first_stage, (better, not_worse))}
    assert staged[("X", "a")].verdict == "pending" and "euler-30" in staged[("X", "a")].evidence[-1]
    assert staged[("X", "b")].verdict == "not confirmed" and staged[("Y", "b")].verdict == "not confirmed"
    assert claims.evaluate(NS(**{**vars(first_stage), "groups": [NS(group="a", configs=[])]}),
                           (better,))[0].verdict == "pending"


def test_the_run_plan_keeps_every_command_under_an_hour(tmp_path):
    """Every tuning and test command of the full run, sharded so that each stays under 50 minutes of one-thread CPU
    time by the measured cost model; every testbed and configuration is there."""
    run = _bench("evidence.run")
    protocol = _bench("evidence.protocol")
    plan = run.run_plan(tmp_path)
    assert plan and all(p.minutes <= 50.0 for p in plan)
    for testbed in TESTBEDS:
        assert any(p.command.endswith(f"tune --testbed {testbed}") or f"tune --testbed {testbed} --shard" in p.command
                   for p in plan)
        for config in protocol.CONFIGS:
            assert any(f"test --testbed {testbed} --config {config.name}" in p.command for p in plan)
    shards = [p.command for p in plan if "--shard" in p.command]
    assert all(any(c.endswith(f"--shard {i}/{c[-1]}") for i in range(1, 10)) for c in shards)


# ---------------------------------------------------------------------------------------------------
# quick runs through a real ComfyUI


def _run_quick(testbed: str, out: Path, cache: Path, command: str = "all") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.evidence", command, "--testbed", testbed, "--quick",
                           "--out", str(out), "--cache", str(cache)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module", params=["known_score", "digits", "sr_photos"])
def quick(request, tmp_path_factory):
    testbed = request.param
    out, cache = tmp_path_factory.mktemp(f"evidence_{testbed}"), tmp_path_factory.mktemp(f"cache_{testbed}")
    _run_quick(testbed, out, cache)
    return testbed, out, cache


def _load(out: Path, kind: str, testbed: str, quick: bool = True) -> dict:
    return json.loads((out / f"{kind}_{testbed}{'_quick' if quick else ''}.json").read_text())


def check_tuning(doc: dict) -> None:
    """The tuning document: every setting's curve at every ω, and the choices are the rule on those curves."""
    protocol = _bench("evidence.protocol")
    tuning = _bench("tuning")
    assert doc["schema"] == "diffier.evidence/v1" and doc["kind"] == "tuning"
    grids = tuning.method_grids(doc["quick"])
    omegas = doc["protocol"]["omegas"]
    steps = int(doc["protocol"]["tuning_config"].rpartition("-")[2])
    lower = doc["quality"]["lower_is_better"]
    assert doc["protocol"]["settings_per_method"] == {m: len(g) for m, g in grids.items()}
    assert not set(doc["protocol"]["tuning_seeds"]) & set(doc["protocol"]["test_seeds"])
    for group in doc["groups"]:
        curves = {(c["method"], c["label"]): c for c in group["curves"]}
        assert set(curves) == {(m, s.label) for m, g in grids.items() for s in g}
        as_curve = {}
        for key, c in curves.items():
            assert [p["omega"] for p in c["points"]] == omegas, key
            pts = c["points"]
            as_curve[key] = protocol.Curve(tuple(p["omega"] for p in pts), tuple(p["adherence"] for p in pts),
                                           tuple(p["quality"] for p in pts), tuple(p["evals_per_sample"] for p in pts),
                                           tuple(p["calls_per_step"] for p in pts))
        cfg = as_curve[("cfg", "cfg")]
        assert [lv["adherence"] for lv in group["levels"]] == [a for _, a in protocol.adherence_levels(cfg)]
        for choice in group["choices"]:
            grid = protocol.TUNED[choice["method"]]
            labels = [s.label for s in grids[grid]]
            candidates = [lab for lab in labels if choice["method"] != "diffier_capped"
                          or protocol.is_capped(as_curve[(grid, lab)], steps)]
            again = protocol.choose({lab: as_curve[(grid, lab)] for lab in labels}, cfg, lower, candidates)
            assert (choice["chosen"], tuple(choice["tied"])) == (again.label, again.tied), choice["method"]
        capped = next(c for c in group["choices"] if c["method"] == "diffier_capped")
        assert all(p["evals_per_sample"] <= protocol.CAP * 2 * steps + 1e-9
                   for p in curves[("diffier", capped["chosen"])]["points"])


def _finite_estimate(e: dict) -> bool:
    return all(isinstance(e[k], float) and math.isfinite(e[k]) for k in ("value", "lo", "hi")) and e["lo"] <= e["hi"]


def check_confirmatory(doc: dict, tuning: dict) -> None:
    """Every cell has quality, adherence and diversity at every ω for every method and equal-cost variant; the
    equal-cost variants spend the tuned DiffIER's evaluations; the frontiers and claims are there."""
    protocol = _bench("evidence.protocol")
    assert doc["schema"] == "diffier.evidence/v1" and doc["kind"] == "confirmatory"
    omegas = doc["protocol"]["omegas"]
    fields = [doc["quality"]["field"], doc["adherence"]["field"], doc["diversity"]["field"]]
    if doc["secondary"]:
        fields.append(doc["secondary"]["field"])
    tuning_groups = {g["group"]: g for g in tuning["groups"]}
    for group in doc["groups"]:
        assert group["chosen"] == {c["method"]: c["chosen"] for c in tuning_groups[group["group"]]["choices"]}
        run_configs = [c["config"] for c in group["configs"]]
        assert run_configs == [c for c in doc["protocol"]["configs"] if c not in doc.get("configs_pending", [])]
        for config in group["configs"]:
            cells = {(c["line"], c["omega"]): c for c in config["cells"]}
            lines = {c["line"] for c in config["cells"]}
            expected = set(protocol.METHODS)
            for target in doc["protocol"]["equal_cost"].get(config["config"], []):
                expected |= {f"{m}[equal_cost:{target}]" for m in protocol.EQUAL_COST_METHODS}
            assert expected <= lines, expected - lines
            for line in expected:
                for omega in omegas:
                    cell = cells[(line, omega)]
                    for f in fields:
                        assert _finite_estimate(cell["scores"][f]), (line, omega, f)
                    assert cell["cost"]["evals_per_sample"] > 0 and cell["cost"]["calls_per_step"] > 0
                    if line != "cfg":
                        assert cell["quality_vs_cfg"] is not None and cell["adherence_vs_cfg"] is not None
            diffier_at_1 = cells[("diffier", 1.0)]
            assert diffier_at_1["at_cfg_1"] == "correct"
            skip = cells[("diffier[at_cfg_1:skip]", 1.0)]
            plain = cells[("cfg", 1.0)]
            for f in fields:                                  # skip is plain sampling: the same samples
                assert skip["scores"][f]["value"] == pytest.approx(plain["scores"][f]["value"], rel=1e-9, abs=1e-12)
            if not doc["protocol"]["at_cfg_1_supported"]:
                assert diffier_at_1["scores"][fields[0]] == plain["scores"][fields[0]]
            for target, by_omega in group["equal_cost_steps"].get(config["config"], {}).items():
                for omega in omegas:
                    steps = by_omega[f"{omega:g}"]
                    diffier = cells[(target, omega)]["cost"]["evals_per_sample"]
                    for m in protocol.EQUAL_COST_METHODS:
                        cost = cells[(f"{m}[equal_cost:{target}]", omega)]["cost"]
                        assert cost["steps"] == steps
                        per_step = cells[(m, omega)]["cost"]["evals_per_sample"] / cells[(m, omega)]["cost"]["steps"]
                        assert abs(cost["evals_per_sample"] - diffier) <= per_step / 2 + 1e-9 or steps == int(
                            config["config"].rpartition("-")[2]), (m, target, omega)
            for front in (config["frontier"], config["secondary_frontier"]):
                if front is None:
                    continue
                assert {ln["name"] for ln in front["lines"]} == lines - {"diffier[at_cfg_1:skip]"}
                assert {(p["line"], p["reference"]) for p in front["pairs"]} >= {("diffier", "cfg"),
                                                                                 ("diffier_capped", "tcfg")}
                assert all(p["verdict"] in ("better", "worse", "tie", "unreached", "undetermined")
                           for p in front["pairs"])
    assert doc["claims"] and all(c["verdict"] in ("confirmed", "not confirmed", "pending", "not applicable")
                                 for c in doc["claims"])
    assert {c["group"] for c in doc["claims"]} == {g["group"] for g in doc["groups"]}
    assert doc["runtime_s"] > 0 and doc["sampling_cpu_s"] > 0 and doc["commands"]


@pytest.mark.integration
@pytest.mark.slow
def test_quick_documents(quick):
    testbed, out, cache = quick
    tuning = _load(out, "tuning", testbed)
    check_tuning(tuning)
    doc = _load(out, "confirmatory", testbed)
    check_confirmatory(doc, tuning)
    for kind in ("tuning", "confirmatory"):
        assert (out / f"{kind}_{testbed}_quick.png").stat().st_size > 10_000
        assert (out / f"{kind}_{testbed}_quick.md").read_text().startswith("## ")


@pytest.mark.integration
@pytest.mark.slow
def test_the_report_is_made_again_from_the_cache(quick):
    testbed, out, cache = quick
    before = _load(out, "confirmatory", testbed)
    _run_quick(testbed, out, cache, command="report")
    after = _load(out, "confirmatory", testbed)
    assert after["groups"] == before["groups"] and after["claims"] == before["claims"]


# ---------------------------------------------------------------------------------------------------
# the committed documents


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@pytest.mark.parametrize("testbed", TESTBEDS)
def test_committed_tuning_documents(testbed):
    doc = _load(RESULTS, "tuning", testbed, quick=False)
    assert doc["quick"] is False and doc["protocol"]["omegas"] == list(_bench("evidence.protocol").OMEGAS)
    check_tuning(doc)
    assert (RESULTS / f"tuning_{testbed}.png").stat().st_size > 10_000


def test_committed_confirmatory_documents_and_their_protocol():
    """Every confirmatory document is made under the committed protocol on seeds ≥ 1000 that no earlier run used, its
    pending configurations are the protocol's others, and it was committed after the protocol."""
    found = sorted(p.stem.removeprefix("confirmatory_") for p in RESULTS.glob("confirmatory_*.json")
                   if not p.stem.endswith("_quick"))
    assert set(found) <= set(TESTBEDS), found
    assert PROTOCOL.exists()
    protocol_commit = _git("log", "--diff-filter=A", "--format=%H", "--", str(PROTOCOL.relative_to(REPO)))
    for testbed in found:
        doc = _load(RESULTS, "confirmatory", testbed, quick=False)
        tuning = _load(RESULTS, "tuning", testbed, quick=False)
        assert doc["quick"] is False and doc["tuning_document"] == f"docs/results/evidence/tuning_{testbed}.json"
        assert min(doc["protocol"]["test_seeds"]) >= 1000 and not set(doc["protocol"]["test_seeds"]) & USED_SEEDS
        run_configs = [c["config"] for c in doc["groups"][0]["configs"]]
        assert sorted(run_configs + doc["configs_pending"]) == sorted(doc["protocol"]["configs"])
        check_confirmatory(doc, tuning)
        assert (RESULTS / f"confirmatory_{testbed}.png").stat().st_size > 10_000
        results_commit = _git("log", "--diff-filter=A", "--format=%H", "--",
                              f"docs/results/evidence/confirmatory_{testbed}.json")
        if protocol_commit and results_commit:            # history present (not a shallow clone without it)
            first_protocol, first_results = protocol_commit.splitlines()[-1], results_commit.splitlines()[-1]
            assert first_protocol != first_results
            assert _git("merge-base", "--is-ancestor", first_protocol, first_results) is not None


def test_committed_energy_distance_check():
    """The negative energy distances of the earlier runs, explained: the estimator's null mean is 0 within its
    interval, the archived values are reproduced from their seeds, the exact-score model is not below 0."""
    check = json.loads((RESULTS / "energy_distance_check.json").read_text())
    assert check["quick"] is False
    null = check["null_old"]
    assert abs(null["mean"]) <= null["ci95"] and null["seeds"] >= 100 and 0.1 < null["share_negative"] < 0.9
    assert check["diffier_old_test_seeds"]["values"] == pytest.approx(check["diffier_old_reported"], abs=5e-4)
    assert check["exact_model_old"]["mean"] + check["exact_model_old"]["ci95"] > 0
    assert check["diffier_old"]["mean"] + check["diffier_old"]["ci95"] > 0
    assert check["null_new"]["sd"] < check["null_old"]["sd"] / 4
    fine, coarse = check["exact_model_new_fine"], check["exact_model_new"]
    assert fine["mean"] + fine["ci95"] < coarse["mean"] - coarse["ci95"]     # the floor is the discretisation
    assert "unbiased" in check["explanation"] and check["runtime_s"] > 0


def test_readme_verdicts_come_from_the_confirmatory_documents():
    """The README's first screen cites confirmatory documents that exist, no archived result, and every claim verdict
    it states is one its document records for that claim."""
    import re

    readme = (REPO / "README.md").read_text()
    summary = readme[readme.index("<!-- EVIDENCE-SUMMARY:START -->"):readme.index("<!-- EVIDENCE-SUMMARY:END -->")]
    assert "archive" not in summary
    cited = re.findall(r"docs/results/evidence/confirmatory_(\w+)\.json", summary)
    assert cited and set(cited) <= set(TESTBEDS)
    verdicts: dict[str, set[str]] = {}
    for testbed in cited:
        for claim in json.loads((RESULTS / f"confirmatory_{testbed}.json").read_text())["claims"]:
            verdicts.setdefault(claim["claim"], set()).add(claim["verdict"])
    stated = re.findall(r"\b(C\d+(?:-[a-z_]+)?)\b[^*\n]{0,60}\*\*(not confirmed|pending|confirmed)\*\*", summary)
    assert stated
    for claim, verdict in stated:
        assert verdict in verdicts.get(claim, set()), (claim, verdict, verdicts.get(claim))

