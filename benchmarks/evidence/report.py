"""The evidence documents as pictures and tables: the frontier PNGs (quality against adherence, one curve per method
over ω) and the Markdown tables (best quality per adherence level with paired marks, comparisons, claims, costs).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from .documents import ConfigResult, EvidenceDocument, TuningDocument
from .frontier import Frontier

__all__ = ["COLOURS", "plot_frontiers", "plot_tuning", "markdown", "tuning_markdown"]

#: one colour per method
COLOURS = {"cfg": "black", "tcfg": "tab:brown", "cfgzerostar": "tab:red", "apg": "tab:green",
           "rescalecfg": "tab:orange", "epsilon_scaling": "tab:purple", "diffier": "tab:blue",
           "diffier_capped": "tab:cyan", "diffier_quality": "navy", "diffier_balanced": "tab:pink",
           "diffier_fast": "tab:olive"}
#: adherence metrics drawn on a symmetric-log axis (log-probabilities that approach 0)
SYMLOG = {"target_log_prob"}
#: width and height of one panel of the frontier figure, inches
PANEL_WIDTH_IN, PANEL_HEIGHT_IN = 5.2, 4.3
#: figure height kept above the panels for the title, inches, and the height of one title line at fontsize 9
TITLE_MARGIN_IN, TITLE_LINE_IN = 0.8, 0.2
#: suptitle characters per inch of figure width at fontsize 9
TITLE_CHARS_PER_IN = 13


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"


def _robust_limits(ax: Any, values: list[float], axis: str = "y") -> None:
    """Keep the bulk readable: a diverging line (CFG-Zero* on known scores) runs off the frame."""
    import numpy as np

    vs = np.asarray([v for v in values if v is not None and math.isfinite(v)])
    if vs.size < 4:
        return
    q1, q3 = np.quantile(vs, [0.1, 0.9])
    span = max(q3 - q1, 1e-9)
    lo, hi = max(vs.min(), q1 - 1.5 * span), min(vs.max(), q3 + 1.5 * span)
    pad = 0.08 * (hi - lo or 1.0)
    (ax.set_ylim if axis == "y" else ax.set_xlim)(lo - pad, hi + pad)


def _draw_config(ax: Any, config: ConfigResult, quality: str, adherence: str, front: Frontier, title: str) -> None:
    by_line: dict[str, list[Any]] = {}
    for cell in config.cells:
        if cell.variant != "at_cfg_1:skip":
            by_line.setdefault(cell.line, []).append(cell)
    ys, all_xs = [], []
    for line, cells in by_line.items():
        cells.sort(key=lambda c: c.omega)
        method = cells[0].method
        xs = [getattr(c.scores, adherence).value for c in cells]
        qs = [getattr(c.scores, quality).value for c in cells]
        ys += qs
        all_xs += xs
        equal_cost = cells[0].variant.startswith("equal_cost")
        ax.plot(xs, qs, ls="--" if equal_cost else "-", lw=0.9 if equal_cost else (2.0 if method in ("cfg", "diffier")
                                                                                   else 1.2),
                marker="." if equal_cost else "o", ms=3, color=COLOURS.get(method, "grey"), alpha=0.6 if equal_cost
                else 0.95, label=line)
        for c, x, q in zip(cells, xs, qs, strict=True):
            if method in ("cfg", "diffier") and not equal_cost:
                ax.annotate(f"{c.omega:g}", (x, q), fontsize=5, alpha=0.8, xytext=(2, 2), textcoords="offset points")
    for level in front.levels:
        ax.axvline(level.adherence, color="grey", lw=0.5, ls=":")
    if adherence in SYMLOG:
        ax.set_xscale("symlog", linthresh=1e-4)
    else:
        _robust_limits(ax, all_xs, "x")
    _robust_limits(ax, ys)
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)


def plot_frontiers(document: EvidenceDocument, path: Path) -> Path:
    """Quality against adherence per group (rows, primary then secondary quality) and configuration (columns)."""
    plt = _pyplot()
    metrics = [(document.quality, False)] + ([(document.secondary, True)] if document.secondary else [])
    rows = [(g, m, sec) for g in document.groups for m, sec in metrics]
    cols = max(len(g.configs) for g in document.groups)
    figsize = (PANEL_WIDTH_IN * cols, PANEL_HEIGHT_IN * len(rows) + TITLE_MARGIN_IN)
    fig, axes = plt.subplots(len(rows), cols, figsize=figsize, squeeze=False)
    for r, (group, metric, secondary) in enumerate(rows):
        for c, config in enumerate(group.configs):
            front = config.secondary_frontier if secondary else config.frontier
            _draw_config(axes[r][c], config, metric.field, document.adherence.field, front,
                         f"{group.group} · {config.config} · {metric.label}")
            axes[r][c].set_xlabel(document.adherence.label, fontsize=7)
            axes[r][c].set_ylabel(metric.label, fontsize=7)
        axes[r][0].legend(fontsize=5.5, ncol=2)
    title_width = int(TITLE_CHARS_PER_IN * PANEL_WIDTH_IN * cols)
    title = textwrap.wrap(f"{document.testbed}: quality against adherence, one curve per method over ω "
                          f"{document.protocol.omegas} (dashed: equal-cost variants; dotted: the adherence levels; "
                          f"test seeds {document.protocol.test_seeds})", width=title_width)
    fig.suptitle("\n".join(title), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - TITLE_LINE_IN * len(title) / fig.get_figheight()))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_tuning(document: TuningDocument, path: Path) -> Path:
    """Every tuned method's settings on the tuning seeds (the chosen one bold), quality against adherence."""
    plt = _pyplot()
    methods = sorted({c.method for g in document.groups for c in g.curves})
    figsize = (3.6 * len(methods), 3.4 * len(document.groups) + TITLE_MARGIN_IN)
    fig, axes = plt.subplots(len(document.groups), len(methods), figsize=figsize, squeeze=False)
    for r, group in enumerate(document.groups):
        chosen = {ch.chosen for ch in group.choices}
        cfg = next(c for c in group.curves if c.method == "cfg")
        for k, method in enumerate(methods):
            ax = axes[r][k]
            ys, all_xs = [], []
            for curve in [c for c in group.curves if c.method == method] + ([cfg] if method != "cfg" else []):
                xs = [p.adherence for p in curve.points]
                qs = [p.quality for p in curve.points]
                ys += qs
                all_xs += xs
                bold = curve.label in chosen or curve.method == "cfg"
                ax.plot(xs, qs, marker="o", ms=2, lw=1.8 if bold else 0.6, alpha=1.0 if bold else 0.5,
                        color="black" if curve.method == "cfg" else None,
                        label=curve.label if bold else None)
            for level in group.levels:
                ax.axvline(level.adherence, color="grey", lw=0.5, ls=":")
            if document.adherence.field in SYMLOG:
                ax.set_xscale("symlog", linthresh=1e-4)
            else:
                _robust_limits(ax, all_xs, "x")
            _robust_limits(ax, ys)
            ax.set_title(f"{group.group} · {method}", fontsize=8)
            ax.legend(fontsize=5)
            ax.grid(alpha=0.3)
    fig.suptitle(f"{document.testbed} tuning ({document.protocol.tuning_config}, seeds "
                 f"{document.protocol.tuning_seeds}): {document.quality.label} against {document.adherence.label}",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _mark(verdict: str, better: str = "▲", worse: str = "▼") -> str:
    return {"better": f" {better}", "worse": f" {worse}", "unreached": " ∅", "undetermined": " ?"}.get(verdict, "")


def _frontier_table(front: Frontier) -> list[str]:
    vs_cfg = {(p.line, p.cfg_omega): p.verdict for p in front.pairs if p.reference == "cfg"}
    head = " | ".join(f"CFG ω={lv.cfg_omega:g} ({lv.adherence:.3g})" for lv in front.levels)
    lines = [f"| line | evals/sample | calls/step | {head} |", "|---|---|---|" + "---|" * len(front.levels)]
    for ln in front.lines:
        cells = [f"{_fmt(v.quality)}{_mark(vs_cfg.get((ln.name, v.cfg_omega), ''))}" for v in ln.levels]
        lines.append(f"| {ln.name} | {ln.evals_per_sample:.1f} | {ln.calls_per_step:.2f} | " + " | ".join(cells) + " |")
    return lines


def _pairs_table(front: Frontier, line: str) -> list[str]:
    rows = [p for p in front.pairs if p.line == line]
    refs = list(dict.fromkeys(p.reference for p in rows))
    head = " | ".join(f"CFG ω={lv.cfg_omega:g}" for lv in front.levels)
    out = [f"| {line} − reference | {head} |", "|---|" + "---|" * len(front.levels)]
    for ref in refs:
        cells = []
        for p in (q for q in rows if q.reference == ref):
            cells.append("—" if p.difference is None else
                         f"{p.difference:+.3g} [{_fmt(p.lo, 3)}, {_fmt(p.hi, 3)}]{_mark(p.verdict)}")
        out.append(f"| {ref} | " + " | ".join(cells) + " |")
    return out


def markdown(document: EvidenceDocument) -> str:
    """The confirmatory document's tables."""
    out = [f"## {document.testbed} (confirmatory, test seeds {document.protocol.test_seeds})", "",
           f"Quality: {document.quality.label}; adherence: {document.adherence.label}; diversity: "
           f"{document.diversity.label}. ▲/▼: the paired 95 % interval vs plain CFG at that adherence level is "
           "entirely better/worse; ∅: the line does not reach the level; ?: reached on < 90 % of the resamples.", "",
           "Configurations run: " + ", ".join(c.config for c in document.groups[0].configs) + "; not run yet: "
           + (", ".join(document.configs_pending) or "none") + " (a claim that holds so far and covers one of them "
           "is **pending**).", "",
           "### Claims", "", "| claim | group | statement | verdict | evidence |", "|---|---|---|---|---|"]
    out += [f"| {c.claim} | {c.group} | {c.statement} | **{c.verdict}** | {'; '.join(c.evidence)} |"
            for c in document.claims]
    for group in document.groups:
        out += ["", f"### {group.group}", "", "Chosen on the tuning seeds: " +
                ", ".join(f"{m} `{lab}`" for m, lab in group.chosen.items())]
        for config in group.configs:
            for front in (f for f in (config.frontier, config.secondary_frontier) if f is not None):
                out += ["", f"#### {group.group} · {config.config} · best {front.metric} per adherence level", ""]
                out += _frontier_table(front)
            for line in ("diffier", "diffier_capped"):
                out += ["", f"#### {group.group} · {config.config} · {line} against the references "
                            f"({config.frontier.metric}, paired 95 %)", ""]
                out += _pairs_table(config.frontier, line)
    return "\n".join(out) + "\n"


def tuning_markdown(document: TuningDocument) -> str:
    """The tuning document's choices and every setting's selection score."""
    out = [f"## {document.testbed} tuning ({document.protocol.tuning_config}, seeds {document.protocol.tuning_seeds})"]
    for group in document.groups:
        out += ["", f"### {group.group}", "", "Levels (plain CFG's adherence at ω): " +
                ", ".join(f"ω={lv.cfg_omega:g}: {lv.adherence:.4g}" for lv in group.levels),
                f"Unreached level penalty {group.penalty:.4g}; tie tolerance {group.tolerance:.4g}.", "",
                "| method | chosen | tied | evals/sample (ω > 1) |", "|---|---|---|---|"]
        curves = {(c.method, c.label): c for c in group.curves}
        for ch in group.choices:
            grid = "diffier" if ch.method.startswith("diffier") else ch.method
            pts = [p for p in curves[(grid, ch.chosen)].points if p.omega != 1.0]
            evals = sum(p.evals_per_sample for p in pts) / max(1, len(pts))
            out.append(f"| {ch.method} | `{ch.chosen}` | {', '.join(ch.tied)} | {evals:.1f} |")
        out += ["", "| method | setting | selection score | within cap |", "|---|---|---|---|"]
        out += [f"| {c.method} | `{c.label}` | {c.selection_score:.4g} | {c.within_cap} |"
                for c in sorted(group.curves, key=lambda c: (c.method, c.selection_score))]
    return "\n".join(out) + "\n"
