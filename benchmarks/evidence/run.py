"""The evidence commands' work: build a testbed's bed, run the tuning or test cells (or a shard of them), choose
the tuned settings, and assemble the documents from the cache.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..tuning import AT_CFG_1, BUDGET, NODE_IDS, QUICK_BUDGET, Setting, fixed_diffier_points, method_grids
from . import claims, protocol
from .documents import (
    SCHEMA,
    CellRecord,
    CommandRecord,
    ConfigResult,
    CurvePoint,
    Difference,
    EvidenceDocument,
    GroupResult,
    MethodChoice,
    MetricInfo,
    ProtocolRecord,
    SettingCurve,
    TuningDocument,
    TuningGroup,
    read_json,
)
from .engine import CellResult, CellSpec, Engine, shard
from .frontier import Level, frontier, line_of
from .protocol import Curve, Job, SamplerConfig
from .store import Store

__all__ = ["TESTBEDS", "Context", "make_context", "tuning_specs", "run_tuning", "tuning_document", "chosen_settings",
           "test_specs", "run_test", "completed_configs", "evidence_document", "missing_cells", "release_models",
           "released", "CommandEstimate", "run_plan"]

TESTBEDS = ("known_score", "digits", "sr", "sr_photos")
SELECTION_RULE = ("per group, each setting's tuning curve (adherence, quality) over ω scores the mean over the "
                  "adherence levels (plain CFG's tuning adherence at the interior ω) of the best quality the curve "
                  "reaches with at least that adherence (its Pareto frontier; linear interpolation between "
                  "neighbouring ω; a level it never reaches scores plain CFG's worst tuning quality); the best score "
                  "wins; scores within the tie tolerance (a share of plain CFG's tuning quality range) of the best are "
                  "tied and the tie goes to the fewest evaluations per sample, then the fewest sequential calls per "
                  "step, then the better score; diffier_capped chooses among the settings within the cap at every ω")


@dataclasses.dataclass
class Context:
    """A testbed's bed, engine and run plan (full or quick)."""

    testbed: str
    quick: bool
    bed: Any
    engine: Engine
    store: Store
    sizes: protocol.Sizes
    omegas: tuple[float, ...]
    configs: tuple[SamplerConfig, ...]
    tuning_config: SamplerConfig


def make_bed(testbed: str, sizes: protocol.Sizes, quick: bool, harness: Any = None) -> Any:
    """The bed of ``testbed`` with ``sizes``."""
    phases = sizes.phases()
    if testbed == "known_score":
        from ..testbeds.known_score import QUICK_REGIMES, KnownScoreBed

        return KnownScoreBed(phases, list(QUICK_REGIMES) if quick else None, 200 if quick else 2000, harness)
    if testbed == "digits":
        from ..testbeds.digits import DigitsBed

        return DigitsBed(phases, harness)
    if testbed in ("sr", "sr_photos"):
        from ..testbeds.sr import SRBed

        return SRBed(testbed, phases, harness)
    raise ValueError(f"testbed must be one of {list(TESTBEDS)}, got {testbed!r}")


def make_context(testbed: str, quick: bool, cache: Path, harness: Any = None) -> Context:
    """Boot (or reuse) ComfyUI, build the bed and the engine."""
    sizes = (protocol.QUICK_SIZES if quick else protocol.SIZES)[testbed]
    bed = make_bed(testbed, sizes, quick, harness)
    supported = AT_CFG_1 in bed.h.node_inputs(NODE_IDS["diffier"])
    store = Store(cache / ("quick" if quick else "full"), testbed)
    return Context(testbed, quick, bed, Engine(bed, store, sizes.reps, supported), store, sizes,
                   protocol.QUICK_OMEGAS if quick else protocol.OMEGAS,
                   protocol.QUICK_CONFIGS if quick else protocol.CONFIGS,
                   protocol.QUICK_TUNING_CONFIG if quick else protocol.TUNING_CONFIG)


def _specs(ctx: Context, phase: str, jobs: Sequence[Job]) -> list[CellSpec]:
    return [CellSpec(group, phase, job, omega) for group in ctx.bed.groups for job in jobs for omega in job.omegas]


def _run(ctx: Context, specs: list[CellSpec], part: tuple[int, int] | None, progress: Callable[..., Any] | None,
         desc: str) -> list[CellResult]:
    mine = shard(specs, ctx.engine.weight, *part) if part else specs
    return ctx.engine.run_all(mine, progress, desc)


def log_command(ctx: Context, command: str, phase: str, config: str, part: tuple[int, int] | None, cells: int,
                seconds: float) -> None:
    """Append the command to the cache's command log (the documents list every command that filled the cache)."""
    record = CommandRecord(command, phase, config, f"{part[0]}/{part[1]}" if part else "all", cells, seconds,
                           datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    ctx.store.folder.mkdir(parents=True, exist_ok=True)
    with (ctx.store.folder / "commands.jsonl").open("a") as f:
        f.write(json.dumps(dataclasses.asdict(record)) + "\n")


def commands(ctx: Context, phase: str | None = None) -> list[CommandRecord]:
    path = ctx.store.folder / "commands.jsonl"
    if not path.exists():
        return []
    out = [CommandRecord(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return [c for c in out if phase is None or c.phase == phase]


def missing_cells(ctx: Context, specs: Sequence[CellSpec]) -> list[CellSpec]:
    """The cells of ``specs`` whose scores are not in the cache."""
    return [s for s in specs if not ctx.engine.is_done(s)]


def _metric(m: Any) -> MetricInfo | None:
    return None if m is None else MetricInfo(m.field, m.lower_is_better, m.label)


def _document_base(ctx: Context, kind: str, results: Sequence[CellResult]) -> dict[str, Any]:
    """The fields every document starts with (:class:`~.documents.DocumentBase`); ``results``: its cells."""
    phase = "tuning" if kind == "tuning" else "test"
    cmds = commands(ctx, phase)
    metrics = ctx.bed.spec.metrics
    unique = {r.run_keys: r for r in results}
    return {"schema": SCHEMA, "kind": kind, "testbed": ctx.testbed, "quick": ctx.quick,
            "protocol": protocol_record(ctx), "quality": _metric(metrics.quality),
            "secondary": _metric(metrics.secondary), "adherence": _metric(metrics.adherence),
            "diversity": _metric(metrics.diversity), "testbed_config": ctx.bed.describe(phase), "commands": cmds,
            "runtime_s": float(sum(c.runtime_s for c in cmds)),
            "sampling_cpu_s": float(sum(r.cost.cpu_s for r in unique.values()))}


def protocol_record(ctx: Context) -> ProtocolRecord:
    grids = method_grids(ctx.quick)
    return ProtocolRecord(
        list(ctx.omegas), [c.name for c in ctx.configs], ctx.tuning_config.name,
        {k: list(v) for k, v in protocol.EQUAL_COST.items() if k in {c.name for c in ctx.configs}}, protocol.CAP,
        protocol.TIE_TOLERANCE, QUICK_BUDGET if ctx.quick else BUDGET, {m: len(g) for m, g in grids.items()},
        list(ctx.sizes.tuning.seeds), list(ctx.sizes.test.seeds), ctx.sizes.tuning.samples_per_seed,
        ctx.sizes.test.samples_per_seed, ctx.sizes.reps, ctx.engine.at_cfg_1_supported, SELECTION_RULE)


# ---------------------------------------------------------------------------------------------------
# tuning


def tuning_specs(ctx: Context) -> list[CellSpec]:
    return _specs(ctx, "tuning", protocol.tuning_jobs(ctx.quick, ctx.omegas, ctx.tuning_config))


def run_tuning(ctx: Context, part: tuple[int, int] | None, progress: Callable[..., Any] | None) -> int:
    """Run the tuning cells (or the shard ``part``); the number of cells."""
    return len(_run(ctx, tuning_specs(ctx), part, progress, f"{ctx.testbed} tuning"))


def _curve(cells: Sequence[CellResult], ctx: Context) -> Curve:
    cells = sorted(cells, key=lambda c: c.spec.omega)
    metrics = ctx.bed.spec.metrics
    return Curve(tuple(c.spec.omega for c in cells),
                 tuple(getattr(c.scores, metrics.adherence.field).value for c in cells),
                 tuple(getattr(c.scores, metrics.quality.field).value for c in cells),
                 tuple(c.cost.evals_per_sample for c in cells), tuple(c.cost.calls_per_step for c in cells))


def _points(cells: Sequence[CellResult], ctx: Context) -> list[CurvePoint]:
    metrics = ctx.bed.spec.metrics

    def value(c: CellResult, metric: Any) -> float | None:
        return None if metric is None else getattr(c.scores, metric.field).value

    return [CurvePoint(c.spec.omega, value(c, metrics.adherence), value(c, metrics.quality),
                       value(c, metrics.secondary), value(c, metrics.diversity), c.cost.evals_per_sample,
                       c.cost.calls_per_step) for c in sorted(cells, key=lambda c: c.spec.omega)]


def tuning_document(ctx: Context, progress: Callable[..., Any] | None = None) -> TuningDocument:
    """The tuning document from the cache (every tuning cell must be done): curves, levels and choices per group."""
    specs = tuning_specs(ctx)
    results = ctx.engine.run_all(specs, progress, f"{ctx.testbed} tuning (assemble)")
    lower = bool(ctx.bed.spec.metrics.quality.lower_is_better)
    groups = []
    for group in ctx.bed.groups:
        by_setting: dict[tuple[str, str], list[CellResult]] = {}
        for r in results:
            if r.spec.group == group:
                by_setting.setdefault((r.spec.job.method, r.spec.job.setting.label), []).append(r)
        curves = {key: _curve(cells, ctx) for key, cells in by_setting.items()}
        cfg = curves[("cfg", "cfg")]
        levels = [Level(o, a) for o, a in protocol.adherence_levels(cfg)]
        finite = [q for q in cfg.quality if math.isfinite(q)]
        penalty = max(finite) if lower else min(finite)
        choices = []
        for method, grid in protocol.TUNED.items():
            labels = [lab for (m, lab) in curves if m == grid]
            candidates = [lab for lab in labels if method != "diffier_capped"
                          or protocol.is_capped(curves[(grid, lab)], ctx.tuning_config.steps)]
            c = protocol.choose({lab: curves[(grid, lab)] for lab in labels}, cfg, lower, candidates)
            choices.append(MethodChoice(method, c.label, list(c.tied), list(c.candidates), c.scores))
        levels_a = [lv.adherence for lv in levels]
        setting_curves = []
        grids = method_grids(ctx.quick)
        for (method, label), curve in curves.items():
            setting = next(s for s in grids[method] if s.label == label)
            setting_curves.append(SettingCurve(
                method, label, setting.describe(), _points(by_setting[(method, label)], ctx),
                protocol.selection_score(curve, levels_a, lower, penalty),
                protocol.is_capped(curve, ctx.tuning_config.steps)))
        groups.append(TuningGroup(group, levels, penalty, protocol.TIE_TOLERANCE * (max(finite) - min(finite)),
                                  setting_curves, choices))
    return TuningDocument(**_document_base(ctx, "tuning", results), groups=groups)


# ---------------------------------------------------------------------------------------------------
# test


def chosen_settings(tuning: dict[str, Any], quick: bool) -> dict[str, dict[str, Setting]]:
    """group -> tuned method -> its chosen setting, from a tuning document (JSON data)."""
    grids = method_grids(quick)
    out: dict[str, dict[str, Setting]] = {}
    for group in tuning["groups"]:
        chosen = {}
        for choice in group["choices"]:
            grid = grids[protocol.TUNED[choice["method"]]]
            matches = [s for s in grid if s.label == choice["chosen"]]
            if not matches:
                raise ValueError(f"the tuning document chose {choice['chosen']!r} for {choice['method']}, which is "
                                 f"not in today's grid: rerun the tuning")
            chosen[choice["method"]] = matches[0]
        out[group["group"]] = chosen
    return out


def _tuning_curve(tuning_group: dict[str, Any], method: str, label: str) -> Curve:
    curve = next(c for c in tuning_group["curves"] if c["method"] == method and c["label"] == label)
    pts = curve["points"]
    return Curve(tuple(p["omega"] for p in pts), tuple(p["adherence"] for p in pts), tuple(p["quality"] for p in pts),
                 tuple(p["evals_per_sample"] for p in pts), tuple(p["calls_per_step"] for p in pts))


def equal_cost_plan(tuning: dict[str, Any], config: SamplerConfig) -> dict[str, dict[str, dict[str, int]]]:
    """group -> DiffIER method -> ω key -> the steps that give plain CFG and the anchors its evaluations at
    ``config`` (ratios measured on the tuning seeds)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for group in tuning["groups"]:
        cfg = _tuning_curve(group, "cfg", "cfg")
        out[group["group"]] = {}
        for choice in group["choices"]:
            if choice["method"] in protocol.CORRECT_AT_CFG_1:
                curve = _tuning_curve(group, "diffier", choice["chosen"])
                out[group["group"]][choice["method"]] = protocol.equal_cost_steps(curve, cfg, config.steps)
    return out


def test_jobs_for(ctx: Context, tuning: dict[str, Any], config: SamplerConfig) -> dict[str, list[Job]]:
    """group -> the test jobs at ``config``."""
    chosen = chosen_settings(tuning, ctx.quick)
    plan = equal_cost_plan(tuning, config)
    return {group: protocol.test_jobs(chosen[group], config, ctx.omegas, plan[group], ctx.quick)
            for group in ctx.bed.groups}


def test_specs(ctx: Context, tuning: dict[str, Any], config: SamplerConfig) -> list[CellSpec]:
    return [CellSpec(group, "test", job, omega) for group, jobs in test_jobs_for(ctx, tuning, config).items()
            for job in jobs for omega in job.omegas]


def run_test(ctx: Context, tuning: dict[str, Any], config: SamplerConfig, part: tuple[int, int] | None,
             progress: Callable[..., Any] | None) -> int:
    """Run the test cells of ``config`` (or the shard ``part``); the number of cells."""
    return len(_run(ctx, test_specs(ctx, tuning, config), part, progress, f"{ctx.testbed} test {config.name}"))


def _difference(a: Any, b: Any) -> Difference:
    reps = np.asarray(a.replicates) - np.asarray(b.replicates)
    ok = reps[np.isfinite(reps)]
    lo, hi = np.quantile(ok, [0.025, 0.975]) if ok.size else (np.nan, np.nan)
    return Difference(a.value - b.value, float(lo), float(hi))


def _pairs(line_names: Sequence[str]) -> list[tuple[str, str]]:
    """The comparisons of a configuration: every base line vs plain CFG and vs each anchor; each equal-cost DiffIER
    comparison (the DiffIER method vs plain CFG and every anchor given its evaluations); capped vs uncapped DiffIER,
    and the cheap presets vs the node defaults."""
    names = set(line_names)
    references = ["cfg", *protocol.ANCHORS]
    out = [(m, r) for m in protocol.METHODS for r in references if m != r and m in names and r in names]
    for target in protocol.CORRECT_AT_CFG_1:
        for m in protocol.EQUAL_COST_METHODS:
            ref = f"{m}[equal_cost:{target}]"
            if target in names and ref in names:
                out.append((target, ref))
    out += [pair for pair in (("diffier_capped", "diffier"), ("diffier_balanced", "diffier_quality"),
                              ("diffier_fast", "diffier_quality")) if set(pair) <= names]
    return out


def _config_result(ctx: Context, config: SamplerConfig, results: Sequence[CellResult], levels: list[Level]
                   ) -> ConfigResult:
    metrics = ctx.bed.spec.metrics
    cfg_cells = {r.spec.omega: r for r in results if r.spec.job.method == "cfg" and r.spec.job.variant == "base"}
    cells = []
    for r in sorted(results, key=lambda r: (r.spec.job.name, r.spec.omega)):
        ref = cfg_cells.get(r.spec.omega)
        is_ref = ref is r or (r.spec.job.method == "cfg" and r.spec.job.variant == "base")
        job = r.spec.job
        cells.append(CellRecord(
            job.name, job.method, job.variant, job.setting.label, config.name, job.sampler, r.spec.omega,
            job.at_cfg_1 if r.spec.omega == 1.0 else None, r.cost, r.scores,
            None if is_ref or ref is None else _difference(getattr(r.scores, metrics.quality.field),
                                                           getattr(ref.scores, metrics.quality.field)),
            None if is_ref or ref is None else _difference(getattr(r.scores, metrics.adherence.field),
                                                           getattr(ref.scores, metrics.adherence.field))))
    by_line: dict[str, list[CellResult]] = {}
    for r in results:
        if r.spec.job.variant != "at_cfg_1:skip":
            by_line.setdefault(r.spec.job.name, []).append(r)
    lines = [line_of(name, c) for name, c in by_line.items()]
    pairs = _pairs(list(by_line))
    primary = frontier(lines, levels, metrics.quality.field, metrics.adherence.field,
                       bool(metrics.quality.lower_is_better), pairs)
    secondary = (frontier(lines, levels, metrics.secondary.field, metrics.adherence.field,
                          bool(metrics.secondary.lower_is_better), pairs) if metrics.secondary else None)
    return ConfigResult(config.name, cells, primary, secondary)


def completed_configs(ctx: Context, tuning: dict[str, Any]) -> list[SamplerConfig]:
    """The protocol's configurations whose every test cell is in the cache."""
    return [c for c in ctx.configs if not missing_cells(ctx, test_specs(ctx, tuning, c))]


def evidence_document(ctx: Context, tuning: dict[str, Any], tuning_path: str,
                      progress: Callable[..., Any] | None = None,
                      configs: Sequence[SamplerConfig] | None = None) -> EvidenceDocument:
    """The confirmatory document from the cache, over ``configs`` (default: every configuration; each must have all
    its test cells done); the protocol's other configurations are listed as pending."""
    configs = list(ctx.configs if configs is None else configs)
    groups: dict[str, GroupResult] = {}
    every: dict[tuple[str, ...], CellResult] = {}
    chosen = chosen_settings(tuning, ctx.quick)
    tuning_levels = {g["group"]: [Level(lv["cfg_omega"], lv["adherence"]) for lv in g["levels"]]
                     for g in tuning["groups"]}
    for config in configs:
        specs = test_specs(ctx, tuning, config)
        results = ctx.engine.run_all(specs, progress, f"{ctx.testbed} {config.name} (assemble)")
        plan = equal_cost_plan(tuning, config)
        for group in ctx.bed.groups:
            mine = [r for r in results if r.spec.group == group]
            every.update({r.run_keys: r for r in mine})
            g = groups.setdefault(group, GroupResult(group, {m: s.label for m, s in chosen[group].items()}, {}, []))
            if config.name in protocol.EQUAL_COST:
                g.equal_cost_steps[config.name] = {m: plan[group][m] for m in protocol.EQUAL_COST[config.name]}
            g.configs.append(_config_result(ctx, config, mine, tuning_levels[group]))
    document = EvidenceDocument(**_document_base(ctx, "confirmatory", list(every.values())),
                                tuning_document=tuning_path, groups=list(groups.values()), claims=[],
                                configs_pending=[c.name for c in ctx.configs if c not in configs])
    document.claims = claims.evaluate(document)
    return document


def read_tuning(path: Path) -> dict[str, Any]:
    """A tuning document (JSON data), checked to be one."""
    data = read_json(path)
    if data.get("kind") != "tuning":
        raise ValueError(f"{path} is not a tuning document (kind {data.get('kind')!r})")
    return data


# ---------------------------------------------------------------------------------------------------
# the run plan (no ComfyUI)


@dataclasses.dataclass
class CommandEstimate:
    """One command of a run plan: what it runs, how many distinct cells, and its estimated minutes."""

    command: str
    cells: int
    minutes: float


def _unique_cost(testbed: str, phase: str, specs: Sequence[CellSpec], sizes: protocol.Sizes) -> tuple[int, float]:
    """Distinct cells of ``specs`` and their estimated CPU seconds (:data:`~.protocol.COST_MODELS`)."""
    from .engine import estimated_evals

    model = protocol.COST_MODELS[testbed]
    size = getattr(sizes, phase)
    samples = size.samples_per_seed * model.images_per_seed.get(phase, 1) * len(size.seeds)
    unique = {}
    for spec in specs:
        key = (spec.group, json.dumps(spec.job.patches(spec.omega, True), sort_keys=True, default=str),
               spec.job.sampler, spec.job.steps_at(spec.omega), spec.omega)
        unique[key] = spec
    seconds = sum(estimated_evals(s.job, s.omega) * samples * model.ms_per_sample_eval / 1000 + model.score_s
                  for s in unique.values())
    return len(unique), seconds


def _plan_specs(testbed: str, phase: str, jobs: Sequence[Job]) -> list[CellSpec]:
    return [CellSpec(group, phase, job, omega) for group in protocol.COST_MODELS[testbed].groups for job in jobs
            for omega in job.omegas]


def _stand_in_choice(quick: bool) -> dict[str, Setting]:
    """The tuned settings assumed before a tuning document exists: the most expensive DiffIER point within and over
    the cap, the first setting of every other grid."""
    grids = method_grids(quick)
    fixed = fixed_diffier_points()
    return {"apg": grids["apg"][0], "rescalecfg": grids["rescalecfg"][0],
            "epsilon_scaling": grids["epsilon_scaling"][0], "diffier": fixed["diffier_quality"],
            "diffier_capped": fixed["diffier_balanced"]}


def run_plan(out: Path, max_minutes: float = 50.0) -> list[CommandEstimate]:
    """Every command of the full run with its estimated minutes, shards chosen so that each stays under
    ``max_minutes`` (test commands use the tuning documents in ``out`` where they exist, else stand-in choices)."""
    plan = []
    for testbed in TESTBEDS:
        sizes = protocol.SIZES[testbed]
        tuning_cells, seconds = _unique_cost(testbed, "tuning", _plan_specs(
            testbed, "tuning", protocol.tuning_jobs(False, protocol.OMEGAS, protocol.TUNING_CONFIG)), sizes)
        plan += _sharded(f"python -m benchmarks.evidence tune --testbed {testbed}", tuning_cells, seconds,
                         max_minutes)
        path = out / f"tuning_{testbed}.json"
        tuning = read_json(path) if path.exists() else None
        for config in protocol.CONFIGS:
            jobs_by_group = {}
            for group in protocol.COST_MODELS[testbed].groups:
                if tuning is not None:
                    chosen = chosen_settings(tuning, False)[group]
                    steps = equal_cost_plan(tuning, config)[group]
                else:
                    chosen = _stand_in_choice(False)
                    steps = {m: {protocol.omega_key(o): round(config.steps * (3.0 if m == "diffier" else 1.5))
                                 for o in protocol.OMEGAS} for m in protocol.CORRECT_AT_CFG_1}
                jobs_by_group[group] = protocol.test_jobs(chosen, config, protocol.OMEGAS, steps, False)
            specs = [CellSpec(g, "test", job, o) for g, jobs in jobs_by_group.items() for job in jobs
                     for o in job.omegas]
            cells, seconds = _unique_cost(testbed, "test", specs, sizes)
            plan += _sharded(f"python -m benchmarks.evidence test --testbed {testbed} --config {config.name}", cells,
                             seconds, max_minutes)
        plan.append(CommandEstimate(f"python -m benchmarks.evidence report --testbed {testbed}", 0, 2.0))
    return plan


def _sharded(command: str, cells: int, seconds: float, max_minutes: float) -> list[CommandEstimate]:
    shards = max(1, math.ceil(seconds / 60 / max_minutes))
    if shards == 1:
        return [CommandEstimate(command, cells, seconds / 60)]
    return [CommandEstimate(f"{command} --shard {i}/{shards}", math.ceil(cells / shards), seconds / 60 / shards)
            for i in range(1, shards + 1)]


def release_models() -> None:
    """ComfyUI's loaded models released (the end of every command)."""
    from scripts import comfy_inprocess

    comfy_inprocess.release_models()


def released(fn: Callable[[], Any]) -> Any:
    """``fn()``, then ComfyUI's models released (also when it raises)."""
    try:
        return fn()
    finally:
        release_models()
