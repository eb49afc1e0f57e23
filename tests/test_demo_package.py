"""The demo nodes as users and saved workflows see them: their schemas, and the images the shipped demo workflows make.

* Schema: every demo node's V1 node info (what ``/object_info`` serves and saved workflows are checked against: node
  id, display name, category, description, every input with all its options in order, every output) equals
  ``tests/data/demo_node_schemas.json``, in registration order.
* Images: the two shipped demo API workflows (``workflows/demo_digits_api.json``, ``workflows/demo_sr_api.json``, with
  fewer steps, a smaller batch and no viewing upscale to stay fast) run through ComfyUI's real
  ``execution.PromptExecutor``; the decoded IMAGE tensors equal the arrays in
  ``tests/data/demo_workflow_images.safetensors``.

The image arrays are same-machine golden values: this test's own runs made them on the development machine (x86-64,
one torch thread, torch 2.14.1, ComfyUI 0.3.75). A float32 sampling run of a UNet adds its terms in an order that
depends on the CPU's vector width and blocking, so another CPU may differ in the last bits; a failure reports the
largest difference. Regenerate them with ``python tests/test_demo_package.py`` only when the demo's images change on
purpose, or for another reference machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from prompt_runner import execute_prompt

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SCHEMAS = DATA / "demo_node_schemas.json"
IMAGES = DATA / "demo_workflow_images.safetensors"
INPUT_DIR = REPO_ROOT / "workflows" / "input"
#: workflow file -> (node id of the decode node, {node: {input: value}} to keep the run fast)
WORKFLOWS = {
    "demo_digits_api.json": ("6", {"4": {"batch_size": 2}, "5": {"steps": 4}, "6": {"scale": 1}}),
    "demo_sr_api.json": ("6", {"5": {"steps": 6}}),
}


def schema_dump(classes: list[type]) -> dict:
    """``{node_id: {"info": V1 node info, "inputs": [[section, name, type, options], ...] in order}}``.

    Args:
        classes: V3 node classes.
    """
    dump = {}
    for cls in classes:
        info = dict(cls.GET_NODE_INFO_V1())
        info.pop("python_module", None)   # where ComfyUI's loader registered the class, not part of the schema
        ordered = [[section, name, *spec] for section, inputs in info["input"].items()
                   for name, spec in inputs.items()]
        dump[info["name"]] = json.loads(json.dumps({"info": info, "inputs": ordered}))
    return dump


def test_demo_nodes_are_registered_in_the_recorded_order(pack_module, comfy_nodes):
    """The registered demo nodes are ``demo.nodes.DEMO_NODES`` in the recorded order, and no DiffIER node's id starts
    with DiffIERDemo."""
    demo_nodes = pack_module.demo.nodes.DEMO_NODES
    ids = [cls.GET_SCHEMA().node_id for cls in demo_nodes]
    assert ids == list(json.loads(SCHEMAS.read_text()))
    assert all(comfy_nodes.NODE_CLASS_MAPPINGS[i] is c for i, c in zip(ids, demo_nodes, strict=True))
    assert not any(c.GET_SCHEMA().node_id.startswith("DiffIERDemo") for c in pack_module.nodes.NODES)


def test_schemas_equal_the_golden_file(pack_module):
    expected = json.loads(SCHEMAS.read_text())
    actual = schema_dump(pack_module.demo.nodes.DEMO_NODES)
    assert list(actual) == list(expected)
    for node_id, dump in expected.items():
        assert actual[node_id]["inputs"] == dump["inputs"], node_id
        assert actual[node_id]["info"] == dump["info"], node_id


# -- images ---------------------------------------------------------------------------------------------------
def _prompt(name: str) -> dict:
    prompt = json.loads((REPO_ROOT / "workflows" / name).read_text())
    for node, values in WORKFLOWS[name][1].items():
        prompt[node]["inputs"].update(values)
    return prompt


def run_workflow(comfy_loop, name: str, out_dir: Path) -> torch.Tensor:
    """The decode node's IMAGE after the workflow ran through ComfyUI's PromptExecutor (inputs from workflows/input)."""
    import folder_paths

    old_in = folder_paths.get_input_directory()
    folder_paths.set_input_directory(str(INPUT_DIR))
    try:
        executor = execute_prompt(comfy_loop, _prompt(name), out_dir)
    finally:
        folder_paths.set_input_directory(old_in)
    (image,) = executor.caches.outputs.get(WORKFLOWS[name][0]).outputs[0]
    return image.clone()


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_demo_workflow_images_equal_the_golden_arrays(comfy_nodes, comfy_loop, workflow, tmp_path):
    from safetensors.torch import load_file

    image = run_workflow(comfy_loop, workflow, tmp_path)
    assert torch.isfinite(image).all() and image.std() > 0.01      # a real image, not a constant
    golden = load_file(str(IMAGES))[workflow]
    assert image.shape == golden.shape
    assert torch.equal(image, golden), f"{workflow}: max |diff| {float((image - golden).abs().max())} (same-machine " \
                                       "golden values, see the module docstring)"


if __name__ == "__main__":  # regenerate the golden images: python tests/test_demo_package.py
    import asyncio
    import tempfile

    from safetensors.torch import save_file

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import inprocess

    inprocess.session()
    with tempfile.TemporaryDirectory() as out:
        loop = asyncio.get_event_loop()
        save_file({name: run_workflow(loop, name, Path(out)).contiguous() for name in sorted(WORKFLOWS)}, str(IMAGES))
    print(f"wrote {IMAGES}")
