"""The typed records of the evidence JSON documents: the tuning document (every setting's curve and the choices) and
the confirmatory document (every cell, the frontiers, the claims), and how they are read back.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .frontier import Frontier, Level
from .records import Cost, to_json

__all__ = ["SCHEMA", "MetricInfo", "CommandRecord", "CurvePoint", "SettingCurve", "MethodChoice", "TuningGroup",
           "ProtocolRecord", "DocumentBase", "TuningDocument", "Difference", "CellRecord", "ConfigResult",
           "GroupResult", "ClaimResult", "EvidenceDocument", "write_document", "read_json"]

SCHEMA = "diffier.evidence/v1"


@dataclasses.dataclass
class MetricInfo:
    """A metric's field in the cell scores, its direction and label."""

    field: str
    lower_is_better: bool | None
    label: str


@dataclasses.dataclass
class CommandRecord:
    """One command that filled the cache: what it ran and how long it took."""

    command: str
    phase: str
    config: str
    shard: str
    cells: int
    runtime_s: float
    finished: str


@dataclasses.dataclass
class ProtocolRecord:
    """The protocol a document was made under (grids, configurations, seeds, sizes, rules)."""

    omegas: list[float]
    configs: list[str]
    tuning_config: str
    equal_cost: dict[str, list[str]]
    cap: float
    tie_tolerance: float
    budget: int
    settings_per_method: dict[str, int]
    tuning_seeds: list[int]
    test_seeds: list[int]
    tuning_samples_per_seed: int
    test_samples_per_seed: int
    bootstrap_reps: int
    at_cfg_1_supported: bool
    selection_rule: str


@dataclasses.dataclass
class CurvePoint:
    """A tuning cell of one setting: its ω, metrics and cost."""

    omega: float
    adherence: float
    quality: float
    secondary: float | None
    diversity: float
    evals_per_sample: float
    calls_per_step: float


@dataclasses.dataclass
class SettingCurve:
    """One setting of one method on the tuning seeds: its patch nodes, curve and selection score."""

    method: str
    label: str
    setting: dict[str, Any]
    points: list[CurvePoint]
    selection_score: float
    within_cap: bool


@dataclasses.dataclass
class MethodChoice:
    """A tuned method's choice: the setting, the candidates, their scores and the tie."""

    method: str
    chosen: str
    tied: list[str]
    candidates: list[str]
    scores: dict[str, float]


@dataclasses.dataclass
class TuningGroup:
    """One group's tuning: the adherence levels, the tie tolerance and unreached penalty, every curve, the choices."""

    group: str
    levels: list[Level]
    penalty: float
    tolerance: float
    curves: list[SettingCurve]
    choices: list[MethodChoice]


@dataclasses.dataclass
class DocumentBase:
    """What every evidence document starts with: its kind, testbed, protocol, metrics, testbed configuration, the
    commands that filled the cache and their run time (``runtime_s``; ``sampling_cpu_s``: the CPU time of its cells'
    sampling)."""

    schema: str
    kind: str
    testbed: str
    quick: bool
    protocol: ProtocolRecord
    quality: MetricInfo
    secondary: MetricInfo | None
    adherence: MetricInfo
    diversity: MetricInfo
    testbed_config: dict[str, Any]
    commands: list[CommandRecord]
    runtime_s: float
    sampling_cpu_s: float


@dataclasses.dataclass
class TuningDocument(DocumentBase):
    """``tuning_<testbed>.json``."""

    groups: list[TuningGroup]


@dataclasses.dataclass
class Difference:
    """A paired difference (this cell − plain CFG's at the same ω) with its 95 % bootstrap interval."""

    value: float
    lo: float
    hi: float


@dataclasses.dataclass
class CellRecord:
    """One cell of the confirmatory run: the job, its cost, every metric, and the same-ω difference from plain CFG.

    Args:
        line: the frontier line it belongs to (``method`` or ``method[variant]``).
        scores: the testbed's scores record (every metric; estimates with their intervals).
        quality_vs_cfg, adherence_vs_cfg: this cell minus plain CFG's base cell at the same ω (None for plain CFG).
    """

    line: str
    method: str
    variant: str
    setting: str
    config: str
    sampler: str
    omega: float
    at_cfg_1: str | None
    cost: Cost
    scores: Any
    quality_vs_cfg: Difference | None
    adherence_vs_cfg: Difference | None


@dataclasses.dataclass
class ConfigResult:
    """One base configuration of one group: every cell and the frontiers (primary and secondary quality)."""

    config: str
    cells: list[CellRecord]
    frontier: Frontier
    secondary_frontier: Frontier | None


@dataclasses.dataclass
class GroupResult:
    """One group of the confirmatory run: the chosen settings and every configuration."""

    group: str
    chosen: dict[str, str]
    equal_cost_steps: dict[str, dict[str, int]]
    configs: list[ConfigResult]


@dataclasses.dataclass
class ClaimResult:
    """One claim of docs/evidence/protocol.md, decided by its rule on one group of this document."""

    claim: str
    group: str
    statement: str
    rule: str
    verdict: str
    evidence: list[str]


@dataclasses.dataclass
class EvidenceDocument(DocumentBase):
    """``confirmatory_<testbed>.json``."""

    tuning_document: str
    groups: list[GroupResult]
    claims: list[ClaimResult]
    #: the protocol's configurations whose test cells have not all run (a claim they cover waits for them)
    configs_pending: list[str] = dataclasses.field(default_factory=list)


def write_document(path: Path, document: Any) -> Path:
    """``document`` (a record) as indented JSON (NaN written as NaN)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(to_json(document), indent=1, allow_nan=True))
    tmp.replace(path)
    return path


def read_json(path: Path) -> dict[str, Any]:
    """A document as JSON data."""
    return json.loads(Path(path).read_text())
