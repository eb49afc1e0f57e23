"""A real ComfyUI server in a subprocess, driven over its HTTP and WebSocket API (127.0.0.1 only).

For the tests that need a live server (workflow, browser, load and soak tests) and the UI workflow regeneration
(``workflows/tools/make_ui_workflows.py``)::

    with ComfyServer(models_dir=..., input_dir=..., output_dir=...) as server:
        result = server.run(api_prompt, timeout=300)      # POST /prompt, follow /ws, GET /history
        result.outputs["7"]["images"]                     # the history entry's outputs
        server.client.get_json("/queue")                  # any other call: the repository's one client
        server.log_text()                                 # everything the server printed

The server is ``python -m scripts.comfyui_runtime --serve`` (ComfyUI 0.3.75 with this pack linked in,
``--cpu`` without CUDA) on a free port, with models read from ``models_dir`` (an extra model paths
config: ``models_dir/checkpoints``, ``models_dir/vae``, ...), and input, output, temp and user folders
outside the ComfyUI tree. stdout and stderr go to ``log_path``. Every wait is bounded. Its ``client`` is
``scripts/comfy_http.py``'s ``ComfyClient``; a refused prompt raises that module's ``PromptRejected``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import websocket

from .comfy_http import ComfyClient, execution_error, is_last_message, prompt_message

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
log = logging.getLogger("diffier.comfy_server")

__all__ = ["ComfyServer", "PromptFailed", "RunResult", "free_port", "start_all"]


class PromptFailed(Exception):
    """The prompt was accepted but its execution failed or timed out."""


@dataclass
class RunResult:
    prompt_id: str
    history: dict  # the /history/{prompt_id} entry
    messages: list[dict] = field(default_factory=list)  # JSON WebSocket messages of this prompt, in order
    seconds: float = 0.0

    @property
    def outputs(self) -> dict:
        return self.history.get("outputs", {})

    def executed(self, node_id: str) -> list[dict]:
        """``output`` payloads of the ``executed`` messages for ``node_id``."""
        return [m["data"]["output"] for m in self.messages
                if m.get("type") == "executed" and str(m["data"].get("node")) == str(node_id)]

    def progress(self, node_id: str | None = None) -> list[tuple[int, int]]:
        """``(value, max)`` of the ``progress`` messages (of ``node_id`` if given)."""
        return [(m["data"]["value"], m["data"]["max"]) for m in self.messages if m.get("type") == "progress"
                and (node_id is None or str(m["data"].get("node")) == str(node_id))]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM when the test process dies (a killed pytest leaves no orphan)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_all(servers: list[ComfyServer], timeout: float = 240.0) -> list[ComfyServer]:
    """Launch several servers at once from this thread and wait until all answer (stops them all on failure)."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready(timeout)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


class ComfyServer:
    """One ComfyUI server process. Use as a context manager, or call ``start()`` / ``stop()``.

    Args:
        models_dir: folder with ComfyUI's model sub-folders (``checkpoints``, ...), added through
            ``--extra-model-paths-config``.
        input_dir, output_dir: ComfyUI's input and output folders (created if missing).
        log_path: where the server's stdout and stderr go (default: ``<output_dir>/../comfyui-server.log``).
        extra_args: more ``main.py`` arguments.
        env: extra environment variables for the server process.
    """

    def __init__(self, models_dir: Path | None = None, input_dir: Path | None = None,
                 output_dir: Path | None = None, log_path: Path | None = None,
                 extra_args: list[str] | tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="diffier-comfy-")
        tmp = Path(self._tmp.name)
        self.models_dir = Path(models_dir) if models_dir else tmp / "models"
        self.input_dir = Path(input_dir) if input_dir else tmp / "input"
        self.output_dir = Path(output_dir) if output_dir else tmp / "output"
        self.temp_dir = tmp / "temp"
        self.user_dir = tmp / "user"
        self.log_path = Path(log_path) if log_path else tmp / "comfyui-server.log"
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.port: int | None = None
        self.client: ComfyClient | None = None    # once launched
        self.proc: subprocess.Popen | None = None
        self._log_fh = None

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        config = Path(self._tmp.name) / "extra_model_paths.yaml"
        folders = ("checkpoints", "vae", "clip", "text_encoders", "diffusion_models", "loras", "upscale_models",
                   "embeddings")
        config.write_text("diffier_test:\n" f"    base_path: {json.dumps(str(self.models_dir))}\n"
                          + "".join(f"    {f}: {f}\n" for f in folders))
        return [sys.executable, "-m", "scripts.comfyui_runtime", "--serve", "--port", str(self.port), "--",
                "--extra-model-paths-config", str(config), "--input-directory", str(self.input_dir),
                "--output-directory", str(self.output_dir), "--temp-directory", str(self.temp_dir),
                "--user-directory", str(self.user_dir), "--database-url", "sqlite:///:memory:",
                "--disable-api-nodes", *self.extra_args]

    def start(self, timeout: float = 240.0) -> ComfyServer:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> ComfyServer:
        """Spawn the server process without waiting for it (``wait_ready`` waits). The server dies with the
        *thread* that launched it (PR_SET_PDEATHSIG), so launch long-lived servers from the main thread."""
        for d in (self.models_dir, self.input_dir, self.output_dir, self.temp_dir, self.user_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.client = ComfyClient(self.url, timeout=60.0)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self._log_fh = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(), cwd=str(REPO_ROOT), stdout=self._log_fh,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        return self

    def wait_ready(self, timeout: float = 240.0) -> ComfyServer:
        """Wait until a launched server answers ``/system_stats`` (raises with its log if it exits or stalls)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} while starting; log:\n"
                                   f"{self.log_text()[-6000:]}")
            if self.client.alive():
                log.info("ComfyUI is serving on %s", self.url)
                return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f} s; log:\n{self.log_text()[-6000:]}")

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def kill(self) -> None:
        """SIGKILL the server's process group at once (a crash: no shutdown, no answer on open connections)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- one prompt -------------------------------------------------------------------------------
    def run(self, prompt: dict, timeout: float = 600.0, on_message=None) -> RunResult:
        """Queue ``prompt``, follow it on ``/ws`` until it finishes, and return its ``/history`` entry.

        Raises ``comfy_http.PromptRejected`` (validation), :class:`PromptFailed` (execution error, timeout or
        a dead server). ``on_message(msg)`` sees every JSON message of this prompt.
        """
        client_id = uuid.uuid4().hex
        start = time.monotonic()
        deadline = start + timeout
        ws = self.client.connect(client_id, timeout=30.0)
        messages: list[dict] = []
        try:
            prompt_id = self.client.queue_prompt(prompt, client_id)
            while True:
                if time.monotonic() > deadline:
                    raise PromptFailed(f"prompt {prompt_id} did not finish within {timeout:.0f} s")
                if not self.alive():
                    raise PromptFailed(f"the server died while running {prompt_id}:\n{self.log_text()[-6000:]}")
                ws.settimeout(max(1.0, min(10.0, deadline - time.monotonic())))
                try:
                    msg = prompt_message(ws.recv(), prompt_id)
                except websocket.WebSocketTimeoutException:
                    continue
                if msg is None:
                    continue
                messages.append(msg)
                if on_message is not None:
                    on_message(msg)
                if is_last_message(msg, prompt_id):
                    break
        finally:
            ws.close()
        entry = self.client.wait_history(prompt_id, max(10.0, deadline - time.monotonic()))
        if entry is None:
            raise PromptFailed(f"no /history entry for {prompt_id} within {timeout:.0f} s")
        status = entry.get("status", {})
        if status.get("status_str") != "success":
            raise PromptFailed(f"prompt {prompt_id} failed: {execution_error(status)}")
        return RunResult(prompt_id, entry, messages, time.monotonic() - start)

    def output_file(self, image: dict) -> Path:
        """Path of an image record (``{"filename", "subfolder", "type": "output"}``) on disk."""
        base = {"output": self.output_dir, "temp": self.temp_dir, "input": self.input_dir}[image.get("type",
                                                                                                     "output")]
        return base / image.get("subfolder", "") / image["filename"]
