"""Issue 19: the DiffIER nodes kept their schema through the refactor (one ``DiffIERNode`` base, shared inputs).

Every DiffIER node's V1 node info (what ``/object_info`` serves and saved workflows are checked against: node id,
display name, category, description, every input with all its options in order, every output) equals the dump
made from the pre-refactor pack (commit e42eed0) on ComfyUI 0.3.75, committed in
``tests/data/diffier_schemas_e42eed0.json``. (The demo nodes' snapshot is ``tests/test_demo_package.py``'s.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SNAPSHOT = Path(__file__).resolve().parent / "data" / "diffier_schemas_e42eed0.json"


def _dump(cls: type) -> dict:
    info = dict(cls.GET_NODE_INFO_V1())
    info.pop("python_module", None)  # where ComfyUI's loader registered the class, not part of the schema
    ordered = [[section, name, *spec] for section, inputs in info["input"].items() for name, spec in inputs.items()]
    return json.loads(json.dumps({"info": info, "inputs": ordered}))


def test_diffier_nodes_are_registered_in_the_recorded_order(pack_module, comfy_nodes):
    ids = [cls.GET_SCHEMA().node_id for cls in pack_module.nodes.NODES]
    assert ids == ["DiffIERGuider", "KSamplerDiffIER", "DiffIERCFGGuider", "DiffIERLabelGrid"]
    assert sorted(ids) == sorted(json.loads(SNAPSHOT.read_text()))
    assert all(comfy_nodes.NODE_CLASS_MAPPINGS[i] is c for i, c in zip(ids, pack_module.nodes.NODES, strict=True))


@pytest.mark.parametrize("node_id", ["DiffIERGuider", "KSamplerDiffIER", "DiffIERCFGGuider", "DiffIERLabelGrid"])
def test_schema_equals_the_pre_refactor_pack(pack_module, comfy_nodes, node_id):
    recorded = json.loads(SNAPSHOT.read_text())[node_id]
    now = _dump(comfy_nodes.NODE_CLASS_MAPPINGS[node_id])
    assert now["inputs"] == recorded["inputs"]
    assert now == recorded
