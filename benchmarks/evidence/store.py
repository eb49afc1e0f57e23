"""The on-disk cache of finished runs and scored cells, so that a killed command resumes where it stopped and the
report assembles every command's cells.

A *run* is one KSampler batch (one seed of one cell); its file holds the bed's per-sample record as arrays and its
cost, under a key hashed from everything that decides its samples (testbed, group, phase and its sizes, patch nodes,
sampler, steps, scheduler, ω, seed). A *cell's scores* are keyed by its runs' keys, the scoring version and the
bootstrap resamples. Files are written to a temporary name and renamed, so two commands can share the cache.
``numpy.savez`` without pickles; every file is read back with ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from pathlib import Path
from typing import Any

import numpy as np

from ..testbeds.base import record_arrays, record_from_arrays
from .records import Estimate

__all__ = ["RUN_FORMAT", "SCORING_VERSION", "key_of", "Store"]

#: bump when a bed's sampling changes what a cached run holds
RUN_FORMAT = 1
#: bump when a bed's scoring changes (cached scores are recomputed from the cached runs)
SCORING_VERSION = 1


def key_of(content: Any) -> str:
    """A stable hash of JSON-able ``content``."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class Store:
    """Runs and cell scores of one testbed under ``root/<testbed>/``.

    Args:
        root: the cache folder (``.cache/evidence`` of the repository by default).
        testbed: the testbed's name.
    """

    def __init__(self, root: Path, testbed: str) -> None:
        self.folder = Path(root) / testbed

    # -- runs ------------------------------------------------------------------------------------------
    def run_path(self, key: str) -> Path:
        return self.folder / "runs" / f"{key}.npz"

    def has_run(self, key: str) -> bool:
        return self.run_path(key).exists()

    def save_run(self, key: str, record: Any, cost: dict[str, float], meta: dict[str, Any]) -> None:
        arrays = {f"record.{k}": v for k, v in record_arrays(record).items()}
        arrays["cost"] = np.asarray([cost["evals_per_sample"], cost["calls"], cost["wall_s"], cost["cpu_s"]])
        arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True, default=str))
        _write(self.run_path(key), arrays)

    def load_run(self, key: str, record_type: type) -> tuple[Any, dict[str, float]]:
        with np.load(self.run_path(key), allow_pickle=False) as data:
            record = record_from_arrays(record_type, {k.removeprefix("record."): data[k] for k in data.files
                                                      if k.startswith("record.")})
            evals, calls, wall, cpu = (float(v) for v in data["cost"])
        return record, {"evals_per_sample": evals, "calls": calls, "wall_s": wall, "cpu_s": cpu}

    # -- scores ----------------------------------------------------------------------------------------
    def scores_path(self, key: str) -> Path:
        return self.folder / "scores" / f"{key}.npz"

    def save_scores(self, key: str, scores: Any) -> None:
        arrays: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(scores):
            value = getattr(scores, f.name)
            if isinstance(value, Estimate):
                arrays[f"{f.name}.estimate"] = np.asarray([value.value, value.lo, value.hi])
                arrays[f"{f.name}.replicates"] = np.asarray(value.replicates, dtype=np.float64)
            else:
                arrays[f.name] = np.asarray(value)
        _write(self.scores_path(key), arrays)

    def load_scores(self, key: str, scores_type: type) -> Any | None:
        path = self.scores_path(key)
        if not path.exists():
            return None
        hints = typing.get_type_hints(scores_type)
        out = {}
        with np.load(path, allow_pickle=False) as data:
            for f in dataclasses.fields(scores_type):
                if hints[f.name] is Estimate:
                    value, lo, hi = (float(v) for v in data[f"{f.name}.estimate"])
                    out[f.name] = Estimate(value, lo, hi, data[f"{f.name}.replicates"])
                else:
                    out[f.name] = hints[f.name](data[f.name].item())
        return scores_type(**out)
