"""Security: the pack executes no dynamic code, unpickles nothing, adds no HTTP routes or web files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: What ComfyUI loads: the entry point, the nodes, the demo and the core (benchmarks, scripts and tests never load
#: there).
PACK_SOURCES = [REPO / "__init__.py",
                *(p for d in ("nodes", "demo", "diffier_core") for p in sorted((REPO / d).rglob("*.py")))]
ALL_SOURCES = PACK_SOURCES + [p for d in ("benchmarks", "scripts")
                              for p in sorted((REPO / d).rglob("*.py"))]

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "print"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib"}
FORBIDDEN_ATTRS = {("torch", "load")}
#: numpy's loader is safe unless pickles are allowed explicitly (allow_pickle defaults to False).
NUMPY_LOADERS = {("np", "load"), ("numpy", "load")}
ROUTE_ATTRS = {"add_route", "add_get", "add_post", "add_static", "routes"}


def _violations(path: Path, *, pack: bool) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            if pack or node.func.id != "print":
                found.append(f"{where} calls {node.func.id}()")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                                                   else [])
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where} imports {name}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in NUMPY_LOADERS
                and any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                        for k in node.keywords)):
            found.append(f"{where} allows pickles in numpy.load")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in FORBIDDEN_ATTRS:
                found.append(f"{where} uses {node.value.id}.{node.attr} (pickle-based loading)")
            if pack and node.attr in ROUTE_ATTRS:
                found.append(f"{where} touches HTTP routes ({node.value.id}.{node.attr})")
        if pack and isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "WEB_DIRECTORY":
                    found.append(f"{where} serves a web directory")
    return found


@pytest.mark.parametrize("path", ALL_SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_dynamic_code_or_pickle(path):
    assert _violations(path, pack=path in PACK_SOURCES) == []


def test_scanner_catches_what_it_forbids(tmp_path):
    bad = REPO / "nodes" / "_scanner_probe.py"
    try:
        bad.write_text("import pickle\nimport torch\nx = eval('1')\ntorch.load('w.pt')\nprint(x)\n"
                       "WEB_DIRECTORY = './web'\nserver.routes.get('/x')\nnp.load('a.npz', allow_pickle=True)\n"
                       "np.load('b.npz')\n")
        found = _violations(bad, pack=True)
    finally:
        bad.unlink()
    assert len(found) == 7, found


def test_weights_are_only_safetensors():
    suspicious = [p for p in REPO.rglob("*") if p.suffix in {".pt", ".pth", ".ckpt", ".pkl", ".bin"}
                  and ".venv" not in p.parts and ".cache" not in p.parts]
    assert suspicious == []
