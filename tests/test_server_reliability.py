"""On a real ComfyUI server: bad API input, /interrupt, a shared MODEL, load and soak, restart.

All traffic is to 127.0.0.1. The model is the pack's embedded digits demo (no download). The soak
figures are written to ``tests/artifacts/soak.json`` (quoted in docs/RELIABILITY.md).

Bit-identical claims (soak results vs warm-up, plain branch in a shared graph, restart) compare runs of the
same arithmetic on one machine (one server process, or the same server restarted): same-machine claims.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from scripts.comfy_http import PromptRejected
from scripts.comfy_server import ComfyServer, PromptFailed

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

SOAK_PROMPTS = 100
SOAK_CLIENTS = 4
MODES = ("consistency", "paper", "plain")
SAMPLERS = ("euler", "dpmpp_2m", "euler_ancestral")
SEEDS = (0, 1, 2)


def digits_prompt(mode: str = "consistency", sampler: str = "euler", seed: int = 0, steps: int = 4,
                  prefix: str = "soak", **diffier) -> dict:
    """Demo model → KSampler or KSamplerDiffIER → SaveLatent (exact float output for bit comparisons)."""
    sampler_inputs = {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": 3.0, "sampler_name": sampler,
                      "scheduler": "normal", "positive": ["2", 0], "negative": ["3", 0],
                      "latent_image": ["4", 0], "denoise": 1.0}
    if mode == "plain":
        sampler_node = {"class_type": "KSampler", "inputs": sampler_inputs}
    else:
        sampler_node = {"class_type": "KSamplerDiffIER", "inputs": {
            **sampler_inputs, "mode": mode, "eta": 0.05, "threshold": 0.001, "max_iters": 4,
            "start_percent": 0.0, "end_percent": 1.0, **diffier}}
    return {
        "1": {"class_type": "DiffIERDemoModelLoader", "inputs": {"model_name": "digits_diffusion.safetensors"}},
        "2": {"class_type": "DiffIERDemoCondition", "inputs": {"model": ["1", 0], "digit": "7"}},
        "3": {"class_type": "DiffIERDemoCondition", "inputs": {"model": ["1", 0], "digit": "unconditional"}},
        "4": {"class_type": "DiffIERDemoEmptyLatent", "inputs": {"batch_size": 1}},
        "5": sampler_node,
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": prefix}},
    }


def latent_of(server: ComfyServer, result, node: str = "6") -> torch.Tensor:
    record = result.outputs[node]["latents"][0]
    return load_file(str(server.output_file(record)))["latent_tensor"]


@pytest.fixture(scope="module")
def server():
    with ComfyServer() as s:
        yield s


# -- bad input through the API -----------------------------------------------------------------------
BAD_INPUTS = [
    ("eta", 2.0), ("eta", -0.1), ("eta", "fast"),
    ("threshold", -1e-3), ("threshold", float("inf")), ("max_iters", 1000), ("max_iters", "four"),
    ("mode", "fast"), ("start_percent", 1.5), ("end_percent", -0.5),
]
#: combo inputs: ComfyUI 0.3.75 does not check V3 combos, the nodes' validate_inputs does, and ComfyUI reports
#: a failing validate_inputs against each of its arguments (KSamplerDiffIER's: these three, as sent)
COMBOS = {"sampler_name", "scheduler", "mode"}


@pytest.mark.parametrize("name, value", BAD_INPUTS, ids=[f"{n}={v!r}" for n, v in BAD_INPUTS])
def test_bad_input_is_a_validation_error_naming_the_input(server, name, value):
    """Rejected at queue time; a non-combo input's error is attached to that input alone."""
    prompt = digits_prompt()
    prompt["5"]["inputs"][name] = value
    with pytest.raises(PromptRejected) as info:
        server.client.queue_prompt(prompt)
    assert info.value.status == 400
    errors = info.value.body["node_errors"]["5"]["errors"]
    assert name in json.dumps(errors), errors
    named = {e["extra_info"]["input_name"] for e in errors}
    assert named == (COMBOS if name in COMBOS else {name}), errors
    if not isinstance(value, str):
        assert any(str(value) in e["message"] for e in errors), errors   # "Value 2.0 bigger than max of 1.0"
    assert server.alive()


def test_fractional_int_is_truncated_by_comfyui(server):
    """ComfyUI converts a number sent for an INT input with int() before validation: 2.5 runs as 2."""
    prompt = digits_prompt(seed=13, prefix="fractional", threshold=0.0)
    prompt["5"]["inputs"]["max_iters"] = 2.5
    result = server.run(prompt, timeout=300)
    text = " ".join(result.outputs["5"]["text"])
    assert "2.00 mean iterations" in text, text


@pytest.mark.parametrize("bad, needles", [
    ({"eta": float("nan")}, ("'eta'", "nan", "[0.0, 1.0]")),
    ({"threshold": float("nan")}, ("'threshold'", "nan")),
    ({"start_percent": 0.8, "end_percent": 0.2}, ("'start_percent'", "end_percent (0.2)")),
], ids=["eta=nan", "threshold=nan", "start>end"])
def test_what_min_max_cannot_judge_fails_when_the_node_runs(server, bad, needles):
    """NaN passes ComfyUI's min/max comparisons and start > end spans two inputs: the node rejects them when it
    runs, before sampling, with DiffIER's message naming the input and the allowed range."""
    prompt = digits_prompt(seed=14, prefix="rejected_at_run")
    prompt["5"]["inputs"].update(bad)
    with pytest.raises(PromptFailed) as info:
        server.run(prompt, timeout=300)
    text = str(info.value)
    assert "DiffIERParameterError" in text and all(n in text for n in needles), text
    assert server.alive()


def test_server_keeps_serving_after_bad_prompts(server):
    result = server.run(digits_prompt(seed=11, prefix="after_bad"), timeout=300)
    assert torch.isfinite(latent_of(server, result)).all()


# -- /interrupt while the inner loop runs -------------------------------------------------------------
def test_interrupt_stops_promptly_and_next_prompt_succeeds(server):
    slow = digits_prompt(steps=400, seed=5, prefix="interrupt", threshold=0.0, max_iters=20)
    seen: dict[str, float] = {}
    interrupted = threading.Event()

    def on_message(msg):
        kind = msg.get("type")
        if kind == "progress" and "progress" not in seen:
            seen["progress"] = time.monotonic()
            server.client.request("POST", "/interrupt", {})
            seen["interrupt_sent"] = time.monotonic()
        if kind == "execution_interrupted":
            seen["interrupted"] = time.monotonic()
            interrupted.set()

    with pytest.raises(PromptFailed):
        server.run(slow, timeout=300, on_message=on_message)
    assert interrupted.is_set(), "no execution_interrupted message"
    assert seen["interrupted"] - seen["interrupt_sent"] < 30.0   # 400 steps × 21 evaluations would take minutes
    result = server.run(digits_prompt(seed=12, prefix="after_interrupt"), timeout=300)
    assert torch.isfinite(latent_of(server, result)).all()


# -- one MODEL, two branches ----------------------------------------------------------------------------
def test_shared_model_unpatched_branch_is_unaffected(server):
    both = digits_prompt(mode="plain", seed=3, prefix="branch_plain")
    both["7"] = {"class_type": "DiffIERGuider", "inputs": {"model": ["1", 0], "mode": "consistency", "eta": 0.05,
                                                          "threshold": 0.001, "max_iters": 4, "start_percent": 0.0,
                                                          "end_percent": 1.0}}
    patched_sampler = copy.deepcopy(both["5"])
    patched_sampler["inputs"]["model"] = ["7", 0]
    both["8"] = patched_sampler
    both["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": "branch_diffier"}}
    two = server.run(both, timeout=300)
    alone = server.run(digits_prompt(mode="plain", seed=3, prefix="alone", steps=4), timeout=300)
    plain_in_graph, patched_in_graph = latent_of(server, two, "6"), latent_of(server, two, "9")
    assert torch.equal(plain_in_graph, latent_of(server, alone, "6"))
    assert not torch.equal(plain_in_graph, patched_in_graph)


# -- load and soak ---------------------------------------------------------------------------------------
def _rss(pid: int) -> int:
    proc = psutil.Process(pid)
    return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))


def test_soak_and_restart(server):
    combos = list(itertools.product(MODES, SAMPLERS, SEEDS))
    plan = [combos[i % len(combos)] for i in range(SOAK_PROMPTS)]
    # warm-up: every combination once (model load, caches, allocator), then measure
    warm = {}
    for mode, sampler, seed in combos:
        r = server.run(digits_prompt(mode, sampler, seed, prefix=f"warm_{mode}_{sampler}_{seed}"), timeout=300)
        warm[(mode, sampler, seed)] = latent_of(server, r)
    rss_after_warmup = _rss(server.proc.pid)
    results: dict[int, tuple[tuple, torch.Tensor, float]] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        for job in range(index, SOAK_PROMPTS, SOAK_CLIENTS):
            mode, sampler, seed = plan[job]
            try:
                r = server.run(digits_prompt(mode, sampler, seed, prefix=f"soak_{job}"), timeout=600)
                latent = latent_of(server, r)
                with lock:
                    results[job] = ((mode, sampler, seed), latent, r.seconds)
            except Exception as exc:  # recorded and asserted below, not swallowed
                with lock:
                    failures.append(f"prompt {job} {plan[job]}: {exc!r}"[:500])

    t0 = time.monotonic()
    with ThreadPoolExecutor(SOAK_CLIENTS) as pool:
        list(pool.map(client, range(SOAK_CLIENTS)))
    duration = time.monotonic() - t0
    rss_end = _rss(server.proc.pid)
    growth = (rss_end - rss_after_warmup) / rss_after_warmup

    mismatched = [job for job, (key, latent, _) in results.items() if not torch.equal(latent, warm[key])]
    nonfinite = [job for job, (_, latent, _) in results.items() if not torch.isfinite(latent).all()]

    # restart: a fresh server process gives the same bits
    key = ("consistency", "euler_ancestral", 2)
    server.stop()
    server.start()
    again = latent_of(server, server.run(digits_prompt(*key, prefix="after_restart"), timeout=300))
    restart_identical = torch.equal(again, warm[key])
    restart_max_diff = float((again - warm[key]).abs().max())

    figures = {
        "prompts": SOAK_PROMPTS, "clients": SOAK_CLIENTS, "completed": len(results), "failures": failures,
        "distinct_prompts": len(combos), "bit_identical_to_warmup": len(results) - len(mismatched),
        "nonfinite_outputs": len(nonfinite), "duration_s": round(duration, 1),
        "median_prompt_s": round(sorted(r[2] for r in results.values())[len(results) // 2], 3) if results else None,
        "rss_after_warmup_mb": round(rss_after_warmup / 2**20, 1), "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_growth": round(growth, 4), "restart_bit_identical": restart_identical,
        "restart_max_abs_diff": restart_max_diff,
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "soak.json").write_text(json.dumps(figures, indent=2))
    assert failures == [] and len(results) == SOAK_PROMPTS, figures
    assert nonfinite == [] and mismatched == [], figures
    assert growth <= 0.05, figures
    assert restart_identical, figures
    assert math.isfinite(duration)
