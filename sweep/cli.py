"""The command line of ``python -m sweep`` (see README, "Try it on your own model").

Exit status: 0 when every job is done, 1 when some failed (their errors are in ``sweep.json`` and the
log; the finished ones are kept and a rerun retries only the rest), 2 for a usage or setup error
(workflow, method, or no usable server), which is printed as one line naming what was wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from scripts.comfy_http import ComfyClient, ServerDown, normalise_url

from . import graph, report
from .methods import DIFFIER_NODE, MethodSpecError, parse_methods
from .runner import Job, JobStore, Progress, Scheduler, make_job_id, sha

log = logging.getLogger("DiffIER.sweep")
DEFAULT_CFG = "1.5,3,5,7.5"
DEFAULT_METHODS = ("cfg", "diffier")


class SetupError(Exception):
    """A problem found before any job runs (printed, exit status 2)."""


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr if record.levelno >= logging.WARNING else sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweep", description=(
        "Does DiffIER help on your model? Sweeps CFG weights x methods (DiffIER settings, anchors such as APG, "
        "RescaleCFG, CFGZeroStar, TCFG, and chains of them) x prompts x seeds over your own API-format workflow, "
        "on one or more ComfyUI servers, and writes the images, a grid (rows CFG, columns methods), metrics "
        "(sweep.json) and a plot (metrics.png). Rerunning the same command skips finished jobs."))
    p.add_argument("--server", action="append", required=True, metavar="URL",
                   help="a ComfyUI server, e.g. http://127.0.0.1:8188 (repeat for several)")
    p.add_argument("--workflow", required=True, type=Path, help="your workflow saved with Workflow → Export (API)")
    p.add_argument("--out", type=Path, default=Path("sweep_out"), help="output folder (default: sweep_out)")
    p.add_argument("--cfg", default=DEFAULT_CFG, help=f"CFG weights ω, comma-separated (default: {DEFAULT_CFG})")
    p.add_argument("--method", action="append", metavar="SPEC",
                   help="a column: cfg, diffier, diffier:eta=0.1,max_iters=8, rescalecfg:multiplier=0.7+diffier, "
                        "apg, cfgzero, tcfg, or any MODEL→MODEL node id with key=value inputs; '|' lists "
                        "alternatives (diffier:eta=0.02|0.05); LABEL=SPEC names it (default: cfg and diffier)")
    p.add_argument("--prompt", action="append", metavar="TEXT", help="a positive prompt (repeat for several)")
    p.add_argument("--prompts-file", type=Path, help="positive prompts, one per line")
    p.add_argument("--seeds", help="seeds: 0,1,2 or 0-3 (default: the workflow's seed)")
    p.add_argument("--sampler", metavar="NODE_ID", help="the sampler node to sweep, when the workflow has several")
    p.add_argument("--prompt-input", metavar="NODE_ID.INPUT",
                   help="where prompts go (default: the 'text' of the node feeding the sampler's positive input)")
    p.add_argument("--seed-input", metavar="NODE_ID.INPUT", help="where seeds go (default: the sampler's seed)")
    p.add_argument("--cfg-input", metavar="NODE_ID.INPUT", help="where ω goes (default: the sampler's cfg)")
    p.add_argument("--reference", type=Path, metavar="DIR",
                   help="reference images: PSNR/SSIM against DIR/p<prompt>_s<seed>_<k>*.png, and a pixel-statistics "
                        "FD against all of DIR (an earlier sweep's images/<method>/w<ω>/ folder works)")
    p.add_argument("--max-inflight", type=int, default=2, help="jobs queued at once per server (default 2)")
    p.add_argument("--job-timeout", type=float, default=900.0,
                   help="seconds a job may run on a server before it moves to another (default 900)")
    p.add_argument("--queue-timeout", type=float, default=900.0,
                   help="seconds a job may wait in a busy server's queue before it moves to another (default 900)")
    p.add_argument("--max-attempts", type=int, default=3, help="tries per job across servers (default 3)")
    p.add_argument("--require-all-servers", action="store_true",
                   help="stop if any --server is unreachable or cannot run the workflow (default: warn, use the rest)")
    p.add_argument("--grid-cell", type=int, default=256, help="largest side of a grid tile in pixels (default 256)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise SetupError(f"{flag} {text!r}: expected comma-separated numbers, e.g. 1.5,3,7.5") from exc
    if not values:
        raise SetupError(f"{flag} {text!r}: no values")
    if any(v < 0 or v != v for v in values):
        raise SetupError(f"{flag} {text!r}: CFG weights must be ≥ 0")
    return list(dict.fromkeys(values))


def parse_seeds(text: str | None) -> list[int | None]:
    if text is None:
        return [None]
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, dash, hi = part.partition("-")
            seeds.extend(range(int(lo), int(hi) + 1) if dash and lo else [int(part)])
    except ValueError as exc:
        raise SetupError(f"--seeds {text!r}: expected integers such as 0,1,2 or 0-3") from exc
    if not seeds or any(s < 0 for s in seeds):
        raise SetupError(f"--seeds {text!r}: expected non-negative integers")
    return list(dict.fromkeys(seeds))


def read_prompts(args: argparse.Namespace) -> list[str | None]:
    prompts = list(args.prompt or [])
    if args.prompts_file is not None:
        try:
            prompts += [line.strip() for line in args.prompts_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise SetupError(f"--prompts-file {args.prompts_file}: {exc.strerror or exc}") from exc
    return list(dict.fromkeys(prompts)) or [None]


def make_jobs(workflow: dict, points: graph.SweepPoints, methods, omegas: list[float], prompts: list[str | None],
              seeds: list[int | None]) -> list[Job]:
    """Every job, ordered prompt × seed, then ω, then method (a grid fills row by row)."""
    base = sha({k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in workflow.items()})
    targets = [str(points.cfg), str(points.prompt), str(points.seed)]
    jobs = []
    for pi, text in enumerate(prompts):
        for seed in seeds:
            for omega in sorted(omegas):
                for method in methods:
                    spec = {"workflow": base, "sampler": points.sampler, "targets": targets,
                            "method": method.canonical(), "omega": omega, "prompt": text, "seed": seed}
                    wf = graph.build_job_workflow(workflow, points, method, omega, text, seed)
                    jobs.append(Job(make_job_id(spec), method.label, omega, pi, text, seed, wf, spec))
    return jobs


def check_servers(urls: list[str], workflow: dict, methods, require_all: bool) -> dict[str, tuple[ComfyClient, dict]]:
    """The usable servers with their ``/object_info``; every problem is logged, and fatal when no server is
    left (or any, with ``require_all``)."""
    usable, problems = {}, []
    for url in urls:
        client = ComfyClient(url)
        try:
            client.probe()
            info = client.object_info()
        except ServerDown as exc:
            problems.append(f"{exc}: is ComfyUI running there (and reachable from here)?")
            continue
        found = graph.check_against_server(workflow, info, client.url, methods)
        if found:
            problems.extend(found)
            continue
        usable[client.url] = (client, info)
    for problem in problems:
        log.error("%s", problem)
    if not usable or (require_all and problems):
        why = "no server can run the sweep" if not usable else "--require-all-servers: a server cannot run the sweep"
        raise SetupError(f"{why}:\n  " + "\n  ".join(problems))
    if problems:
        log.warning("going on with %d of %d servers: %s", len(usable), len(urls), ", ".join(usable))
    return usable


def _progress_bar(total: int, disabled: bool) -> tuple[tqdm, Any]:
    bar = tqdm(total=total, unit="job", desc="sweep", disable=disabled, dynamic_ncols=True, file=sys.stderr)

    def update(p: Progress) -> None:
        bar.n = p.done + p.failed
        bar.set_postfix_str(f"done {p.done}, failed {p.failed}, requeued {p.requeued}"
                            + (f", down {len(p.down)}" if p.down else ""), refresh=False)
        bar.refresh()

    return bar, update


def run(args: argparse.Namespace) -> int:
    try:
        workflow = graph.load_workflow(args.workflow.read_text(), str(args.workflow))
    except OSError as exc:
        raise SetupError(f"--workflow {args.workflow}: {exc.strerror or exc}") from exc
    try:
        methods = parse_methods(args.method or list(DEFAULT_METHODS))
    except MethodSpecError as exc:
        raise SetupError(str(exc)) from exc
    omegas, seeds, prompts = parse_floats(args.cfg, "--cfg"), parse_seeds(args.seeds), read_prompts(args)
    try:
        urls = list(dict.fromkeys(normalise_url(u) for u in args.server))
    except ValueError as exc:
        raise SetupError(str(exc)) from exc
    points = graph.sweep_points(workflow, args.sampler, args.prompt_input, args.seed_input,
                                need_prompt=prompts != [None], need_seed=seeds != [None], cfg_input=args.cfg_input)
    for node_id in graph.upstream_patches(workflow, points, (DIFFIER_NODE,)):
        log.warning("the workflow already has a DiffIERGuider (node %s) before the sampler: it stays in every column, "
                    "cfg included; remove it from the workflow for a clean comparison", node_id)
    reference = report.load_reference(args.reference) if args.reference else None
    jobs = make_jobs(workflow, points, methods, omegas, prompts, seeds)
    store = JobStore(args.out)
    todo = [j for j in jobs if not store.is_done(j.id)]
    log.info("%d jobs (%d methods × %d ω × %d prompts × %d seeds); %d already done in %s, %d to run",
             len(jobs), len(methods), len(omegas), len(prompts), len(seeds), len(jobs) - len(todo), args.out, len(todo))
    (args.out / "sweep_command.json").write_text(json.dumps({"argv": sys.argv[1:], "sampler": points.sampler,
                                                             "jobs": [j.id for j in jobs]}, indent=1))
    scheduler = None
    start = time.monotonic()
    if todo:
        servers = check_servers(urls, workflow, methods, args.require_all_servers)
        bar, update = _progress_bar(len(todo), args.no_progress)
        scheduler = Scheduler([c for c, _ in servers.values()], store, args.max_inflight, args.job_timeout,
                              args.max_attempts, args.queue_timeout, on_progress=update,
                              prepare=lambda job, url: graph.fill_defaults(job.prompt, servers[url][1]))
        try:
            scheduler.run(todo)
        finally:
            bar.close()
    return finish(args, jobs, store, methods, omegas, reference, scheduler, time.monotonic() - start)


def finish(args, jobs, store, methods, omegas, reference, scheduler, seconds: float) -> int:
    summary = report.collect(jobs, store, reference)
    summary["config"] = {"workflow": str(args.workflow), "servers": args.server, "cfg": sorted(omegas),
                         "methods": [{"label": m.label, "chain": m.canonical()} for m in methods],
                         "jobs": len(jobs), "seconds_this_run": round(seconds, 3)}
    (args.out / "sweep.json").write_text(json.dumps(summary, indent=1, default=str))
    grids = report.write_grids(jobs, store, [m.label for m in methods], omegas, args.out, args.grid_cell)
    plot = report.write_plot(summary, [m.label for m in methods], args.out / "metrics.png")
    ran = scheduler.progress if scheduler else Progress()
    for url, n in sorted(ran.per_server.items()):
        row = summary["servers"].get(url, {})
        log.info("server %s: %d jobs this run, %s s per image", url, n, _fmt(row.get("exec_s_per_image")))
    for cell in summary["cells"]:
        log.info("%-28s ω=%-5g clipped %s  saturation %s  diversity %s%s", cell["method"], cell["omega"],
                 _fmt(cell["clipped_fraction"]), _fmt(cell["mean_saturation"]), _fmt(cell["diversity"]),
                 "".join(f"  {k} {_fmt(cell.get(k))}" for k in ("psnr", "ssim", "fd") if cell.get(k) is not None))
    done = len(jobs) - len(summary["failed"])
    log.info("done %d/%d jobs (%d this run, %d failed); wrote %s, %s (%d grids)%s", done, len(jobs), ran.done,
             len(summary["failed"]), args.out / "sweep.json", args.out / "grid.png", len(grids),
             f", {plot}" if plot else "")
    for item in summary["failed"][:5]:
        log.error("not done: %s ω=%g %s: %s", item["method"], item["omega"], item["key"], item["error"])
    return 0 if not summary["failed"] else 1


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        return run(args)
    except (SetupError, graph.WorkflowError, FileNotFoundError) as exc:
        log.error("error: %s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; finished jobs are kept in %s, rerun the same command to finish the rest", args.out)
        return 130

