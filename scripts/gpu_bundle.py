"""A portable ComfyUI runtime for the GPU check: ComfyUI 0.3.75's tree and the Python packages it imports.

The GPU machine has a Python with torch and torchvision, no package index and room for 64 MiB of files beside the
repository. ``build`` runs here (PyPI reachable) and writes the bundle folder (default ``.cache/gpu_bundle``):

* ``comfyui.tar.xz``: the provisioned ComfyUI tree (``scripts/comfyui_runtime.py``) without its own tests and
  without the pack's link in ``custom_nodes`` (``unpack`` makes it);
* ``dists/NAME-VERSION.tar.xz``: each distribution of :data:`DISTRIBUTIONS`, the files of its wheel for the target
  Python and platform (``pip download --no-deps --only-binary=:all:``), at the version this Python has installed
  (the versions the test suite runs);
* ``manifest.json``: names, versions, wheel file names, sizes and SHA-256 of everything above.

``unpack`` runs there with the standard library alone: it extracts the tree, and each distribution the running
Python lacks, into a run folder (``comfyui/``, ``site/``, ``web/``). PyAV (``av``: video file I/O, a 36 MB wheel)
is not bundled: where it is missing, ``site/av`` is a stand-in that imports (ComfyUI imports ``av`` when it starts)
and raises on use; the checks never read or write video.

    python scripts/gpu_bundle.py build                         # here: .cache/gpu_bundle for CPython 3.12, x86_64
    python scripts/gpu_bundle.py unpack --into /tmp/diffier-gpu-run   # there (benchmarks/gpu_check.sh does it)
    python scripts/gpu_bundle.py bare-venv /tmp/bare          # here: a venv with only torch and torchvision

:data:`DISTRIBUTIONS` is what a Python with only torch and torchvision (and their own requirements) lacks to
import ComfyUI in-process, load its nodes and this pack, and sample: found by booting ComfyUI in such a venv
(``bare-venv``) until nothing was missing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
import zipfile
from pathlib import Path

log = logging.getLogger("diffier.gpu_bundle")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = REPO_ROOT / ".cache" / "gpu_bundle"
SCHEMA = 1
#: what a bare torch + torchvision Python lacks for ComfyUI 0.3.75 in-process (ComfyUI's own requirements and theirs)
DISTRIBUTIONS: tuple[str, ...] = (
    "PyYAML", "safetensors", "einops", "psutil", "tqdm", "scipy", "torchsde", "trampoline",
    "transformers", "tokenizers", "huggingface_hub", "httpx2", "httpcore2", "h11", "idna", "truststore", "packaging",
    "regex", "aiohttp", "aiohappyeyeballs", "aiosignal", "attrs", "frozenlist", "multidict", "propcache", "yarl",
    "requests", "urllib3", "certifi",
)
#: modules replaced by an import-only stand-in where the target Python lacks them (too large to carry)
STAND_INS: dict[str, str] = {
    "av": "PyAV (video and audio file I/O; a 36 MB wheel): ComfyUI imports it at start-up, the checks never use it",
}
#: the largest bundle that leaves room for the repository in the GPU machine's 64 MiB
MAX_BUNDLE_BYTES = 50 * 2**20
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
#: parts of the ComfyUI tree the checks never load
TREE_EXCLUDES = ("tests", "tests-unit", "script_examples", ".diffier-runtime.json")


def canonical(name: str) -> str:
    """A distribution name as the packaging standards compare it (``PyYAML`` -> ``pyyaml``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_bytes(path: Path) -> int:
    """Total size of the regular files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# -- build (here) ------------------------------------------------------------------------------------------------
def installed_version(name: str) -> str:
    """The version of ``name`` installed in this Python (the one the test suite runs)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"{name} is not installed in {sys.executable}: build the bundle with the repository's "
                         f".venv/bin/python") from None


def download_wheel(name: str, version: str, python_version: str, dest: Path) -> Path:
    """``pip download`` one wheel for CPython ``python_version`` on x86_64 Linux, without its requirements."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--python-version", python_version, "--implementation", "cp",
           *[arg for p in PLATFORMS for arg in ("--platform", p)], "-d", str(dest), f"{name}=={version}"]
    subprocess.run(cmd, check=True)
    wanted = canonical(name).replace("-", "_")
    found = [w for w in dest.glob("*.whl") if canonical(w.name.split("-")[0]).replace("-", "_") == wanted
             and w.name.split("-")[1] == version]
    if not found:
        new = sorted(w.name for w in set(dest.glob("*.whl")) - before)
        raise RuntimeError(f"pip download gave no wheel of {name}=={version} in {dest} (new: {new})")
    return found[0]


def _add_tree(tar: tarfile.TarFile, root: Path, arc_prefix: str = "", excludes: tuple[str, ...] = ()) -> None:
    """Add ``root``'s files under ``arc_prefix``, sorted, with fixed owners and times.

    Symlinks (the pack's link in ``custom_nodes``) and ``__pycache__`` folders are left out.
    """
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in excludes or "__pycache__" in rel.parts or path.is_symlink():
            continue
        info = tar.gettarinfo(str(path), arcname=f"{arc_prefix}{rel.as_posix()}")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        if path.is_file():
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
        elif path.is_dir():
            tar.addfile(info)


def wheel_to_archive(wheel: Path, archive: Path) -> list[str]:
    """Repack a wheel's files as ``archive`` (.tar.xz, ~1/3 smaller than the wheel); returns its top-level names."""
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        tops = sorted({p.name for p in Path(tmp).iterdir()})
        partial = archive.with_name(archive.name + ".partial")
        with tarfile.open(partial, "w:xz", preset=9) as tar:
            _add_tree(tar, Path(tmp))
        os.replace(partial, archive)
    return tops


def build(out: Path, python_version: str, comfyui: Path | None = None) -> dict:
    """Write the bundle into ``out`` (reusing archives already there for the same wheel); returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    old = read_manifest(out) if (out / "manifest.json").is_file() else {}
    reuse = {d["wheel"]: d for d in old.get("distributions", []) if (out / d["file"]).is_file()}
    dists = []
    with tempfile.TemporaryDirectory(prefix="diffier-wheels-") as tmp:
        for name in DISTRIBUTIONS:
            version = installed_version(name)
            wheel = download_wheel(name, version, python_version, Path(tmp))
            archive = Path("dists") / f"{canonical(name)}-{version}.tar.xz"
            if wheel.name in reuse and reuse[wheel.name].get("wheel_sha256") == sha256(wheel):
                dists.append(reuse[wheel.name])
                continue
            start = time.monotonic()
            (out / "dists").mkdir(exist_ok=True)
            tops = wheel_to_archive(wheel, out / archive)
            log.info("%s: %.1f MB wheel -> %.1f MB (%.0f s)", wheel.name, wheel.stat().st_size / 1e6,
                     (out / archive).stat().st_size / 1e6, time.monotonic() - start)
            dists.append({"name": name, "version": version, "wheel": wheel.name, "wheel_sha256": sha256(wheel),
                          "file": archive.as_posix(), "bytes": (out / archive).stat().st_size,
                          "sha256": sha256(out / archive), "top_level": tops})
    for stale in set((out / "dists").glob("*.tar.xz")) - {out / d["file"] for d in dists}:
        stale.unlink()
    tree = comfyui or _provisioned_comfyui()
    tree_archive = out / "comfyui.tar.xz"
    partial = tree_archive.with_name(tree_archive.name + ".partial")
    with tarfile.open(partial, "w:xz", preset=9) as tar:
        _add_tree(tar, tree, "comfyui/", TREE_EXCLUDES)
    os.replace(partial, tree_archive)
    manifest = {
        "schema": SCHEMA, "comfyui": _comfyui_version(tree), "python_version": python_version,
        "platforms": list(PLATFORMS),
        "comfyui_archive": {"file": tree_archive.name, "bytes": tree_archive.stat().st_size,
                            "sha256": sha256(tree_archive)},
        "distributions": dists, "stand_ins": STAND_INS,
    }
    manifest["total_bytes"] = manifest["comfyui_archive"]["bytes"] + sum(d["bytes"] for d in dists)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _provisioned_comfyui() -> Path:
    """The ComfyUI tree ``python -m scripts.comfyui_runtime`` provisions (the last line it prints)."""
    done = subprocess.run([sys.executable, "-m", "scripts.comfyui_runtime"], cwd=REPO_ROOT, check=True,
                          stdout=subprocess.PIPE, text=True)
    return Path(done.stdout.strip().splitlines()[-1])


def _comfyui_version(tree: Path) -> str | None:
    match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", (tree / "comfyui_version.py").read_text())
    return match.group(1) if match else None


# -- unpack (there, standard library only) -----------------------------------------------------------------------
def read_manifest(bundle: Path) -> dict:
    manifest = json.loads((bundle / "manifest.json").read_text())
    if manifest.get("schema") != SCHEMA:
        raise SystemExit(f"{bundle}/manifest.json has schema {manifest.get('schema')!r}, expected {SCHEMA}")
    return manifest


def is_installed(name: str) -> bool:
    """Whether the running Python already has distribution ``name`` (its own version is then used)."""
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def missing_distributions(manifest: dict, installed=is_installed) -> list[dict]:
    """The bundle's distributions the running Python lacks (``installed(name)`` says which it has)."""
    return [d for d in manifest["distributions"] if not installed(d["name"])]


def _extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:xz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # a Python without extraction filters: our own archive, checked against the manifest's SHA-256
            tar.extractall(dest)


def _checked(bundle: Path, entry: dict) -> Path:
    path = bundle / entry["file"]
    if sha256(path) != entry["sha256"]:
        raise SystemExit(f"{path}: SHA-256 differs from manifest.json; rebuild the bundle")
    return path


AV_STAND_IN = '''"""Stand-in for PyAV in the DiffIER GPU-check bundle: it imports, and raises on use (no video here)."""


class _Missing:
    def __init__(self, *args, **kwargs):
        raise ImportError(MESSAGE)

    @classmethod
    def from_ndarray(cls, *args, **kwargs):
        raise ImportError(MESSAGE)


MESSAGE = "PyAV is not installed: this is the GPU-check bundle's import-only stand-in (scripts/gpu_bundle.py)"
__version__ = "0+stand-in"
time_base = 1000000


def open(*args, **kwargs):  # noqa: A001 - PyAV's name
    raise ImportError(MESSAGE)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (_Missing,), {})
'''
AV_SUBMODULE = '''"""Part of the PyAV stand-in (see av/__init__.py)."""

from av import __getattr__  # noqa: F401
'''


def write_av_stand_in(site: Path) -> None:
    """``site/av``: PyAV's import surface as ComfyUI 0.3.75 uses it at start-up (``av.container``,
    ``av.subtitles.stream``), every class a placeholder that raises ImportError when used."""
    for rel, text in {"av/__init__.py": AV_STAND_IN, "av/container/__init__.py": AV_SUBMODULE,
                      "av/subtitles/__init__.py": AV_SUBMODULE, "av/subtitles/stream.py": AV_SUBMODULE}.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def unpack(bundle: Path, into: Path, pack: Path = REPO_ROOT, everything: bool = False) -> dict:
    """Extract the ComfyUI tree and the missing distributions into ``into``; link ``pack`` into its custom_nodes.

    Returns what was done: the folders, which distributions came from the bundle, which stand-ins were written.
    """
    start = time.monotonic()
    manifest = read_manifest(bundle)
    for sub in ("comfyui", "site", "web"):
        shutil.rmtree(into / sub, ignore_errors=True)
    into.mkdir(parents=True, exist_ok=True)
    _extract(_checked(bundle, manifest["comfyui_archive"]), into)
    link = into / "comfyui" / "custom_nodes" / "ComfyUI-DiffIER"
    link.symlink_to(pack.resolve(), target_is_directory=True)
    site = into / "site"
    site.mkdir()
    (into / "web").mkdir()  # an empty --front-end-root: in-process ComfyUI serves no frontend
    wanted = manifest["distributions"] if everything else missing_distributions(manifest)
    for dist in wanted:
        _extract(_checked(bundle, dist), site)
    stand_ins = [name for name in manifest.get("stand_ins", {})
                 if everything or importlib.util.find_spec(name) is None]
    if "av" in stand_ins:
        write_av_stand_in(site)
    report = {"comfyui": str(into / "comfyui"), "site": str(site), "web": str(into / "web"),
              "from_bundle": [f"{d['name']}=={d['version']}" for d in wanted], "stand_ins": stand_ins,
              "python": sys.version.split()[0], "bundle_python": manifest["python_version"],
              "seconds": round(time.monotonic() - start, 1)}
    (into / "unpacked.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# -- a bare torch + torchvision venv (here, for dry runs) ---------------------------------------------------------
def requirement_closure(roots: tuple[str, ...] = ("torch", "torchvision")) -> list[str]:
    """``roots`` and every distribution they require (markers evaluated for this Python), as installed here."""
    from packaging.requirements import Requirement

    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if canonical(name) in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional platform requirement that is not installed
        seen[canonical(name)] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(seen)


def bare_venv(target: Path) -> Path:
    """A venv whose site-packages links only torch, torchvision and their requirements from this Python's."""
    venv.EnvBuilder(with_pip=False, clear=True, symlinks=True).create(target)
    py = target / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    for name in requirement_closure():
        dist = importlib.metadata.distribution(name)
        for top in sorted({f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}):
            src, dst = Path(dist.locate_file(top)), site / top
            if src.exists() and not dst.exists():
                dst.symlink_to(src)
    return py


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="assemble the bundle (needs pip and PyPI)")
    b.add_argument("--out", type=Path, default=DEFAULT_BUNDLE)
    b.add_argument("--python-version", default="3.12", help="CPython version of the target (default 3.12)")
    u = sub.add_parser("unpack", help="extract the tree and the missing distributions (standard library only)")
    u.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    u.add_argument("--into", type=Path, required=True)
    u.add_argument("--everything", action="store_true", help="every distribution and stand-in, installed or not")
    v = sub.add_parser("bare-venv", help="a venv with only torch, torchvision and their requirements")
    v.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "build":
        manifest = build(args.out, args.python_version)
        total = manifest["total_bytes"]
        log.info("bundle %s: %.1f MiB (%d distributions + ComfyUI %s tree), for CPython %s", args.out,
                 total / 2**20, len(manifest["distributions"]), manifest["comfyui"], args.python_version)
        if total > MAX_BUNDLE_BYTES:
            log.error("the bundle is over %.0f MiB", MAX_BUNDLE_BYTES / 2**20)
            return 1
    elif args.command == "unpack":
        report = unpack(args.bundle, args.into, everything=args.everything)
        log.info("unpacked ComfyUI and %d distributions (%s), stand-ins %s, in %.1f s", len(report["from_bundle"]),
                 ", ".join(report["from_bundle"]) or "none", report["stand_ins"] or "none", report["seconds"])
    else:
        log.info("%s", bare_venv(args.target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
