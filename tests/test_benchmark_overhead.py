"""Smoke run of ``python -m benchmarks.overhead --quick``: the JSON, and the deterministic budgets.

Wall times are measured by the benchmark and never asserted here; the host-sync counts, the peak
working set and the model-evaluation counts are deterministic, so they are.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("overhead")
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.overhead", "--quick", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (out / "overhead.png").stat().st_size > 10_000
    return json.loads((out / "overhead.json").read_text())


def test_schema(result):
    assert result["schema"] == 1 and result["quick"] is True
    for row in result["kernel"]:
        for key in ("mode", "batch", "dtype", "seconds", "unet_eval_seconds", "ratio_to_unet_eval",
                    "host_syncs_per_step", "peak_float32_latent_buffers", "keeps_autograd_graph"):
            assert key in row
        assert math.isfinite(row["seconds"]) and row["seconds"] > 0
    assert set(result["end_to_end"]["methods"]) == {"ksampler", "diffier-paper", "diffier-consistency"}


def test_sync_and_memory_budgets(result):
    for row in result["kernel"]:
        assert row["host_syncs_per_step"] == {"paper": 0, "consistency": 1}[row["mode"]]
        assert row["peak_float32_latent_buffers"] <= 4.0
        assert row["keeps_autograd_graph"] is False


def test_model_evaluation_counts(result):
    m = result["end_to_end"]["methods"]
    steps = result["end_to_end"]["steps"]
    assert m["ksampler"]["model_rows_per_sample"] == 2 * steps            # cond + uncond per step
    assert m["diffier-paper"]["model_rows_per_sample"] == 2 * steps       # paper adds none
    extra = m["diffier-consistency"]["extra_model_evals"]
    assert m["diffier-consistency"]["model_rows_per_sample"] == 2 * steps + 2 * extra
    assert steps <= extra <= 4 * steps
