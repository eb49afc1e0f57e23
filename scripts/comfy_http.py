"""One ComfyUI server, spoken to through its own API: ``/system_stats``, ``/object_info``, ``/prompt``, ``/history``,
``/view``, ``/queue``, ``/interrupt``, ``/upload/image`` and ``/ws``.

The one client of the repository: the sweep (``sweep/``), ``scripts/queue_workflow.py`` and the test server
(``scripts/comfy_server.py``) use it. Standard library only, except the WebSocket (``websocket-client``, imported by
:meth:`ComfyClient.connect`), so ``queue_workflow`` runs in the ``make serve`` environment.

Errors: :class:`ServerDown` (unreachable, or not answering as ComfyUI does), :class:`RequestFailed` (an HTTP error
answer: its ``status`` and decoded ``body``) and its :class:`PromptRejected` (``POST /prompt`` refused the prompt).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

__all__ = ["ComfyClient", "PromptRejected", "RequestFailed", "ServerDown", "execution_error", "is_last_message",
           "normalise_url", "prompt_message", "rejection_lines"]


class ServerDown(Exception):
    """The server cannot be reached (refused, reset, no answer) or does not answer as ComfyUI does."""


class RequestFailed(Exception):
    """The server answered a request with an HTTP error: ``status`` and the decoded ``body``."""

    def __init__(self, message: str, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class PromptRejected(RequestFailed):
    """``POST /prompt`` refused the prompt (validation): ``status``, ``body`` and one line per error in the message."""


def normalise_url(url: str) -> str:
    """``http://host:port`` without a trailing slash (``host:port`` gets ``http://``).

    Args:
        url: a URL or ``host:port``.
    """
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


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def rejection_lines(body: Any) -> list[str]:
    """ComfyUI's answer to a refused prompt as lines: its message, then one line per node and input.

    Args:
        body: the decoded answer of ``POST /prompt``.
    """
    if not isinstance(body, dict):
        return [str(body)[:2000]]
    error = body.get("error")
    lines = [str(error.get("message", "the server rejected the prompt")) if isinstance(error, dict)
             else "the server rejected the prompt"]
    for node_id, entry in (body.get("node_errors") or {}).items():
        for err in entry.get("errors", []):
            name = (err.get("extra_info") or {}).get("input_name", "?")
            lines.append(f"node {node_id} ({entry.get('class_type')}), input {name}: {err.get('message')}"
                         f" [{err.get('details')}]")
    return lines


def execution_error(status: dict) -> str:
    """Why a prompt failed, from the ``status`` of its ``/history`` entry.

    Args:
        status: the entry's ``status`` (``status_str``, ``messages``).
    """
    for kind, data in status.get("messages", []):
        if kind == "execution_error":
            return (f"node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_type')}: "
                    f"{str(data.get('exception_message', '')).strip()}")
        if kind == "execution_interrupted":
            return "interrupted on the server"
    return json.dumps(status)[:2000]


def prompt_message(frame: Any, prompt_id: str) -> dict | None:
    """The JSON message of one ``/ws`` frame when it is about ``prompt_id`` or names no prompt; None for binary frames
    (previews) and for other prompts' messages.

    Args:
        frame: what the WebSocket received.
        prompt_id: the prompt followed.
    """
    if not isinstance(frame, str):
        return None
    msg = json.loads(frame)
    return msg if (msg.get("data") or {}).get("prompt_id") in (None, prompt_id) else None


def is_last_message(msg: dict, prompt_id: str) -> bool:
    """Whether ``msg`` ends the run of ``prompt_id`` (success, error, interruption, or the final ``executing``).

    Args:
        msg: a message of :func:`prompt_message`.
        prompt_id: the prompt followed.
    """
    kind, data = msg.get("type"), msg.get("data") or {}
    return data.get("prompt_id") == prompt_id and (
        kind in ("execution_success", "execution_error", "execution_interrupted")
        or (kind == "executing" and data.get("node") is None))


class ComfyClient:
    """HTTP and WebSocket calls to one server.

    Args:
        url: ``http://host:port`` or ``host:port``.
        timeout: seconds for one HTTP request (default 30).
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = normalise_url(url)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ComfyClient({self.url})"

    # -- HTTP ------------------------------------------------------------------------------------------------
    def send(self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None,
             timeout: float | None = None) -> tuple[int, bytes]:
        """``(status, raw body)`` of one request; HTTP errors are returned, not raised.

        Args:
            method, path: the request line (``path`` with its query).
            data: the body, if any.
            headers: request headers.
            timeout: seconds to wait for the answer (default: the client's).

        Raises:
            ServerDown: no answer (refused, reset, timed out).
        """
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            raise ServerDown(f"server {self.url} unreachable ({_reason(exc)})") from exc

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> tuple[int, Any]:
        """``(status, decoded JSON or text)`` of one request with a JSON ``body`` (if any); HTTP errors are returned.

        Args:
            method, path: the request line.
            body: sent as JSON when not None.
            timeout: seconds to wait for the answer (default: the client's).
        """
        data = None if body is None else json.dumps(body).encode()
        status, raw = self.send(method, path, data, {"Content-Type": "application/json"} if data else None, timeout)
        return status, _decoded(raw)

    def get_json(self, path: str, timeout: float | None = None) -> Any:
        """The JSON answer of ``GET path``.

        Raises:
            ServerDown: unreachable, or an HTTP error or no JSON (then it is not a ComfyUI server's answer).
        """
        status, raw = self.send("GET", path, timeout=timeout)
        if status != 200:
            raise ServerDown(f"server {self.url}: GET {path} answered HTTP {status}; is this a ComfyUI server?")
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
        """Whether the server answers ``/system_stats``."""
        try:
            self.probe(timeout=5.0)
        except ServerDown:
            return False
        return True

    def object_info(self) -> dict:
        return self.get_json("/object_info", timeout=max(self.timeout, 60.0))

    def queue_prompt(self, prompt: dict, client_id: str | None = None, extra: dict | None = None) -> str:
        """``POST /prompt``; the prompt id.

        Args:
            prompt: the API-format prompt.
            client_id: the WebSocket client that follows it (default: a new id).
            extra: ``extra_data`` recorded with the prompt in the server's history.

        Raises:
            PromptRejected: ComfyUI refused it (its validation errors, one line per node and input).
        """
        body = {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex, "extra_data": dict(extra or {})}
        status, answer = self.request("POST", "/prompt", body)
        if status != 200 or not isinstance(answer, dict) or answer.get("node_errors"):
            lines = rejection_lines(answer)
            raise PromptRejected(f"server {self.url} rejected the prompt (HTTP {status}): {'; '.join(lines)}"[:4000],
                                 status, answer)
        return answer["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        """The ``/history`` entry of a prompt, None while it has none."""
        return self.get_json(f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)

    def wait_history(self, prompt_id: str, timeout: float, poll: float = 0.25) -> dict | None:
        """The ``/history`` entry of a prompt once it has completed (successfully or not); None after ``timeout``.

        Args:
            prompt_id: the prompt.
            timeout: seconds to wait.
            poll: seconds between polls.
        """
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            if time.monotonic() + poll > deadline:
                return None
            time.sleep(poll)

    def view(self, record: dict) -> bytes:
        """The bytes of an image record (``{"filename", "subfolder", "type"}``) through ``/view``.

        Raises:
            RequestFailed: the server has no such file.
        """
        query = urllib.parse.urlencode({"filename": record["filename"], "subfolder": record.get("subfolder", ""),
                                        "type": record.get("type", "output")})
        status, raw = self.send("GET", f"/view?{query}", timeout=max(self.timeout, 60.0))
        if status != 200:
            raise RequestFailed(f"server {self.url}: /view of {record['filename']} answered HTTP {status}", status,
                                _decoded(raw))
        return raw

    def upload_image(self, path: Path) -> dict:
        """``POST /upload/image`` of a local file into the server's input folder (overwriting); the server's answer
        (``name``, ``subfolder``, ``type``).

        Raises:
            RequestFailed: the server refused the upload.
        """
        boundary = uuid.uuid4().hex
        fields = {"overwrite": "true", "type": "input"}
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        status, raw = self.send("POST", "/upload/image", b"".join(parts),
                                {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            raise RequestFailed(f"server {self.url}: uploading {path} answered HTTP {status}: {_decoded(raw)}",
                                status, _decoded(raw))
        return json.loads(raw)

    def is_running(self, prompt_id: str) -> bool:
        """Whether ``/queue`` lists the prompt as running."""
        return any(item[1] == prompt_id for item in self.get_json("/queue", timeout=10.0).get("queue_running", []))

    def cancel(self, prompt_id: str) -> None:
        """Take a prompt out of the queue, and interrupt it if it is running.

        Raises:
            ServerDown: the server cannot be reached.
        """
        running = self.is_running(prompt_id)
        self.request("POST", "/queue", {"delete": [prompt_id]}, timeout=10.0)
        if running:
            self.request("POST", "/interrupt", {}, timeout=10.0)

    # -- WebSocket -------------------------------------------------------------------------------------------
    def connect(self, client_id: str, timeout: float = 10.0) -> Any:
        """A WebSocket on ``/ws`` for ``client_id`` (``websocket-client``'s ``WebSocket``).

        Raises:
            ServerDown: the WebSocket cannot be opened.
        """
        import websocket

        scheme = "wss" if self.url.startswith("https") else "ws"
        host = self.url.split("://", 1)[1]
        try:
            return websocket.create_connection(f"{scheme}://{host}/ws?clientId={client_id}", timeout=timeout)
        except (OSError, websocket.WebSocketException) as exc:
            raise ServerDown(f"server {self.url}: WebSocket /ws unreachable ({_reason(exc)})") from exc
