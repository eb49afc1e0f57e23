"""``python -m sweep`` against real ComfyUI servers.

Two servers with the pack (and a third without it) on their own ports; the workflow is the shipped
``workflows/demo_digits_api.json`` (the embedded digits model, no download), made small (batch 1, few
steps). The sweep runs as the user runs it, a subprocess of the CLI. One server is SIGKILLed in the middle
of the sweep: every job must still finish exactly once (job records, the sweep's event log, the surviving
server's own ``/history``), and a rerun of the same command must not redo anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts.comfy_server import ComfyServer, free_port, start_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"
METHODS = ("cfg", "diffier")
OMEGAS = (1.5, 5.0)
PROMPTS = ("7",)  # a digit, set on the positive DiffIERDemoCondition (node 2, "3" in the workflow) with --prompt-input
SEEDS = (0, 1)
N_JOBS = len(METHODS) * len(OMEGAS) * len(PROMPTS) * len(SEEDS)
STEPS = 6


def digits_workflow(path: Path) -> Path:
    wf = json.loads((WORKFLOWS / "demo_digits_api.json").read_text())
    wf["4"]["inputs"]["batch_size"] = 1
    wf["5"]["inputs"]["steps"] = STEPS
    path.write_text(json.dumps(wf))
    return path


def sweep_cmd(servers: list[str], workflow: Path, out: Path, *extra: str, methods=METHODS) -> list[str]:
    cmd = [sys.executable, "-m", "sweep", "--workflow", str(workflow), "--out", str(out),
           "--cfg", ",".join(map(str, OMEGAS)), "--seeds", ",".join(map(str, SEEDS)), "--prompt-input", "2.digit",
           "--no-progress", "--job-timeout", "300", *extra]
    for url in servers:
        cmd += ["--server", url]
    for p in PROMPTS:
        cmd += ["--prompt", p]
    for m in methods:
        cmd += ["--method", m]
    return cmd


def run_cli(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def events(out: Path) -> list[dict]:
    path = out / "events.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def history_jobs(server: ComfyServer) -> list[str]:
    """The sweep job ids of every prompt in the server's own /history (from the prompt's extra_data)."""
    return [entry["prompt"][3].get("diffier_sweep_job") for entry in server.client.get_json("/history").values()]


@pytest.fixture(scope="module")
def servers():
    a, b = ComfyServer(), ComfyServer()
    bare = ComfyServer(extra_args=["--disable-all-custom-nodes"])  # a ComfyUI without the pack
    start_all([a, b, bare])
    try:
        yield a, b, bare
    finally:
        for s in (a, b, bare):
            s.kill()  # no graceful shutdown needed (SIGINT can take ComfyUI up to 30 s on a loaded machine)
            s.close()


def test_a_job_stuck_on_a_busy_server_times_out_and_moves(servers, tmp_path):
    a, b, _ = servers
    wf = digits_workflow(tmp_path / "digits.json")
    blocker = json.loads(wf.read_text())  # someone else's long prompt occupies A (A gets the CPU last)
    blocker["5"]["inputs"].update(steps=10000, seed=123)
    os.setpriority(os.PRIO_PGRP, a.proc.pid, 19)
    blocker_id = a.client.queue_prompt(blocker)
    try:
        out = tmp_path / "out"
        r = run_cli([sys.executable, "-m", "sweep", "--workflow", str(wf), "--out", str(out), "--cfg", "3",
                     "--seeds", "0,1", "--method", "cfg", "--server", a.url, "--server", b.url, "--max-inflight", "1",
                     "--queue-timeout", "10", "--no-progress"])
        assert r.returncode == 0, r.stdout + r.stderr
        ev = events(out)
        requeued = [e for e in ev if e["event"] == "requeued"]
        assert len(requeued) == 1 and requeued[0]["server"] == a.url and \
            "waited more than 10 s in the server's queue without starting" in requeued[0]["reason"]
        done = Counter((e["job"], e["server"]) for e in ev if e["event"] == "done")
        assert sorted(done.values()) == [1, 1] and {s for _, s in done} == {b.url}
        moved = requeued[0]["job"]
        assert moved in {j for j, _ in done}
        queue = a.client.get_json("/queue")  # the timed-out job was taken out of A's queue
        waiting = [item[3].get("diffier_sweep_job") for item in queue["queue_pending"] + queue["queue_running"]]
        assert moved not in waiting and moved not in history_jobs(a)
    finally:
        a.client.request("POST", "/queue", {"delete": [blocker_id]})
        a.client.request("POST", "/interrupt", {})
        deadline = time.monotonic() + 120
        while a.client.get_json("/queue")["queue_running"] and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not a.client.get_json("/queue")["queue_running"]


def test_sweep_survives_a_dead_server_and_resumes_without_redoing(servers, tmp_path):
    a, b, _ = servers
    wf = digits_workflow(tmp_path / "digits.json")
    out = tmp_path / "out"
    cmd = sweep_cmd([a.url, b.url], wf, out)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # kill A once it has finished a job and holds another one (the queue is kept filled)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            ev = events(out)
            if any(e["event"] == "done" and e["server"] == a.url for e in ev):
                a.kill()
                break
            time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not a.alive(), "server A was never killed: the sweep ended before A finished a job"
    assert proc.returncode == 0, stdout + stderr
    assert f"server {a.url} went down" in stderr

    ev = events(out)
    jobs = json.loads((out / "sweep_command.json").read_text())["jobs"]
    assert len(jobs) == len(set(jobs)) == N_JOBS
    done = Counter(e["job"] for e in ev if e["event"] == "done")
    assert set(done) == set(jobs) and set(done.values()) == {1}, done  # every job done, exactly once
    kill_at = next(i for i, e in enumerate(ev) if e["event"] == "server_down")
    done_after = {e["job"] for e in ev[kill_at:] if e["event"] == "done"}
    assert done_after, "no job was left to finish after the kill"
    requeued = [e for e in ev if e["event"] == "requeued"]
    assert requeued and all(e["server"] == a.url for e in requeued)
    assert all(any(e["event"] == "done" and e["job"] == r["job"] and e["server"] == b.url for e in ev)
               for r in requeued)  # what A held was finished by B

    records = {j: json.loads((out / "jobs" / f"{j}.json").read_text()) for j in jobs}
    assert {r["status"] for r in records.values()} == {"done"}
    on_b = [j for j, r in records.items() if r["server"] == b.url]
    on_a = [j for j, r in records.items() if r["server"] == a.url]
    assert on_a and on_b and len(on_a) + len(on_b) == N_JOBS
    b_history = history_jobs(b)
    assert len(b_history) == len(set(b_history)), "B ran a job twice"
    assert set(on_b) <= set(b_history) and not set(on_a) & set(b_history)
    pngs = sorted((out / "images").rglob("*.png"))
    assert len(pngs) == N_JOBS  # one image per job (batch 1), no duplicates

    # what B ran is the user's workflow plus the chain, with omega, prompt and seed set; nothing else changed
    user = json.loads(wf.read_text())
    checked = 0
    for entry in b.client.get_json("/history").values():
        if entry["prompt"][3].get("diffier_sweep_job") not in records:
            continue  # another test's sweep
        job = records[entry["prompt"][3]["diffier_sweep_job"]]
        checked += 1
        sent = entry["prompt"][2]
        assert sent["5"]["inputs"]["cfg"] == job["omega"] and sent["5"]["inputs"]["seed"] == job["seed"]
        assert sent["2"]["inputs"]["digit"] == job["prompt"]
        assert sent["5"]["inputs"]["eta"] == 0.0  # KSamplerDiffIER's own DiffIER off: the chain decides
        if job["method"] == "diffier":
            assert sent["diffier_sweep_1"]["class_type"] == "DiffIERGuider"
            assert sent["diffier_sweep_1"]["inputs"]["model"] == ["1", 0]
            assert sent["5"]["inputs"]["model"] == ["diffier_sweep_1", 0]
            assert sent["diffier_sweep_1"]["inputs"]["eta"] == 0.05  # filled from the server's defaults
        else:
            assert sent["5"]["inputs"]["model"] == ["1", 0] and "diffier_sweep_1" not in sent
        for node_id, node in user.items():
            changed = {"5": {"cfg", "seed", "eta", "model"}, "2": {"digit"}}.get(node_id, set())
            assert sent[node_id]["class_type"] == node["class_type"]
            assert {k: v for k, v in sent[node_id]["inputs"].items() if k not in changed} == \
                   {k: v for k, v in node["inputs"].items() if k not in changed}, node_id
        assert set(sent) - set(user) <= {"diffier_sweep_1"}
    assert checked == len(on_b)

    summary = json.loads((out / "sweep.json").read_text())
    assert len(summary["images"]) == N_JOBS and not summary["failed"]
    for img in summary["images"]:
        assert 0.0 <= img["clipped_fraction"] <= 1.0 and img["mean_saturation"] == 0.0  # grey digits
        assert img["wall_s_per_image"] > 0 and img["exec_s_per_image"] > 0
    assert len(summary["cells"]) == len(METHODS) * len(OMEGAS)
    for cell in summary["cells"]:
        assert set(cell["diversity_per_prompt"]) == {"0"} and cell["diversity"] > 0  # the seeds differ
    assert set(summary["servers"]) == {a.url, b.url}
    with Image.open(out / "grid.png") as grid:
        assert grid.width > len(METHODS) * 96 and grid.height > len(OMEGAS) * 96
    assert len(list((out / "grids").glob("*.png"))) == len(PROMPTS) * len(SEEDS)
    with Image.open(out / "metrics.png") as plot:
        assert plot.format == "PNG"
    # the images of the two methods differ (the chain did something)
    by_key = {(i["method"], i["omega"], i["key"]): i["path"] for i in summary["images"]}
    pairs = [(by_key[("cfg", w, k)], by_key[("diffier", w, k)]) for (m, w, k) in by_key if m == "cfg"]
    assert any(np.abs(np.asarray(Image.open(out / p), float) - np.asarray(Image.open(out / q), float)).max() > 0
               for p, q in pairs)

    # the same command again: nothing is redone, no server is asked for anything (A is still dead)
    before_b, before_events = len(history_jobs(b)), len(ev)
    stamps = {j: (out / "jobs" / f"{j}.json").stat().st_mtime_ns for j in jobs}
    again = run_cli(cmd)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{N_JOBS} already done" in again.stdout and "0 to run" in again.stdout
    assert len(history_jobs(b)) == before_b and len(events(out)) == before_events
    assert stamps == {j: (out / "jobs" / f"{j}.json").stat().st_mtime_ns for j in jobs}

    # one record lost (an interrupted run): the rerun finishes only that job, on the live server
    lost = on_a[0]
    (out / "jobs" / f"{lost}.json").unlink()
    resumed = run_cli(cmd + ["--reference", str(out / "images" / "cfg" / "w1.5")])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"server {a.url} unreachable" in resumed.stderr  # named, and the sweep goes on with B
    assert f"{N_JOBS - 1} already done" in resumed.stdout and "1 to run" in resumed.stdout
    assert Counter(history_jobs(b))[lost] == 1 and len(history_jobs(b)) == before_b + 1
    assert json.loads((out / "jobs" / f"{lost}.json").read_text())["server"] == b.url
    # --reference: cfg at omega 1.5 is its own reference (SSIM 1), the other cells are compared with it
    cells = {(c["method"], c["omega"]): c for c in json.loads((out / "sweep.json").read_text())["cells"]}
    assert cells[("cfg", 1.5)]["ssim"] == pytest.approx(1.0) and cells[("cfg", 1.5)]["psnr"] == 100.0
    assert cells[("diffier", 5.0)]["ssim"] < 1.0 and cells[("diffier", 5.0)]["psnr"] < 100.0
    assert all("fd" not in c for c in cells.values())  # 2 images a cell: too few for FD

    # a job error (a setting the server rejects) fails those jobs, keeps every saved result
    bad = run_cli(sweep_cmd([b.url], wf, out, methods=(*METHODS, "bad=diffier:eta=5")))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    summary = json.loads((out / "sweep.json").read_text())
    assert len(summary["images"]) == N_JOBS
    assert len(summary["failed"]) == N_JOBS // len(METHODS)
    assert all(f["method"] == "bad" and "eta" in f["error"] for f in summary["failed"]), summary["failed"]
    assert all(json.loads((out / "jobs" / f"{j}.json").read_text())["status"] == "done" for j in jobs)


def test_setup_errors_name_what_is_wrong(servers, tmp_path):
    _, b, bare = servers
    wf = digits_workflow(tmp_path / "digits.json")
    queued_before = len(b.client.get_json("/history"))

    dead = f"http://127.0.0.1:{free_port()}"
    r = run_cli(sweep_cmd([dead], wf, tmp_path / "o1"))
    assert r.returncode == 2 and f"server {dead} unreachable" in r.stderr, r.stderr

    r = run_cli(sweep_cmd([bare.url], wf, tmp_path / "o2"))
    assert r.returncode == 2, r.stderr
    assert f"server {bare.url} has no DiffIERGuider node: the ComfyUI-DiffIER pack is not installed" in r.stderr

    missing = json.loads(wf.read_text())
    missing["1"]["inputs"]["model_name"] = "my_model.safetensors"
    (tmp_path / "missing.json").write_text(json.dumps(missing))
    r = run_cli(sweep_cmd([b.url], tmp_path / "missing.json", tmp_path / "o3"))
    assert r.returncode == 2, r.stderr
    assert "workflow node 1 (DiffIERDemoModelLoader): missing model file: model_name = 'my_model.safetensors'" \
        in r.stderr and "digits_diffusion.safetensors" in r.stderr  # what the server does have

    r = run_cli([sys.executable, "-m", "sweep", "--server", b.url, "--workflow",
                 str(WORKFLOWS / "api" / "sd21_txt2img_guider.json"), "--out", str(tmp_path / "o4"), "--no-progress"])
    assert r.returncode == 2 and "missing model file: ckpt_name = 'v2-1_768-ema-pruned.safetensors'" in r.stderr, \
        r.stderr

    r = run_cli([sys.executable, "-m", "sweep", "--server", b.url, "--workflow",
                 str(WORKFLOWS / "api" / "guidance_sweep.json"), "--out", str(tmp_path / "o5")])
    assert r.returncode == 2 and "the workflow has 8 sampler nodes" in r.stderr and "--sampler" in r.stderr, r.stderr

    no_sampler = {k: v for k, v in json.loads(wf.read_text()).items() if k != "5"}
    (tmp_path / "nosampler.json").write_text(json.dumps(no_sampler))
    r = run_cli(sweep_cmd([b.url], tmp_path / "nosampler.json", tmp_path / "o6"))
    assert r.returncode == 2 and "the workflow has no sampler node" in r.stderr, r.stderr
    assert len(b.client.get_json("/history")) == queued_before  # a setup error queues nothing
