"""A newcomer's first minutes: the set-up `make test` and `make serve` do, and the README's first
example — queue a shipped demo workflow on a real ComfyUI server with one command and find its images.

The server is ComfyUI 0.3.75 started exactly as ``make serve`` starts it (``scripts.comfyui_runtime --serve``,
through scripts/comfy_server.py), the command is ``python -m scripts.queue_workflow <workflow>`` run as a
subprocess, and the workflows are the shipped files, unchanged (their models ship in ``demo/weights/``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts import queue_workflow as qw
from scripts.comfy_server import ComfyServer

pytestmark = [pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: installed by `make test` only: none of them may be needed by `make serve`
TEST_ONLY = {"pytest", "ruff", "playwright", "websocket-client", "scikit-learn", "matplotlib", "scikit-image",
             "mlxtend", "prdc", "torchmetrics", "imageio", "tifffile"}


def _requirements(path: Path) -> dict[str, str]:
    """``{normalised name: line}`` of a requirements file, following ``-r`` includes."""
    found: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found.update(_requirements(path.parent / line[3:].strip()))
        elif line:
            name = re.split(r"[<>=~!\[; ]", line, maxsplit=1)[0]
            found[re.sub(r"[-_.]+", "-", name).lower()] = line
    return found


# -- set-up ----------------------------------------------------------------------------------------
def test_serve_installs_comfyui_requirements_and_no_test_tools(comfy_root):
    serve = _requirements(REPO_ROOT / "requirements-serve.txt")
    test = _requirements(REPO_ROOT / "requirements-test.txt")
    comfy = _requirements(comfy_root / "requirements.txt")
    assert set(comfy) - {"torchaudio"} <= set(serve), set(comfy) - set(serve)  # everything the server imports
    assert not TEST_ONLY & set(serve), TEST_ONLY & set(serve)
    assert TEST_ONLY <= set(test) and set(serve) <= set(test)                # make test installs everything
    assert all("==" in line for line in serve.values()), serve                 # pinned: same stack everywhere
    makefile = (REPO_ROOT / "Makefile").read_text()
    serve_rule = re.search(r"^serve: (.*)$", makefile, re.M).group(1).split()
    runtime_rule = re.search(r"^runtime: (.*)$", makefile, re.M).group(1).split()
    assert serve_rule == ["runtime"] and runtime_rule == ["$(SERVE_STAMP)"], (serve_rule, runtime_rule)


def test_ci_runs_exactly_the_readme_commands():
    """.ci/run contains nothing the README's test command does not: CI=true, make lint, make test."""
    commands = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands == ["set -euo pipefail", "export CI=true", 'cd "$(dirname "${BASH_SOURCE[0]}")/.."',
                        "make lint", "make test"], commands
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in readme and "make serve" in readme
    assert re.search(r"^test: chromium ", (REPO_ROOT / "Makefile").read_text(), re.M)  # the browser step


def _make_chromium(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "--no-print-directory", "chromium"], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60)


def test_chromium_target_accepts_a_browser_or_says_what_is_wrong(tmp_path):
    fake = tmp_path / "my-chromium"
    fake.write_text("#!/bin/sh\n")
    assert _make_chromium(DIFFIER_CHROMIUM=str(fake)).returncode == 0
    bad = _make_chromium(DIFFIER_CHROMIUM=str(tmp_path / "missing"))
    assert bad.returncode != 0 and "DIFFIER_CHROMIUM" in bad.stderr and "not a file" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 2, bad.stderr  # one line, plus make's own "Error 1"


def test_output_folder_is_where_comfyui_saves(comfy_root):
    root = Path("/x/ComfyUI")
    assert qw.output_folder_from_argv(["main.py", "--port", "8188"], root) == root / "output"
    assert qw.output_folder_from_argv(["main.py", "--output-directory", "/o"], root) == Path("/o")
    assert qw.output_folder_from_argv(["main.py", "--output-directory=/o"], root) == Path("/o")
    assert qw.output_folder_from_argv(["main.py", "--base-directory", "/b"], root) == Path("/b/output")
    # `make serve` runs the cached tree, whose folder_paths saves to <tree>/output
    assert "os.path.join(base_path, \"output\")" in (comfy_root / "folder_paths.py").read_text()
    if not os.environ.get("COMFYUI_PATH"):
        assert qw.runtime_root().resolve() == comfy_root.resolve()


# -- the first example on a real server --------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    with ComfyServer() as s:
        yield s


def _queue(server: ComfyServer, workflow: Path | str, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.queue_workflow", str(workflow), "--server",
                           f"127.0.0.1:{server.port}", "--timeout", str(timeout), *extra],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout + 60)


def _saved(stdout: str) -> list[Path]:
    return [Path(line.split(" ", 1)[1].strip()) for line in stdout.splitlines() if line.startswith("saved ")]


def test_queue_the_digits_demo_with_one_command(server):
    """README: `.venv/bin/python -m scripts.queue_workflow workflows/demo_digits_api.json` on the `make serve`
    server: one digit image per batch element in ComfyUI's output folder, and the command says where. The
    batch (16) and steps (20) are cut to 2 and 6 with the command's own ``--set`` (CPU time: the shipped
    settings take minutes on 2 cores); the graph is otherwise as shipped."""
    done = _queue(server, "workflows/demo_digits_api.json", "--set", "4.batch_size=2", "--set", "5.steps=6")
    assert done.returncode == 0, done.stdout + done.stderr
    files = _saved(done.stdout)
    assert len(files) == 2, done.stdout
    for path in files:
        assert path.is_file() and path.parent == server.output_dir and path.name.startswith("DiffIER_demo_digits")
    arr = np.asarray(Image.open(files[0]))
    assert arr.shape == (112, 112, 3) and arr.max() > 128 and arr.min() < 32  # white strokes on black
    assert "DiffIER consistency: 6 steps corrected" in done.stdout, done.stdout


def test_queue_the_sr_demo_uploads_its_input(server):
    """The SR demo's LoadImage input is uploaded from workflows/input/ first, so it runs on any server."""
    done = _queue(server, "workflows/demo_sr_api.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (server.input_dir / "sr_demo_lr.png").read_bytes() == (REPO_ROOT / "workflows/input/sr_demo_lr.png"
                                                                  ).read_bytes()
    (path,) = _saved(done.stdout)
    lr = Image.open(REPO_ROOT / "workflows/input/sr_demo_lr.png")
    out = Image.open(path)
    assert path.is_file() and path.parent == server.output_dir
    assert out.size == (2 * lr.size[0], 2 * lr.size[1])  # the photo model is ×2


def test_queue_reports_a_bad_input_by_name_and_fails(server, tmp_path):
    prompt = json.loads((REPO_ROOT / "workflows/demo_digits_api.json").read_text())
    prompt["5"]["inputs"]["eta"] = 2.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(prompt))
    done = _queue(server, bad, timeout=60)
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if line.strip().startswith("node 5")]
    assert len(lines) == 1 and "input eta" in lines[0] and "2.0" in lines[0], done.stdout
    same = _queue(server, "workflows/demo_digits_api.json", "--set", "5.eta=2.0", timeout=60)
    assert same.returncode == 1 and "input eta" in same.stdout, same.stdout
    typo = _queue(server, "workflows/demo_digits_api.json", "--set", "5.etaa=0.1", timeout=60)
    assert typo.returncode == 1 and "no input 'etaa' on node '5'" in typo.stdout, typo.stdout
    ui = _queue(server, REPO_ROOT / "workflows" / "sd21_txt2img_guider.json", timeout=60)
    assert ui.returncode == 1 and "UI-format" in ui.stdout, ui.stdout
