"""The DiffIER nodes' schemas: what ``/object_info`` serves and what saved workflows are checked against.

``tests/data/diffier_node_schemas.json`` holds two dumps of every DiffIER node's V1 node info (node id, display name,
category, description, every input with all its options in order, every output), made on ComfyUI 0.3.75:

* ``schemas``: the nodes as they are now; the test asserts equality, so any change to an input is deliberate
  (regenerate the section with ``python tests/test_node_schemas.py``, which leaves ``saved_workflows`` alone);
* ``saved_workflows``: the schema that saved workflows were made against (recorded once from the pack they were saved
  with, never regenerated). Every input of it must still be there, with the same section, position, type and options
  (tooltips aside, where a text differs on purpose, listed in ``REWORDED_TOOLTIPS``), and the only additions
  are optional inputs appended at the end (``ADDED``): an API prompt or a UI graph saved against it loads, and its
  positional ``widgets_values`` still line up.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).resolve().parent / "data" / "diffier_node_schemas.json"
NODE_IDS = ["DiffIERGuider", "KSamplerDiffIER", "DiffIERCFGGuider", "DiffIERLabelGrid"]
#: optional inputs appended after the saved-workflow schema's, per node, in order
ADDED = {"DiffIERGuider": ["at_cfg_1"], "KSamplerDiffIER": ["at_cfg_1"], "DiffIERCFGGuider": ["at_cfg_1"],
         "DiffIERLabelGrid": []}
#: inputs whose tooltip differs on purpose from the saved-workflow schema (``cfg``: it names ``at_cfg_1 = correct``;
#: ``preset``: it quotes the confirmatory run's numbers)
REWORDED_TOOLTIPS = {"DiffIERGuider": {"preset"}, "KSamplerDiffIER": {"cfg", "preset"},
                     "DiffIERCFGGuider": {"cfg", "preset"}}


def _dump(cls: type) -> dict:
    info = dict(cls.GET_NODE_INFO_V1())
    info.pop("python_module", None)  # where ComfyUI's loader registered the class, not part of the schema
    ordered = [[section, name, *spec] for section, inputs in info["input"].items() for name, spec in inputs.items()]
    return json.loads(json.dumps({"info": info, "inputs": ordered}))


def _without_tooltip(entry: list) -> list:
    section, name, kind, *options = entry
    return [section, name, kind, *({k: v for k, v in o.items() if k != "tooltip"} for o in options)]


def test_diffier_nodes_are_registered_in_the_recorded_order(pack_module, comfy_nodes):
    ids = [cls.GET_SCHEMA().node_id for cls in pack_module.nodes.NODES]
    golden = json.loads(GOLDEN.read_text())
    assert ids == NODE_IDS == list(golden["schemas"]) and sorted(ids) == sorted(golden["saved_workflows"])
    assert all(comfy_nodes.NODE_CLASS_MAPPINGS[i] is c for i, c in zip(ids, pack_module.nodes.NODES, strict=True))


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_schema_equals_the_golden_file(comfy_nodes, node_id):
    recorded = json.loads(GOLDEN.read_text())["schemas"][node_id]
    now = _dump(comfy_nodes.NODE_CLASS_MAPPINGS[node_id])
    assert now["inputs"] == recorded["inputs"]
    assert now == recorded


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_saved_workflows_inputs_are_unchanged_and_only_optional_inputs_were_appended(comfy_nodes, node_id):
    saved = json.loads(GOLDEN.read_text())["saved_workflows"][node_id]
    now = _dump(comfy_nodes.NODE_CLASS_MAPPINGS[node_id])
    old_inputs, new_inputs = saved["inputs"], now["inputs"]
    assert len(new_inputs) == len(old_inputs) + len(ADDED[node_id])
    reworded = REWORDED_TOOLTIPS.get(node_id, set())
    for old, new in zip(old_inputs, new_inputs, strict=False):      # the same inputs at the same positions
        if old[1] in reworded:
            assert _without_tooltip(new) == _without_tooltip(old) and new != old, old[1]
        else:
            assert new == old, old[1]
    appended = new_inputs[len(old_inputs):]
    assert [(section, name) for section, name, *_ in appended] == [("optional", n) for n in ADDED[node_id]]
    order = now["info"]["input_order"]
    assert order["required"] == saved["info"]["input_order"]["required"]
    assert order.get("optional", []) == saved["info"]["input_order"].get("optional", []) + ADDED[node_id]
    keep = {k: v for k, v in now["info"].items() if k not in ("input", "input_order")}
    assert keep == {k: v for k, v in saved["info"].items() if k not in ("input", "input_order")}


if __name__ == "__main__":  # regenerate the ``schemas`` section: python tests/test_node_schemas.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import inprocess

    _, nodes, _, _ = inprocess.session()
    golden = json.loads(GOLDEN.read_text())
    golden["schemas"] = {i: _dump(nodes.NODE_CLASS_MAPPINGS[i]) for i in NODE_IDS}
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=False, ensure_ascii=False) + "\n")
    print(f"wrote {GOLDEN}")
