"""``python -m benchmarks.evidence``: the evidence protocol's commands (see :mod:`benchmarks.evidence`)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from . import run
from .documents import write_document
from .protocol import SamplerConfig

__all__ = ["main", "parser", "plan_text"]

log = logging.getLogger("DiffIER.bench.evidence")

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "results" / "evidence"
DEFAULT_CACHE = REPO_ROOT / ".cache" / "evidence"


def _progress(**kwargs):
    from tqdm import tqdm

    return tqdm(file=sys.stderr, mininterval=10.0, **kwargs)


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    index, _, count = text.partition("/")
    return int(index), int(count)


def _suffix(quick: bool) -> str:
    return "_quick" if quick else ""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.evidence",
                                description="Evidence as frontiers: quality against adherence over ω, tuned on "
                                            "tuning seeds, confirmed on fresh seeds (benchmarks/evidence).")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, testbed: bool = True) -> None:
        if testbed:
            sp.add_argument("--testbed", required=True, choices=run.TESTBEDS)
        sp.add_argument("--quick", action="store_true", help="the reduced CI protocol (small grids and sizes)")
        sp.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where documents go (docs/results/evidence)")
        sp.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the run cache (.cache/evidence)")

    tune = sub.add_parser("tune", help="run the tuning cells (or one shard); write the tuning document when all are "
                                       "done")
    common(tune)
    tune.add_argument("--shard", help="i/n: run the i-th of n shards of about equal cost")
    test = sub.add_parser("test", help="run the test cells of one configuration (or one shard)")
    common(test)
    test.add_argument("--config", required=True, help="euler-20, dpmpp_2m-20, euler-30 or dpmpp_2m-30")
    test.add_argument("--shard", help="i/n: run the i-th of n shards of about equal cost")
    test.add_argument("--tuning", type=Path, help="the tuning document (default: <out>/tuning_<testbed>.json)")
    report = sub.add_parser("report", help="assemble the confirmatory document, PNG and Markdown from the cache")
    common(report)
    report.add_argument("--tuning", type=Path, help="the tuning document (default: <out>/tuning_<testbed>.json)")
    everything = sub.add_parser("all", help="tune, test every configuration and report in one process (--quick: CI)")
    common(everything)
    energy = sub.add_parser("energy-check", help="measure the known-score energy distance's null and exact-model "
                                                 "values (docs/evidence/protocol.md explains them)")
    common(energy, testbed=False)
    plan = sub.add_parser("plan", help="list the commands of the full run with their estimated cost")
    common(plan, testbed=False)
    return p


def _tuning_path(args: argparse.Namespace) -> Path:
    return getattr(args, "tuning", None) or args.out / f"tuning_{args.testbed}{_suffix(args.quick)}.json"


def _write_tuning(ctx: run.Context, out: Path) -> None:
    from .report import plot_tuning, tuning_markdown

    document = run.tuning_document(ctx, _progress)
    path = write_document(out / f"tuning_{ctx.testbed}{_suffix(ctx.quick)}.json", document)
    plot_tuning(document, path.with_suffix(".png"))
    path.with_suffix(".md").write_text(tuning_markdown(document))
    log.info("wrote %s (+ .png, .md): %s", path,
             {g.group: {c.method: c.chosen for c in g.choices} for g in document.groups})


def _write_report(ctx: run.Context, tuning_path: Path, out: Path) -> None:
    from .report import markdown, plot_frontiers

    tuning = run.read_tuning(tuning_path)
    done = run.completed_configs(ctx, tuning)
    if not done:
        raise SystemExit(f"no configuration has all its test cells in the cache {ctx.store.folder}: run the test "
                         f"commands first (python -m benchmarks.evidence plan)")
    document = run.evidence_document(ctx, tuning, _relative(tuning_path), _progress, done)
    path = write_document(out / f"confirmatory_{ctx.testbed}{_suffix(ctx.quick)}.json", document)
    plot_frontiers(document, path.with_suffix(".png"))
    path.with_suffix(".md").write_text(markdown(document))
    log.info("wrote %s (+ .png, .md); claims: %s", path, {c.claim: c.verdict for c in document.claims})


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    words = argv if argv is not None else sys.argv[1:]
    command = "python -m benchmarks.evidence " + " ".join(shlex.quote(w) for w in words)
    t0 = time.perf_counter()
    if args.command == "plan":
        sys.stdout.write(plan_text(args.out))
        return 0
    if args.command == "energy-check":
        from .energy import energy_check

        check = run.released(lambda: energy_check(args.quick, progress=_progress))
        path = write_document(args.out / f"energy_distance_check{_suffix(args.quick)}.json", check)
        log.info("wrote %s\n%s", path, check.explanation)
        return 0
    ctx = run.make_context(args.testbed, args.quick, args.cache)
    try:
        if args.command in ("tune", "all"):
            part = _shard(getattr(args, "shard", None))
            cells = run.run_tuning(ctx, part, _progress)
            run.log_command(ctx, command, "tuning", ctx.tuning_config.name, part, cells, time.perf_counter() - t0)
            missing = run.missing_cells(ctx, run.tuning_specs(ctx))
            if missing:
                log.info("%d tuning cells still missing (other shards): the tuning document is written when all "
                         "are done", len(missing))
            else:
                _write_tuning(ctx, args.out)
        if args.command == "test":
            t1 = time.perf_counter()
            config = SamplerConfig.parse(args.config)
            if config not in ctx.configs:
                raise SystemExit(f"--config must be one of {[c.name for c in ctx.configs]}, got {args.config!r}")
            part = _shard(args.shard)
            cells = run.run_test(ctx, run.read_tuning(_tuning_path(args)), config, part, _progress)
            run.log_command(ctx, command, "test", config.name, part, cells, time.perf_counter() - t1)
        if args.command == "all":
            tuning = run.read_tuning(_tuning_path(args))
            for config in ctx.configs:
                t1 = time.perf_counter()
                cells = run.run_test(ctx, tuning, config, None, _progress)
                run.log_command(ctx, command, "test", config.name, None, cells, time.perf_counter() - t1)
        if args.command in ("report", "all"):
            _write_report(ctx, _tuning_path(args), args.out)
    finally:
        run.release_models()
    log.info("done in %.0f s", time.perf_counter() - t0)
    return 0


def plan_text(out: Path) -> str:
    """The full run's commands with their estimated minutes on one thread of a quiet CPU (shards keep each under 50
    minutes; the test commands are sized from the tuning documents in ``out`` where they exist)."""
    plan = run.run_plan(out)
    lines = [f"{p.command:<92} {p.cells:>5} cells  {p.minutes:6.1f} min" for p in plan]
    tuning = sum(p.minutes for p in plan if " tune " in p.command)
    test = sum(p.minutes for p in plan if " test " in p.command or " report " in p.command)
    lines.append(f"tuning {tuning / 60:.1f} h, confirmatory {test / 60:.1f} h of one-thread CPU time "
                 f"({len([p for p in plan if ' test ' in p.command])} test commands)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

