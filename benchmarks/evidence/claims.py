"""The claims the confirmatory run tests (docs/evidence/protocol.md), each a falsifiable statement with the rule that
decides it on a confirmatory document.

Kinds of rule:

Every claim is decided per group (known scores: per error regime) over its configurations.

* :class:`FrontierClaim`: ``line`` against ``reference`` at matched adherence, in every listed configuration:
  confirmed when, in each of them, the line is better (95 % paired interval) at least at ``min_better`` adherence
  levels and worse at none. A level where either line is unreached, or the comparison is undetermined, counts as
  neither.
* :class:`NotWorseClaim`: as above with ``min_better = 0``: worse at no level anywhere.
* :class:`SameOmegaClaim`: one cell against plain CFG's at the same ω (e.g. DiffIER with ``at_cfg_1 = correct`` at
  ω = 1 against plain sampling): confirmed when the quality difference's 95 % interval lies on the better side in
  every listed configuration.
* :class:`DominanceClaim`: ``line`` needs fewer evaluations per sample than ``reference`` and is worse (paired 95 %
  interval) at no adherence level in every listed configuration (``balanced`` against the node defaults).

Verdicts: ``confirmed``; ``not confirmed`` (the rule fails in a configuration that has run: final); ``pending`` (the
rule holds in every configuration that has run, and a configuration it covers has not run yet); ``not applicable``
(the document lacks the lines).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .documents import ClaimResult

__all__ = ["configs_of", "Claim", "PairClaim", "FrontierClaim", "NotWorseClaim", "SameOmegaClaim", "DominanceClaim",
           "CLAIMS", "evaluate"]

#: which configurations a claim covers, by role (resolved on the document's protocol)
ALL_CONFIGS = "every configuration"
FEWEST_STEPS = "the configurations with the fewest steps"
EQUAL_COST_DIFFIER = "the configurations with equal-cost variants for diffier"
EQUAL_COST_CAPPED = "the configurations with equal-cost variants for diffier_capped"


def configs_of(document: Any, role: str) -> list[str]:
    """The configuration names a role covers in ``document``."""
    configs = document.protocol.configs
    if role == ALL_CONFIGS:
        return list(configs)
    if role == FEWEST_STEPS:
        fewest = min(int(c.rpartition("-")[2]) for c in configs)
        return [c for c in configs if int(c.rpartition("-")[2]) == fewest]
    target = {EQUAL_COST_DIFFIER: "diffier", EQUAL_COST_CAPPED: "diffier_capped"}[role]
    return [c for c, methods in document.protocol.equal_cost.items() if target in methods]


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim: its id, statement and testbeds; a subclass decides it per group and configuration (``judge``)."""

    claim: str
    statement: str
    testbeds: tuple[str, ...]

    def rule(self) -> str:
        raise NotImplementedError

    def judge(self, document: Any, config: Any) -> tuple[bool, str] | None:
        """``(passes, evidence)`` in one configuration of one group, or None when the claim's lines are not there."""
        raise NotImplementedError

    def decide(self, document: Any, group: Any) -> tuple[str, list[str]]:
        """The verdict on one group of ``document`` (confirmed only if every configuration passes), and the
        evidence per configuration."""
        evidence, ok, seen = [], True, False
        configs = configs_of(document, getattr(self, "configs", ALL_CONFIGS))
        for config in (c for c in group.configs if c.config in configs):
            judged = self.judge(document, config)
            if judged is None:
                continue
            seen = True
            ok &= judged[0]
            evidence.append(f"{config.config}: {judged[1]}")
        waiting = [c for c in configs if c in getattr(document, "configs_pending", [])]
        if not seen:
            return ("pending" if waiting else "not applicable"), evidence
        if ok and waiting:
            return "pending", [*evidence, f"not run yet: {', '.join(waiting)}"]
        return _verdict(ok), evidence


@dataclasses.dataclass(frozen=True)
class PairClaim(Claim):
    """A claim about one line against a reference line."""

    line: str
    reference: str


@dataclasses.dataclass(frozen=True)
class FrontierClaim(PairClaim):
    """``line`` better than ``reference`` at matched adherence (see the module docstring)."""

    configs: str = ALL_CONFIGS
    secondary: bool = False
    min_better: int = 1

    def rule(self) -> str:
        metric = "secondary quality" if self.secondary else "primary quality"
        return (f"{self.line} vs {self.reference}, {metric} at matched adherence, {self.configs}: in every config "
                f"better at ≥ {self.min_better} level(s) and worse at none")

    def judge(self, document: Any, config: Any) -> tuple[bool, str] | None:
        front = config.secondary_frontier if self.secondary else config.frontier
        rows = [] if front is None else [p for p in front.pairs if p.line == self.line
                                         and p.reference == self.reference]
        if not rows:
            return None
        counts = {v: sum(p.verdict == v for p in rows) for v in ("better", "tie", "worse", "unreached",
                                                                  "undetermined")}
        return (counts["better"] >= self.min_better and counts["worse"] == 0,
                ", ".join(f"{k} {v}" for k, v in counts.items()))


@dataclasses.dataclass(frozen=True)
class NotWorseClaim(FrontierClaim):
    """``line`` worse than ``reference`` at no adherence level."""

    min_better: int = 0

    def rule(self) -> str:
        metric = "secondary quality" if self.secondary else "primary quality"
        return (f"{self.line} vs {self.reference}, {metric} at matched adherence, {self.configs}: "
                "worse at no level in any config")


@dataclasses.dataclass(frozen=True)
class SameOmegaClaim(PairClaim):
    """The ``line`` cell at ``omega`` against the ``reference`` cell at the same ω (``cfg``: the cells record that
    difference): quality better, its 95 % interval excluding 0."""

    omega: float = 1.0
    configs: str = ALL_CONFIGS

    def rule(self) -> str:
        return (f"{self.line} at ω = {self.omega:g} vs {self.reference} at ω = {self.omega:g}, {self.configs}: the "
                "primary quality difference's 95 % interval on the better side in every config")

    def decide(self, document: Any, group: Any) -> tuple[str, list[str]]:
        if self.omega == 1.0 and not document.protocol.at_cfg_1_supported:
            return "not applicable", ["the DiffIER nodes have no at_cfg_1 input in this run"]
        return super().decide(document, group)

    def judge(self, document: Any, config: Any) -> tuple[bool, str] | None:
        cells = [c for c in config.cells if c.line == self.line and c.omega == self.omega]
        if not cells or cells[0].quality_vs_cfg is None:
            return None
        d, a = cells[0].quality_vs_cfg, cells[0].adherence_vs_cfg
        better = d.hi < 0 if document.quality.lower_is_better else d.lo > 0
        return better, (f"quality Δ {d.value:+.4g} [{d.lo:+.4g}, {d.hi:+.4g}], adherence Δ {a.value:+.4g} "
                        f"[{a.lo:+.4g}, {a.hi:+.4g}]")


@dataclasses.dataclass(frozen=True)
class DominanceClaim(PairClaim):
    """``line`` costs fewer evaluations than ``reference`` and is worse at no adherence level."""

    configs: str = FEWEST_STEPS

    def rule(self) -> str:
        return (f"{self.line} vs {self.reference}, {self.configs}: fewer evaluations per sample and worse "
                "(paired 95 %) at no adherence level (primary quality) in every config")

    def judge(self, document: Any, config: Any) -> tuple[bool, str] | None:
        lines = {ln.name: ln for ln in config.frontier.lines}
        rows = [p for p in config.frontier.pairs if p.line == self.line and p.reference == self.reference]
        if self.line not in lines or self.reference not in lines or not rows:
            return None
        ours, theirs = lines[self.line].evals_per_sample, lines[self.reference].evals_per_sample
        worse = sum(p.verdict == "worse" for p in rows)
        better = sum(p.verdict == "better" for p in rows)
        return ours < theirs and worse == 0, (f"evals {ours:.1f} vs {theirs:.1f}; better at {better}, worse at "
                                              f"{worse} of {len(rows)} levels")


def _verdict(ok: bool) -> str:
    return "confirmed" if ok else "not confirmed"


ALL = ("known_score", "digits", "sr", "sr_photos")
ANCHORS = ("tcfg", "cfgzerostar", "apg", "rescalecfg", "epsilon_scaling")

#: the claims of docs/evidence/protocol.md
CLAIMS: tuple[Any, ...] = (
    FrontierClaim("C1", "Tuned DiffIER gives better quality than plain CFG at the same adherence.", ALL,
                  "diffier", "cfg"),
    *(FrontierClaim(f"C2-{a}", f"Tuned DiffIER gives better quality than {a} at the same adherence.", ALL,
                    "diffier", a) for a in ANCHORS),
    *(FrontierClaim(f"C3-{m}", f"At equal evaluations per sample, tuned DiffIER gives better quality than {m} given "
                               "the same evaluations as more steps, at the same adherence.", ALL, "diffier",
                    f"{m}[equal_cost:diffier]", EQUAL_COST_DIFFIER) for m in ("cfg", *ANCHORS)),
    FrontierClaim("C4", "DiffIER capped at 1.5× plain CFG's evaluations gives better quality than plain CFG at the "
                        "same adherence.", ALL, "diffier_capped", "cfg"),
    *(FrontierClaim(f"C5-{m}", f"At equal evaluations per sample, capped DiffIER gives better quality than {m} given "
                               "the same evaluations as more steps, at the same adherence.", ALL, "diffier_capped",
                    f"{m}[equal_cost:diffier_capped]", EQUAL_COST_CAPPED) for m in ("cfg", *ANCHORS)),
    NotWorseClaim("C6", "Capped DiffIER is not worse than plain CFG at any adherence level.", ALL, "diffier_capped",
                  "cfg"),
    SameOmegaClaim("C7", "At cfg = 1, DiffIER with at_cfg_1 = correct gives better quality than plain sampling.",
                   ("known_score", "digits"), "diffier", "cfg", 1.0),
    DominanceClaim("C8", "The balanced preset dominates the node defaults: fewer evaluations and no worse quality at "
                         "any adherence level.", ALL, "diffier_balanced", "diffier_quality"),
    DominanceClaim("C8-fast", "The fast preset dominates the node defaults: fewer evaluations and no worse quality at "
                              "any adherence level.", ALL, "diffier_fast", "diffier_quality"),
    NotWorseClaim("C9", "On super-resolution, tuned DiffIER's realism (KID against HR images) is not worse than plain "
                        "CFG's at the same LR consistency.", ("sr", "sr_photos"), "diffier", "cfg", secondary=True),
    NotWorseClaim("C10", "DiffIER capped at 1.5× plain CFG's evaluations is not worse than DiffIER tuned without a cap "
                          "at any adherence level.", ALL, "diffier_capped", "diffier"),
)


def evaluate(document: Any, claims: Sequence[Any] = CLAIMS) -> list[ClaimResult]:
    """Every claim that concerns ``document``'s testbed, decided on each of its groups."""
    out = []
    for claim in claims:
        if document.testbed not in claim.testbeds:
            continue
        for group in document.groups:
            verdict, evidence = claim.decide(document, group)
            out.append(ClaimResult(claim.claim, group.group, claim.statement, claim.rule(), verdict, evidence))
    return out
