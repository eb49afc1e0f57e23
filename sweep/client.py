"""A sweep worker's prompts on one ComfyUI server, through the repository's one client (``scripts/comfy_http.py``).

Errors are typed so the scheduler can decide: :class:`ServerDown` (unreachable, connection lost: requeue
the job elsewhere), :class:`JobTimeout` (requeue elsewhere), :class:`JobFailed` (the prompt was rejected
or its execution failed: the same job would fail anywhere, so it is recorded as failed).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

import websocket

from scripts.comfy_http import ComfyClient, RequestFailed, ServerDown, execution_error, is_last_message, prompt_message

__all__ = ["Finished", "JobFailed", "JobTimeout", "Session"]

log = logging.getLogger("DiffIER.sweep")


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
        try:
            prompt_id = self.client.queue_prompt(prompt, self.client_id, extra)
        except RequestFailed as exc:
            raise JobFailed(str(exc)) from exc
        wait = _Wait(prompt_id, start, timeout, timeout if queue_timeout is None else queue_timeout)
        entry = self._wait(wait)
        status = entry.get("status", {})
        if status.get("status_str") != "success":
            raise JobFailed(f"server {self.client.url}: prompt {prompt_id} failed: {execution_error(status)}")
        records = [img for out in entry.get("outputs", {}).values() for img in out.get("images", [])
                   if isinstance(img, dict) and "filename" in img]
        if not records:
            raise JobFailed(f"server {self.client.url}: prompt {prompt_id} produced no image; the workflow needs a "
                            f"SaveImage or PreviewImage node")
        try:
            images = [(rec, self.client.view(rec)) for rec in records]
        except RequestFailed as exc:
            raise JobFailed(str(exc)) from exc
        return Finished(prompt_id, entry, images, time.monotonic() - start, _exec_seconds(status))

    def _wait(self, wait: _Wait) -> dict:
        next_poll = time.monotonic() + 2.0
        while True:
            now = time.monotonic()
            if now > wait.deadline():
                self._cancel(wait.prompt_id)
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
                entry = self.client.wait_history(wait.prompt_id, max(0.0, wait.deadline() - time.monotonic()), 0.1)
                if entry is None:
                    raise JobTimeout(f"server {self.client.url}: prompt {wait.prompt_id} finished but its /history "
                                     f"entry never came")
                return entry

    def _cancel(self, prompt_id: str) -> None:
        """Take a late prompt off the server (best effort: a server that is gone has nothing to cancel)."""
        try:
            self.client.cancel(prompt_id)
        except ServerDown as exc:
            log.warning("server %s: could not cancel %s (%s)", self.client.url, prompt_id, exc)

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
                raise ServerDown(f"server {self.client.url}: connection lost ({exc or type(exc).__name__})") from exc
            return None  # the server is up: reconnect on the next call, /history still answers
        msg = prompt_message(frame, prompt_id)
        if msg is None:
            return None
        return "done" if is_last_message(msg, prompt_id) else msg.get("type")


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


def _exec_seconds(status: dict) -> float | None:
    stamps = {kind: data.get("timestamp") for kind, data in status.get("messages", []) if isinstance(data, dict)}
    start, end = stamps.get("execution_start"), stamps.get("execution_success")
    if isinstance(start, int | float) and isinstance(end, int | float):
        return (end - start) / 1000.0
    return None
