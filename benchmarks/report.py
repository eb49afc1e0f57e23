"""The shared report, plot and command-line code of the protocol benchmarks (``benchmarks.tuned``, ``.frontier``).

* run sizes: :func:`size` (one row of a per-testbed ``{"full": ..., "quick": ...}`` table) and :func:`sized`;
* command line: :func:`parser` (the common flags ``--quick``/``--out``/``--threads``/``--markdown``, optionally
  ``--replot``), :func:`start` (logging, torch threads, the output folder, the command recorded in the JSON),
  :func:`run_released` (ComfyUI's models released however the run ends), :func:`write_json`, :func:`json_default`,
  :func:`emit` (the JSON, its PNG and the Markdown of a finished run);
* progress: :func:`progress` (tqdm on stderr);
* Markdown: :func:`mark` (▲/▼ of a paired interval), :func:`delta` (``mean [lo, hi]``), :func:`table_head`;
* plots: :func:`pyplot` (the Agg backend), :data:`COLOURS`, :func:`errorbar_delta`, :func:`omega_axis`,
  :func:`robust_ylim`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_OUT", "COLOURS", "size", "sized", "parser", "start", "run_released", "write_json", "emit",
           "json_default", "progress", "mark", "delta", "table_head", "pyplot", "errorbar_delta", "omega_axis",
           "robust_ylim"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "results"

#: one colour per method, chain, control sampler and frontier family
COLOURS = {"cfg": "black", "diffier": "tab:blue", "apg": "tab:green", "rescalecfg": "tab:orange",
           "epsilon_scaling": "tab:purple", "cfgzerostar": "tab:red", "tcfg": "tab:brown",
           "diffier→apg": "tab:olive", "apg→diffier": "tab:green", "diffier→cfgzerostar": "tab:red",
           "rescalecfg→diffier": "tab:orange", "euler": "grey", "dpmpp_2m": "tab:cyan", "uni_pc": "tab:pink",
           "quality": "tab:blue", "iterations": "tab:orange", "window": "tab:green", "stride": "tab:purple",
           "inner": "tab:brown", "cfg_steps": "grey"}


# ---------------------------------------------------------------------------------------------------
# sizes


def size(omegas: Sequence[float], tuning_seeds: Sequence[int], test_seeds: Sequence[int], tuning_samples: int,
         test_samples: int, steps: int, reps: int) -> dict[str, Any]:
    """One run size: guidance weights, the disjoint seed sets, samples per run of each phase, steps, bootstrap reps."""
    return {"omegas": tuple(omegas), "tuning_seeds": list(tuning_seeds), "test_seeds": list(test_seeds),
            "tuning_samples": tuning_samples, "test_samples": test_samples, "steps": steps, "reps": reps}


def sized(table: dict[str, dict[str, dict[str, Any]]], testbed: str, quick: bool,
          overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The size of ``testbed`` (``quick`` or full) from ``table`` with ``overrides`` applied."""
    if testbed not in table:
        raise ValueError(f"testbed must be one of {sorted(table)}, got {testbed!r}")
    return {**table[testbed]["quick" if quick else "full"], **(overrides or {})}


# ---------------------------------------------------------------------------------------------------
# command line


def parser(prog: str, doc: str, testbeds: Sequence[str], replot: bool = True) -> argparse.ArgumentParser:
    """The common flags: ``--testbed``, ``--quick``, ``--out``, ``--threads``, ``--markdown`` (and ``--replot``)."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.add_argument("--testbed", choices=list(testbeds), default=testbeds[0])
    p.add_argument("--quick", action="store_true", help="reduced grid and sizes (CI smoke run)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default docs/results)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--markdown", action="store_true", help="print the Markdown tables")
    if replot:
        p.add_argument("--replot", type=Path, help="redraw the PNG (and --markdown) from an existing JSON")
    return p


def start(args: argparse.Namespace, log: logging.Logger, prog: str, argv: list[str] | None) -> tuple[Path, str]:
    """Logging to stderr, torch threads; returns the output folder (created) and the command line to record."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out_dir = args.out or DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    words = argv if argv is not None else sys.argv[1:]
    return out_dir, f"python -m {prog} " + " ".join(shlex.quote(a) for a in words)


def run_released(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)``, then ComfyUI's loaded models released (also when it raises)."""
    try:
        return fn(*args)
    finally:
        from .harness import inprocess

        inprocess().release_models()


def json_default(o: Any) -> Any:
    """``json.dumps`` ``default``: tensors as lists."""
    import torch

    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    """``doc`` as indented JSON (NaN allowed, tensors as lists)."""
    path.write_text(json.dumps(doc, indent=1, allow_nan=True, default=json_default))
    return path


def emit(doc: dict[str, Any], json_path: Path, draw: Callable[[dict[str, Any], Path], Path], markdown: str | None,
         log: logging.Logger, seconds: float) -> None:
    """Write ``doc`` to ``json_path`` and its plot next to it (``draw(doc, png_path)``), print ``markdown`` if given.

    Args:
        doc: the run's JSON document; json_path: where it goes (the PNG takes its stem).
        draw: the plot function; markdown: the tables to print on stdout (None: none); log: the CLI's logger;
        seconds: the run time to log.
    """
    write_json(json_path, doc)
    png = draw(doc, json_path.with_suffix(".png"))
    if markdown is not None:
        sys.stdout.write(markdown + "\n")
    log.info("wrote %s and %s (%.0f s)", json_path, png, seconds)


def progress(**kwargs: Any) -> Any:
    """A tqdm bar on stderr, refreshed every 5 s (``progress(total=, desc=)``)."""
    from tqdm import tqdm

    return tqdm(file=sys.stderr, mininterval=5.0, **kwargs)


# ---------------------------------------------------------------------------------------------------
# Markdown


def mark(ci: dict[str, Any] | None) -> str:
    """`` ▲``/`` ▼`` when a paired interval (with ``sig``) is entirely better/worse, else nothing."""
    if not ci:
        return ""
    return {"better": " ▲", "worse": " ▼", "tie": ""}[ci["sig"]]


def delta(ci: dict[str, Any]) -> str:
    """``mean [lo, hi]`` of a paired difference."""
    return f"{ci['mean']:+.3g} [{ci['lo']:+.3g}, {ci['hi']:+.3g}]"


def table_head(first: str, columns: Sequence[str]) -> list[str]:
    """A Markdown table's header and rule lines."""
    return [f"| {first} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]


# ---------------------------------------------------------------------------------------------------
# plots


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def errorbar_delta(ax: Any, omegas: list[float], cis: list[dict[str, float]], **kwargs: Any) -> None:
    """Paired differences vs ω with their (lo, hi) intervals as asymmetric error bars."""
    mean = [v["mean"] for v in cis]
    err = [[max(0.0, v["mean"] - v["lo"]) for v in cis], [max(0.0, v["hi"] - v["mean"]) for v in cis]]
    ax.errorbar(omegas, mean, yerr=err, capsize=2, **kwargs)


def omega_axis(ax: Any, omegas: list[float], fontsize: float | None = None) -> None:
    """A log ω axis ticked at the run's guidance weights."""
    ax.set_xscale("log")
    ax.set_xticks(omegas)
    ax.set_xticklabels([f"{o:g}" for o in omegas], fontsize=fontsize)
    ax.minorticks_off()
    ax.set_xlabel("guidance weight ω", fontsize=fontsize)


def robust_ylim(ax: Any) -> None:
    """Keep the bulk of the curves readable: a diverging method (CFGZeroStar on known scores) runs off-frame."""
    import numpy as np

    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()] or [np.zeros(1)])
    ys = ys[np.isfinite(ys)]
    if ys.size < 4:
        return
    q1, q3 = np.quantile(ys, [0.25, 0.75])
    span = max(q3 - q1, 1e-6)
    lo, hi = max(ys.min(), q1 - 3.0 * span), min(ys.max(), q3 + 3.0 * span)
    pad = 0.08 * (hi - lo or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
