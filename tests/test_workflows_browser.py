"""The shipped UI-format workflows in the real ComfyUI frontend, in headless Chromium, on a real server.

For every ``workflows/*.json``: open it through the app's file input (what Workflow > Open and
drag-and-drop use), check no "missing node types" report or dialog and that every node and link of the
file is in the graph, save a screenshot (``tests/artifacts/browser/``), lower its size and step count
in the widgets as a user would (64×64, 2 steps), queue it with the page's Run button and wait for the
run to finish; then check the server's /history for the image and DiffIER's report.

The SDXL and Flux dev workflows (``IN_PROCESS``) are opened and checked the same way and reduced in the widgets,
then the prompt the frontend makes of the page (``app.graphToPrompt()``, what its Run button sends) must equal the
shipped API file reduced by ``reduce_for_ci``, apart from optional inputs the API file leaves at their defaults;
that prompt then runs through ComfyUI's PromptExecutor in this process with tiny models in place of the loaders'
outputs (``inprocess_workflows.py``), as in ``test_workflows_server.py``.

Needs Python ``playwright`` and the system Chromium (the Makefile's ``chromium`` target, run by ``make test``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from inprocess_workflows import run_with_tiny_loaders, saved_image_path
from pack_loader import import_file, import_pack_file
from PIL import Image
from test_workflows_server import IN_PROCESS, assert_diffier_reports, assert_image_file, reduce_for_ci
from tiny_models import make_pipeline

from scripts.checkpoints import ensure_checkpoints
from scripts.comfy_server import ComfyServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO_ROOT / "workflows"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "browser"
ORDER = ("sd_x4_upscale", "sd21_txt2img_ksampler_diffier", "sd21_txt2img_guider", "sd21_txt2img_rescalecfg_diffier",
         "guidance_sweep")
SIZE, STEPS, SR_INPUT_SIZE = 64, 2, 128
EXPECTED_SIZE = {"sd21_txt2img_ksampler_diffier": (SIZE, SIZE), "sd21_txt2img_guider": (SIZE, SIZE),
                 "sd21_txt2img_rescalecfg_diffier": (SIZE, SIZE), "sd_x4_upscale": (SIZE, SIZE)}


def expected_size(name: str, prompt: dict) -> tuple[int, int]:
    """The sweep: a 4×2 grid of SIZE tiles 8 px apart, plus the bands DiffIER Label Grid adds for its labels."""
    if name != "guidance_sweep":
        return EXPECTED_SIZE[name]
    drawing = import_pack_file("nodes/grid_drawing.py")
    (label,) = [v["inputs"] for v in prompt.values() if v["class_type"] == "DiffIERLabelGrid"]
    layout = drawing.grid_layout(4 * SIZE + 3 * 8, 2 * SIZE + 8, drawing.parse_labels(label["columns"]),
                              drawing.parse_labels(label["rows"]), label["spacing"], label["font_size"])
    assert layout.header_height > 0 and layout.margin_width > 0
    return layout.width, layout.height


def _frontend():
    return import_file("diffier_frontend", WORKFLOWS / "tools" / "frontend.py")


def ui_nodes(wf: dict) -> dict[str, str]:
    """Node id -> type of a UI file's nodes, without its Note nodes (UI only: the API format has none)."""
    return {str(n["id"]): n["type"] for n in wf["nodes"] if n["type"] != "Note"}


def test_every_api_workflow_has_its_ui_twin():
    generator = import_file("diffier_make_api_workflows", WORKFLOWS / "tools" / "make_api_workflows.py")
    assert set(generator.WORKFLOW_BUILDERS) == set(ORDER) | set(IN_PROCESS)
    for name in ORDER + tuple(IN_PROCESS):  # same nodes, same types (the UI file omits default titles)
        assert (WORKFLOWS / f"{name}.json").is_file() and (WORKFLOWS / "api" / f"{name}.json").is_file()
        prompt = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
        assert prompt == generator.WORKFLOW_BUILDERS[name](), f"{name}: regenerate the API file"
        wf = json.loads((WORKFLOWS / f"{name}.json").read_text())
        assert ui_nodes(wf) == {k: v["class_type"] for k, v in prompt.items()}
        notes = [(n["title"], n["widgets_values"][0]) for n in wf["nodes"] if n["type"] == "Note"]
        assert notes == generator.UI_NOTES.get(name, []), f"{name}: regenerate the UI file"
        n_links = sum(isinstance(v, list) for node in prompt.values() for v in node["inputs"].values())
        assert len(wf["links"]) == n_links


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        _frontend().chromium_path()
    except FileNotFoundError as exc:  # `make test` installs it (its chromium target); missing is a failure
        pytest.fail(str(exc))
    work = tmp_path_factory.mktemp("comfy-browser")
    shutil.copytree(WORKFLOWS / "input", work / "input")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "comfyui-server.log"
    log_path.unlink(missing_ok=True)
    srv = ComfyServer(models_dir=ensure_checkpoints().parent, input_dir=work / "input",
                      output_dir=work / "output", log_path=log_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="module")
def page(server, comfy_nodes):
    """The app's page. ``comfy_nodes`` (the in-process ComfyUI the IN_PROCESS tests run prompts with) is loaded
    first: loading it runs an event loop, which asyncio refuses while Playwright's loop runs."""
    with _frontend().browser_page(server.url, viewport=(1920, 1080)) as page:
        yield page


def _reduce_in_widgets(fe, page, wf: dict) -> None:
    for node in wf["nodes"]:
        if node["type"] in ("EmptyLatentImage", "EmptySD3LatentImage"):
            fe.set_widgets(page, node["id"], width=SIZE, height=SIZE)
        elif node["type"] in ("KSampler", "KSamplerDiffIER"):
            fe.set_widgets(page, node["id"], steps=STEPS)
        elif node["type"] == "SD_4XUpscale_Conditioning":
            fe.set_widgets(page, node["id"], scale_ratio=SIZE / SR_INPUT_SIZE)


def _open_and_check(fe, page, name: str) -> dict:
    """Open the UI file as Workflow > Open does; no missing node types, no dialog, every node and link in the
    graph; a screenshot. Returns the file's workflow."""
    path = WORKFLOWS / f"{name}.json"
    wf = json.loads(path.read_text())
    fe.load_file(page, path, expected_nodes=len(wf["nodes"]))
    assert fe.missing_reports(page) == []
    page.wait_for_timeout(500)
    dialogs = page.locator(".p-dialog")
    assert dialogs.count() == 0, dialogs.first.inner_text()[:1000]
    graph = fe.graph_summary(page)
    assert graph["nodes"] == {str(n["id"]): n["type"] for n in wf["nodes"]}
    assert sorted(graph["links"]) == sorted(link[1:6] for link in wf["links"])
    fe.fit_view(page)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    return wf


@pytest.mark.parametrize("name", ORDER)
def test_ui_workflow_loads_and_runs_in_the_browser(server, page, name):
    fe = _frontend()
    wf = _open_and_check(fe, page, name)
    _reduce_in_widgets(fe, page, wf)
    log_before = len(server.log_text())
    run = fe.queue_from_page(page)
    entry = server.client.wait_history(run["prompt_id"], timeout=60)
    assert entry is not None and entry["status"]["status_str"] == "success", entry
    prompt = entry["prompt"][2]  # what the page sent: the workflow as loaded, with the reduced widgets
    assert {k: v["class_type"] for k, v in prompt.items()} == ui_nodes(wf)
    (save_id,) = [k for k, v in prompt.items() if v["class_type"] == "SaveImage"]
    (image,) = entry["outputs"][save_id]["images"]
    with Image.open(server.output_file(image)) as im:
        assert im.size == expected_size(name, prompt)
    for sid in (k for k, v in prompt.items() if v["class_type"] == "KSamplerDiffIER"):
        assert re.match(rf"DiffIER consistency: {STEPS} steps corrected", entry["outputs"][sid]["text"][0])
    if any(v["class_type"] == "DiffIERGuider" for v in prompt.values()):
        assert f"DiffIER (consistency): {STEPS} steps corrected" in server.log_text()[log_before:]
    page.screenshot(path=str(ARTIFACTS / f"{name}-after-run.png"))


def _without_unset_defaults(page_prompt: dict, api_prompt: dict, object_info: dict) -> dict:
    """``page_prompt`` less the inputs ``api_prompt`` leaves out that the page sends only as a frontend: optional
    inputs at their defaults, and values of frontend-only widgets the node does not declare (the server ignores
    them; Preview as Text's ``preview`` display)."""
    out = json.loads(json.dumps(page_prompt))
    for node_id, node in out.items():
        declared = object_info[node["class_type"]]["input"]
        optional = declared.get("optional", {})
        for name in set(node["inputs"]) - set(api_prompt.get(node_id, {}).get("inputs", {})):
            undeclared = name not in optional and name not in declared.get("required", {})
            if undeclared or (name in optional and node["inputs"][name] == optional[name][1].get("default")):
                del node["inputs"][name]
    return out


@pytest.mark.parametrize("name", IN_PROCESS)
def test_ui_workflow_loads_in_the_browser_and_its_prompt_runs_in_process(server, page, comfy_nodes, comfy_loop, name,
                                                                         tmp_path):
    fe = _frontend()
    wf = _open_and_check(fe, page, name)
    _reduce_in_widgets(fe, page, wf)
    page_prompt = fe.graph_to_prompt(page)
    api_prompt = reduce_for_ci(json.loads((WORKFLOWS / "api" / f"{name}.json").read_text()), SIZE, STEPS)
    assert _without_unset_defaults(page_prompt, api_prompt, server.client.get_json("/object_info")) == api_prompt

    family, files = IN_PROCESS[name]
    outputs = run_with_tiny_loaders(comfy_nodes, comfy_loop, page_prompt, make_pipeline(family), files, tmp_path)
    (save_id,) = [k for k, v in page_prompt.items() if v["class_type"] == "SaveImage"]
    (image,) = outputs[save_id]["images"]
    assert_image_file(saved_image_path(tmp_path, image), (SIZE, SIZE), f"browser-{name}")
    assert_diffier_reports(page_prompt, outputs)
