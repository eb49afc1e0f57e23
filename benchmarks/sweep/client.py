"""One ComfyUI server, spoken to through its own API only: ``/system_stats``, ``/object_info``, ``/prompt``,
``/ws``, ``/history``, ``/view``, ``/queue``, ``/interrupt``.

Errors are typed so the scheduler can decide: :class:`ServerDown` (unreachable, connection lost: requeue
the job elsewhere), :class:`JobTimeout` (requeue elsewhere), :class:`JobFailed` (the prompt was rejected
or its execution failed: the same job would fail anywhere, so it is recorded as failed).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import websocket

log = logging.getLogger("DiffIER.sweep")


class ServerDown(Exception):
    """The server cannot be reached (refused, reset, no answer)."""


class JobTimeout(Exception):
    """The job did not finish within the time limit."""


class JobFailed(Exception):
    """The server rejected the prompt or its execution failed."""


@dataclass
class Finished:
    """A finished prompt: its id, its ``/history`` entry, the images' bytes and timings."""

    prompt_id: str
    history: dict
    images: list[tuple[dict, bytes]] = field(default_factory=list)  # (record, PNG bytes)
    wall_s: float = 0.0  # from POST /prompt to the last image downloaded
    exec_s: float | None = None  # execution_start → execution_success, from the server's own timestamps


def normalise_url(url: str) -> str:
    """``http://host:port`` without a trailing slash (``host:port`` gets ``http://``)."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"--server {url!r}: expected a URL such as http://127.0.0.1:8188")
    return url


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    return str(inner if inner is not None else exc) or type(exc).__name__


class ComfyClient:
    """HTTP and WebSocket calls to one server.

    Args:
        url: ``http://host:port``.
        timeout: seconds for one HTTP request.
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = normalise_url(url)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ComfyClient({self.url})"

    # -- HTTP ------------------------------------------------------------------------------------------------
    def _open(self, path: str, body: Any = None, timeout: float | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"} if data is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as r:
                return r.read()
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            raise ServerDown(f"server {self.url} unreachable ({_reason(exc)})") from exc

    def get_json(self, path: str, timeout: float | None = None) -> Any:
        try:
            raw = self._open(path, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise ServerDown(f"server {self.url}: GET {path} answered HTTP {exc.code}; is this a ComfyUI "
                             f"server?") from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ServerDown(f"server {self.url}: GET {path} did not answer JSON; is this a ComfyUI server?") from exc

    def probe(self, timeout: float = 10.0) -> dict:
        """``/system_stats``; raises :class:`ServerDown` naming the URL and the reason."""
        stats = self.get_json("/system_stats", timeout=timeout)
        if not isinstance(stats, dict) or "system" not in stats:
            raise ServerDown(f"server {self.url}: /system_stats is not ComfyUI's; is this a ComfyUI server?")
        return stats

    def alive(self) -> bool:
        try:
            self.probe(timeout=5.0)
        except ServerDown:
            return False
        return True

    def object_info(self) -> dict:
        return self.get_json("/object_info", timeout=max(self.timeout, 60.0))

    def queue_prompt(self, prompt: dict, client_id: str, extra: dict | None = None) -> str:
        """``POST /prompt``; the prompt id, or :class:`JobFailed` with ComfyUI's validation errors."""
        body = {"prompt": prompt, "client_id": client_id, "extra_data": dict(extra or {})}
        try:
            answer = json.loads(self._open("/prompt", body))
        except urllib.error.HTTPError as exc:
            raise JobFailed(f"server {self.url} rejected the prompt (HTTP {exc.code}): "
                            f"{_validation_text(exc.read())}") from exc
        if answer.get("node_errors"):
            raise JobFailed(f"server {self.url} rejected the prompt: {_validation_text(json.dumps(answer))}")
        return answer["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        return self.get_json(f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)

    def view(self, record: dict) -> bytes:
        query = urllib.parse.urlencode({"filename": record["filename"], "subfolder": record.get("subfolder", ""),
                                        "type": record.get("type", "output")})
        try:
            return self._open(f"/view?{query}", timeout=max(self.timeout, 60.0))
        except urllib.error.HTTPError as exc:
            raise JobFailed(f"server {self.url}: /view of {record['filename']} answered HTTP {exc.code}") from exc

    def cancel(self, prompt_id: str) -> None:
        """Take a prompt out of the queue, or interrupt it if it is running (best effort)."""
        try:
            queue = self.get_json("/queue", timeout=10.0)
            running = [item[1] for item in queue.get("queue_running", [])]
            self._open("/queue", {"delete": [prompt_id]}, timeout=10.0)
            if prompt_id in running:
                self._open("/interrupt", {}, timeout=10.0)
        except (ServerDown, urllib.error.HTTPError) as exc:
            log.warning("server %s: could not cancel %s (%s)", self.url, prompt_id, exc)

    def is_running(self, prompt_id: str) -> bool:
        """Whether ``/queue`` lists the prompt as running."""
        return any(item[1] == prompt_id for item in self.get_json("/queue", timeout=10.0).get("queue_running", []))

    def history_ids(self) -> dict[str, dict]:
        """Every ``/history`` entry (for checks and tests)."""
        return self.get_json("/history")

    # -- one job -----------------------------------------------------------------------------------------------
    def connect(self, client_id: str) -> websocket.WebSocket:
        scheme = "wss" if self.url.startswith("https") else "ws"
        host = self.url.split("://", 1)[1]
        try:
            return websocket.create_connection(f"{scheme}://{host}/ws?clientId={client_id}", timeout=10)
        except (OSError, websocket.WebSocketException) as exc:
            raise ServerDown(f"server {self.url}: WebSocket /ws unreachable ({_reason(exc)})") from exc


class Session:
    """A worker's connection to one server: its own client id and WebSocket, reused across jobs."""

    def __init__(self, client: ComfyClient) -> None:
        self.client = client
        self.client_id = uuid.uuid4().hex
        self.ws: websocket.WebSocket | None = None

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except (OSError, websocket.WebSocketException):
                pass
            self.ws = None

    def _ensure_ws(self) -> websocket.WebSocket:
        if self.ws is None:
            self.ws = self.client.connect(self.client_id)
        return self.ws

    def run(self, prompt: dict, timeout: float, extra: dict | None = None,
            queue_timeout: float | None = None) -> Finished:
        """Queue the prompt, wait for it on ``/ws`` (and ``/history``, ``/queue``), download its images.

        Args:
            prompt: the API workflow.
            timeout: seconds from the start of its execution to its end.
            extra: ``extra_data`` recorded with the prompt in the server's history.
            queue_timeout: seconds it may wait in the server's queue before it starts (default: ``timeout``).
        """
        start = time.monotonic()
        self._ensure_ws()
        prompt_id = self.client.queue_prompt(prompt, self.client_id, extra)
        wait = _Wait(prompt_id, start, timeout, timeout if queue_timeout is None else queue_timeout)
        entry = self._wait(wait)
        status = entry.get("status", {})
        if status.get("status_str") != "success":
            raise JobFailed(f"server {self.client.url}: prompt {prompt_id} failed: {_execution_error(status)}")
        records = [img for out in entry.get("outputs", {}).values() for img in out.get("images", [])
                   if isinstance(img, dict) and "filename" in img]
        if not records:
            raise JobFailed(f"server {self.client.url}: prompt {prompt_id} produced no image; the workflow needs a "
                            f"SaveImage or PreviewImage node")
        images = [(rec, self.client.view(rec)) for rec in records]
        return Finished(prompt_id, entry, images, time.monotonic() - start, _exec_seconds(status))

    def _wait(self, wait: _Wait) -> dict:
        next_poll = time.monotonic() + 2.0
        while True:
            now = time.monotonic()
            if now > wait.deadline():
                self.client.cancel(wait.prompt_id)
                raise JobTimeout(f"server {self.client.url}: prompt {wait.prompt_id} {wait.late_reason()}")
            if now >= next_poll:  # /history and /queue as a backstop for messages we did not see
                next_poll = now + 2.0
                entry = self.client.history(wait.prompt_id)
                if entry and entry.get("status", {}).get("completed") is not None:
                    return entry
                if wait.started is None and self.client.is_running(wait.prompt_id):
                    wait.started = now
            kind = self._next_message(wait.prompt_id, min(1.0, max(0.1, wait.deadline() - now)))
            if kind in ("execution_start", "executing", "execution_cached", "progress") and wait.started is None:
                wait.started = time.monotonic()
            if kind == "done":
                return self._final_history(wait.prompt_id, wait.deadline())

    def _next_message(self, prompt_id: str, wait: float) -> str | None:
        """The type of the next message about this prompt (``"done"`` once it ended), or None."""
        ws = self._ensure_ws()
        ws.settimeout(wait)
        try:
            frame = ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        except (OSError, websocket.WebSocketException) as exc:
            self.close()
            if not self.client.alive():
                raise ServerDown(f"server {self.client.url}: connection lost ({_reason(exc)})") from exc
            return None  # the server is up: reconnect on the next call, /history still answers
        if not isinstance(frame, str):
            return None  # binary frames are previews
        msg = json.loads(frame)
        data = msg.get("data") or {}
        if data.get("prompt_id") != prompt_id:
            return None
        kind = msg.get("type")
        if kind in ("execution_success", "execution_error", "execution_interrupted") or (
                kind == "executing" and data.get("node") is None):
            return "done"
        return kind

    def _final_history(self, prompt_id: str, deadline: float) -> dict:
        while time.monotonic() < deadline:
            entry = self.client.history(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            time.sleep(0.1)
        raise JobTimeout(f"server {self.client.url}: prompt {prompt_id} finished but its /history entry never came")


@dataclass
class _Wait:
    """The two limits of one job: ``queue_timeout`` until it starts, then ``timeout`` until it ends."""

    prompt_id: str
    queued: float
    timeout: float
    queue_timeout: float
    started: float | None = None

    def deadline(self) -> float:
        return self.queued + self.queue_timeout if self.started is None else self.started + self.timeout

    def late_reason(self) -> str:
        if self.started is None:
            return f"waited more than {self.queue_timeout:g} s in the server's queue without starting"
        return f"did not finish within {self.timeout:g} s of starting"


def _validation_text(raw: bytes | str) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return str(raw)[:2000]
    parts = []
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts.append(f"{error.get('message', '')} {error.get('details', '')}".strip())
    for node_id, node in (body.get("node_errors") or {}).items():
        for err in node.get("errors", []):
            parts.append(f"node {node_id} ({node.get('class_type')}): {err.get('message')}: {err.get('details')}")
    return "; ".join(p for p in parts if p)[:4000] or json.dumps(body)[:2000]


def _execution_error(status: dict) -> str:
    for kind, data in status.get("messages", []):
        if kind == "execution_error":
            return (f"node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_type')}: "
                    f"{data.get('exception_message', '').strip()}")
        if kind == "execution_interrupted":
            return "interrupted on the server"
    return json.dumps(status)[:2000]


def _exec_seconds(status: dict) -> float | None:
    stamps = {kind: data.get("timestamp") for kind, data in status.get("messages", []) if isinstance(data, dict)}
    start, end = stamps.get("execution_start"), stamps.get("execution_success")
    if isinstance(start, int | float) and isinstance(end, int | float):
        return (end - start) / 1000.0
    return None
