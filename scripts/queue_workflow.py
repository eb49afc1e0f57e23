"""Queue an API-format workflow on a running ComfyUI server, wait for it, and say where its images are.

Usage (with ``make serve`` running in another terminal)::

    .venv/bin/python -m scripts.queue_workflow workflows/demo_digits_api.json
    .venv/bin/python -m scripts.queue_workflow workflows/demo_sr_api.json --server 127.0.0.1:8190
    .venv/bin/python -m scripts.queue_workflow workflows/demo_digits_api.json --set 4.batch_size=4 --set 5.cfg=5

Standard library only (it runs in the ``make serve`` environment; it speaks to the server through
``scripts/comfy_http.py``). Images a ``LoadImage`` node names are uploaded first (``POST /upload/image``) from
``workflows/input/`` when they are there, so the demo workflows run on any server. The prompt goes to
``POST /prompt``; a validation error is printed per node and input and the exit status is 1. Then
``/history/<prompt_id>`` is polled until the prompt finishes, and every saved image is printed as a path: ComfyUI's
output folder is ``--output-directory`` when the server was started with it, otherwise ``output/`` inside the
ComfyUI tree (for ``make serve``: ``.cache/comfyui-0.3.75/output/``, or ``$COMFYUI_PATH/output``). Text outputs
(KSampler (DiffIER)'s summary) are printed too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from .comfy_http import ComfyClient, PromptRejected, RequestFailed, ServerDown, execution_error, rejection_lines
from .comfyui_runtime import COMFYUI_VERSION, cache_root

logger = logging.getLogger("diffier.queue_workflow")

REPO_ROOT = Path(__file__).resolve().parent.parent
INPUT_DIR = REPO_ROOT / "workflows" / "input"

__all__ = ["QueueError", "load_api_workflow", "output_folder", "output_folder_from_argv", "queue_and_wait",
           "saved_files", "upload_inputs", "apply_overrides", "main"]


class QueueError(RuntimeError):
    """The workflow could not be queued or did not finish; the message says why."""


def _client(server: str) -> ComfyClient:
    """The client of ``host:port`` (60 s per request)."""
    return ComfyClient(server, timeout=60.0)


def load_api_workflow(path: Path) -> dict:
    """The prompt of an API-format workflow file (``{node_id: {"class_type", "inputs"}}``).

    Args:
        path: the JSON file.

    Raises:
        QueueError: the file is missing, not JSON, or a UI-format file (which only the frontend can run).
    """
    try:
        prompt = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise QueueError(f"cannot read the workflow {path}: {e}") from e
    if isinstance(prompt, dict) and "nodes" in prompt and "links" in prompt:
        raise QueueError(f"{path} is a UI-format workflow (drag it onto the ComfyUI canvas); queue the API "
                         f"file of the same name in workflows/api/ instead")
    if not isinstance(prompt, dict) or not prompt or not all(
            isinstance(n, dict) and "class_type" in n for n in prompt.values()):
        raise QueueError(f"{path} is not an API-format workflow ({{node_id: {{class_type, inputs}}}})")
    return prompt


def upload_inputs(server: str, prompt: dict, input_dir: Path = INPUT_DIR) -> list[str]:
    """Upload every image a ``LoadImage`` node names that exists in ``input_dir``; return their names.

    Args:
        server: ``host:port``.
        prompt: the API prompt.
        input_dir: where the workflow's input images are (``workflows/input/``).
    """
    client, uploaded = _client(server), []
    for node in prompt.values():
        name = node.get("inputs", {}).get("image")
        if node.get("class_type") != "LoadImage" or not isinstance(name, str):
            continue
        local = input_dir / name
        if not local.is_file():
            continue  # expected in the server's own input folder
        try:
            client.upload_image(local)
        except RequestFailed as e:
            raise QueueError(f"uploading {local} failed: HTTP {e.status} {e.body}") from e
        logger.info("uploaded %s to the server's input folder", local.relative_to(REPO_ROOT)
                    if local.is_relative_to(REPO_ROOT) else local)
        uploaded.append(name)
    return uploaded


def queue_and_wait(server: str, prompt: dict, timeout: float = 1800.0, poll: float = 1.0) -> dict:
    """Queue ``prompt`` and return its ``/history`` entry once it has finished successfully.

    Args:
        server: ``host:port``.
        prompt: the API prompt.
        timeout: seconds to wait for the run.
        poll: seconds between ``/history`` polls.

    Raises:
        QueueError: rejected (validation errors listed per node and input), failed or timed out.
    """
    client = _client(server)
    try:
        prompt_id = client.queue_prompt(prompt)
    except PromptRejected as e:
        raise QueueError(f"rejected (HTTP {e.status}):\n" + "\n  ".join(rejection_lines(e.body))) from e
    logger.info("queued as %s; waiting (up to %.0f s)", prompt_id, timeout)
    entry = client.wait_history(prompt_id, timeout, poll)
    if entry is None:
        raise QueueError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")
    if entry["status"].get("status_str") != "success":
        raise QueueError(f"prompt {prompt_id} failed: {execution_error(entry['status'])}")
    return entry


def runtime_root() -> Path:
    """The ComfyUI tree ``make serve`` runs: ``$COMFYUI_PATH``, else ``.cache/comfyui-0.3.75`` (``$DIFFIER_CACHE``)."""
    comfy = os.environ.get("COMFYUI_PATH")
    return Path(comfy).expanduser() if comfy else cache_root() / f"comfyui-{COMFYUI_VERSION}"


def output_folder_from_argv(argv: list[str], comfy_root: Path) -> Path:
    """ComfyUI's output folder for a server started with ``argv`` (as ``folder_paths`` computes it).

    Args:
        argv: the server's ``sys.argv`` (``/system_stats`` reports it).
        comfy_root: the ComfyUI tree the server runs from.
    """
    def flag(name: str) -> str | None:
        for i, arg in enumerate(argv):
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
        return None

    if flag("--output-directory"):
        return Path(flag("--output-directory")).expanduser()
    base = flag("--base-directory")
    return (Path(base).expanduser() if base else comfy_root) / "output"


def output_folder(server: str) -> Path:
    """ComfyUI's output folder of ``server``, from the command line its ``/system_stats`` reports.

    Args:
        server: ``host:port``.
    """
    argv = _client(server).probe().get("system", {}).get("argv", [])
    return output_folder_from_argv([str(a) for a in argv], runtime_root())


def saved_files(entry: dict, out_dir: Path) -> list[Path]:
    """Paths of the images (and latents) the run saved to ComfyUI's output folder.

    Args:
        entry: the prompt's ``/history`` entry.
        out_dir: ComfyUI's output folder.
    """
    paths = []
    for out in entry.get("outputs", {}).values():
        for kind in ("images", "latents"):
            for rec in out.get(kind, []):
                if rec.get("type", "output") == "output":
                    paths.append(out_dir / rec.get("subfolder", "") / rec["filename"])
    return paths


def apply_overrides(prompt: dict, overrides: list[str]) -> dict:
    """Set widget values given as ``NODE_ID.INPUT=VALUE`` (VALUE read as JSON when it parses, else a string).

    Args:
        prompt: the API prompt (changed in place and returned).
        overrides: the ``--set`` arguments.

    Raises:
        QueueError: malformed, or naming a node or input the workflow does not have.
    """
    for item in overrides:
        target, sep, raw = item.partition("=")
        node_id, dot, name = target.partition(".")
        if not sep or not dot or not name:
            raise QueueError(f"--set {item!r}: expected NODE_ID.INPUT=VALUE, e.g. 4.batch_size=4")
        inputs = prompt.get(node_id, {}).get("inputs")
        if inputs is None or name not in inputs:
            raise QueueError(f"--set {item!r}: the workflow has no input {name!r} on node {node_id!r}")
        try:
            inputs[name] = json.loads(raw)
        except ValueError:
            inputs[name] = raw
    return prompt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workflow", type=Path, help="an API-format workflow JSON (e.g. workflows/demo_digits_api.json)")
    parser.add_argument("--server", default=f"127.0.0.1:{os.environ.get('PORT', '8188')}",
                        help="host:port of the ComfyUI server (default 127.0.0.1:$PORT, PORT=8188)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the run")
    parser.add_argument("--set", action="append", default=[], metavar="NODE_ID.INPUT=VALUE",
                        help="change a widget value before queueing (repeatable), e.g. 4.batch_size=4")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        prompt = apply_overrides(load_api_workflow(args.workflow), args.set)
        upload_inputs(args.server, prompt)
        start = time.monotonic()
        entry = queue_and_wait(args.server, prompt, timeout=args.timeout)
        out_dir = output_folder(args.server)
    except QueueError as e:
        logger.error("%s: %s", args.workflow, e)
        return 1
    except ServerDown as e:
        logger.error("%s: %s; start a server with `make serve`", args.workflow, e)
        return 1
    logger.info("finished in %.1f s", time.monotonic() - start)
    for out in entry.get("outputs", {}).values():
        for text in out.get("text", []):
            logger.info("%s", text)
    files = saved_files(entry, out_dir)
    for path in files:
        logger.info("saved %s%s", path, "" if path.is_file() else "  (on the server's machine)")
    if not files:
        logger.info("the workflow saved no files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
