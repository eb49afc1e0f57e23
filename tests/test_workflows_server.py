"""The shipped API workflows run unchanged on a real ComfyUI server, queued over HTTP and followed on /ws.

The checkpoints are full-size, random-weight models with the real architectures and the exact file
names the workflows use (``scripts/checkpoints.py``); the only change to each workflow is its size and
step count (64×64, 2 steps), to keep CI fast.

The SDXL and Flux dev workflows (``IN_PROCESS``) run through ComfyUI's real PromptExecutor in this process instead,
with only their loader nodes' outputs replaced by tiny models (``inprocess_workflows.py``): one run of a full-size
random SDXL takes minutes on a 2-core CPU, and so does one prompt through Flux's T5-XXL, which ComfyUI builds at
full size only (workflows/README.md, "How they are tested").
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from inprocess_workflows import run_with_tiny_loaders, saved_image_path
from pack_loader import import_pack_file
from PIL import Image
from tiny_models import make_pipeline

from scripts.checkpoints import SD21_EPS, ensure_checkpoints
from scripts.comfy_http import PromptRejected
from scripts.comfy_server import ComfyServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO_ROOT / "workflows"
API_DIR = WORKFLOWS / "api"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "workflows"
# x4 first, then the SD 2.1 workflows, so the bad-request test after them finds SD 2.1 still loaded
ORDER = ("sd_x4_upscale", "sd21_txt2img_ksampler_diffier", "sd21_txt2img_guider", "sd21_txt2img_rescalecfg_diffier",
         "guidance_sweep")
NODE_IDS = ("DiffIERGuider", "KSamplerDiffIER", "DiffIERCFGGuider")
SIZE, STEPS, SR_INPUT_SIZE = 64, 2, 128
SWEEP_COLS, SWEEP_SPACING = 4, 8
EXPECTED_SIZE = {  # (width, height) of the saved image after reduce_for_ci
    "sd21_txt2img_ksampler_diffier": (SIZE, SIZE),
    "sd21_txt2img_guider": (SIZE, SIZE),
    "sd21_txt2img_rescalecfg_diffier": (SIZE, SIZE),
    "sd_x4_upscale": (SIZE, SIZE),
    "guidance_sweep": None,  # the stitched grid plus DiffIER Label Grid's bands: see labelled_sweep_layout
}
#: workflows run in-process with tiny models -> (tiny pipeline, the model file each loader input names)
IN_PROCESS = {
    "sdxl_txt2img_ksampler_diffier": ("sdxl", {"ckpt_name": "sd_xl_base_1.0.safetensors"}),
    "flux_dev_txt2img_ksampler_diffier": ("flux_dev", {
        "unet_name": "flux1-dev.safetensors", "clip_name1": "t5xxl_fp16.safetensors",
        "clip_name2": "clip_l.safetensors", "vae_name": "ae.safetensors"}),
}


def labelled_sweep_layout(prompt: dict):
    """The 4×2 grid of SIZE tiles (ImageStitch, SWEEP_SPACING apart) plus the header band and the left margin."""
    drawing = import_pack_file("nodes/grid_drawing.py")
    (lid,) = nodes_of(prompt, "DiffIERLabelGrid")
    inputs = prompt[lid]["inputs"]
    assert inputs["spacing"] == SWEEP_SPACING
    cols, rows = drawing.parse_labels(inputs["columns"]), drawing.parse_labels(inputs["rows"])
    assert len(cols) == SWEEP_COLS and len(rows) == 2
    layout = drawing.grid_layout(SWEEP_COLS * SIZE + (SWEEP_COLS - 1) * SWEEP_SPACING, 2 * SIZE + SWEEP_SPACING,
                              cols, rows, SWEEP_SPACING, inputs["font_size"])
    assert layout.header_height > 0 and layout.margin_width > 0
    return layout


def load_api(name: str) -> dict:
    return json.loads((API_DIR / f"{name}.json").read_text())


def reduce_for_ci(prompt: dict, size: int = SIZE, steps: int = STEPS) -> dict:
    """The workflow unchanged except its resolution and step count."""
    p = copy.deepcopy(prompt)
    for node in p.values():
        inputs = node["inputs"]
        if node["class_type"] in ("EmptyLatentImage", "EmptySD3LatentImage"):
            inputs.update(width=size, height=size)
        if node["class_type"] == "SD_4XUpscale_Conditioning":
            inputs["scale_ratio"] = size / SR_INPUT_SIZE
        if "steps" in inputs:
            inputs["steps"] = steps
    return p


def nodes_of(prompt: dict, class_type: str) -> list[str]:
    return [k for k, v in prompt.items() if v["class_type"] == class_type]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = ensure_checkpoints().parent
    work = tmp_path_factory.mktemp("comfy-server")
    input_dir = work / "input"
    input_dir.mkdir()
    for f in (WORKFLOWS / "input").iterdir():
        shutil.copy(f, input_dir / f.name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "comfyui-server.log"
    log_path.unlink(missing_ok=True)
    srv = ComfyServer(models_dir=models, input_dir=input_dir, output_dir=work / "output", log_path=log_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


def test_object_info_lists_the_three_nodes_with_tooltips(server):
    info = server.client.get_json("/object_info")
    for node_id in NODE_IDS:
        assert node_id in info, f"{node_id} missing from /object_info"
        spec = info[node_id]
        assert spec["description"] and spec["category"] == "sampling/diffier"
        for name, (_, options) in ((n, (s[0], s[1] if len(s) > 1 else {}))
                                   for n, s in spec["input"]["required"].items()):
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip in /object_info"
    assert info["KSamplerDiffIER"]["output_name"] == ["LATENT", "diffier_info"]
    for node_id in ("SD_4XUpscale_Conditioning", "ImageStitch", "PreviewAny"):
        assert node_id in info  # the core nodes the workflows use


def _assert_image(server, result, save_id: str, size: tuple[int, int], name: str) -> np.ndarray:
    images = result.outputs[save_id]["images"]
    assert len(images) == 1
    return assert_image_file(server.output_file(images[0]), size, name)


def assert_image_file(path: Path, size: tuple[int, int], name: str) -> np.ndarray:
    """The saved PNG at ``path``: ``size``, finite, not constant; copied to the artifacts as ``<name>.png``."""
    assert path.is_file(), path
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / f"{name}.png")
    with Image.open(path) as im:
        assert im.size == size
        arr = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert np.isfinite(arr).all()
    assert arr.std() > 0.0, "the image is constant (NaNs become 0 on save)"
    return arr


def assert_diffier_info(text: str, steps: int) -> None:
    info = json.loads(text)
    assert info["steps_corrected"] == steps and len(info["steps"]) == steps
    assert (info["extra_model_evals"] > 0) == (steps > 0)
    for step in info["steps"]:
        assert all(step["input_finite"]), step
        assert all(step["kept"]), step
        assert all(np.isfinite(step["loss_final"])), step


SUMMARY = re.compile(rf"DiffIER consistency: {STEPS} steps corrected, [0-9.]+ mean iterations, "
                     r"[1-9][0-9]* extra evaluations")
SKIPPED_AT_CFG_1 = re.compile(r"DiffIER consistency: 0 steps corrected, .* DiffIER did nothing in this run: "
                              rf"cfg = 1 at {STEPS} of {STEPS} guided steps.*at_cfg_1 = skip.*")


def skips_at_cfg_1(inputs: dict) -> bool:
    """A sampler at cfg 1 whose at_cfg_1 (default skip) is not correct: DiffIER must say it did nothing."""
    return inputs["cfg"] == 1.0 and inputs.get("at_cfg_1", "skip") != "correct"


def assert_diffier_reports(prompt: dict, outputs: dict) -> None:
    """Every KSampler (DiffIER) says it corrected all STEPS steps (its ui text, recorded in /history), or, at cfg 1
    with at_cfg_1 = skip, that it did nothing and why; Preview as Text shows the per-step ``diffier_info`` JSON."""
    for sid in nodes_of(prompt, "KSamplerDiffIER"):
        (text,) = outputs[sid]["text"]
        assert (SKIPPED_AT_CFG_1 if skips_at_cfg_1(prompt[sid]["inputs"]) else SUMMARY).fullmatch(text), text
    for pid in nodes_of(prompt, "PreviewAny"):
        sid, slot = prompt[pid]["inputs"]["source"]
        assert (prompt[sid]["class_type"], slot) == ("KSamplerDiffIER", 1)  # its diffier_info output
        (info,) = outputs[pid]["text"]
        assert_diffier_info(info, 0 if skips_at_cfg_1(prompt[sid]["inputs"]) else STEPS)


@pytest.mark.parametrize("name", ORDER)
def test_api_workflow_runs_unchanged(server, name):
    shipped = load_api(name)
    prompt = reduce_for_ci(shipped)
    log_before = len(server.log_text())
    result = server.run(prompt, timeout=600)
    log = server.log_text()[log_before:]
    (save_id,) = nodes_of(prompt, "SaveImage")
    layout = labelled_sweep_layout(prompt) if name == "guidance_sweep" else None
    size = (layout.width, layout.height) if layout else EXPECTED_SIZE[name]
    arr = _assert_image(server, result, save_id, size, name)
    assert "invalid value encountered" not in log  # numpy's warning when SaveImage casts NaN

    samplers = nodes_of(prompt, "KSamplerDiffIER") + nodes_of(prompt, "KSampler")
    for sid in samplers:  # progress reached the page's websocket for every sampler, step by step
        assert (STEPS, STEPS) in result.progress(sid), f"no final progress message for sampler {sid}"

    assert_diffier_reports(prompt, result.outputs)
    for sid in nodes_of(prompt, "KSamplerDiffIER"):
        assert result.executed(sid) and result.executed(sid)[0]["text"] == result.outputs[sid]["text"]

    if nodes_of(prompt, "DiffIERGuider"):  # model-patch route: the run summary goes to the server log
        assert re.search(rf"DiffIER \(consistency\): {STEPS} steps corrected", log), log[-3000:]
    if name == "sd21_txt2img_rescalecfg_diffier":  # loader -> RescaleCFG -> DiffIER Guider -> KSampler
        (rid,), (gid,), (kid,) = (nodes_of(prompt, t) for t in ("RescaleCFG", "DiffIERGuider", "KSampler"))
        assert prompt[gid]["inputs"]["model"] == [rid, 0] and prompt[kid]["inputs"]["model"] == [gid, 0]
        without = copy.deepcopy(prompt)  # the same graph with RescaleCFG taken out: RescaleCFG must matter
        without[gid]["inputs"]["model"] = without.pop(rid)["inputs"]["model"]
        arr_without = _assert_image(server, server.run(without, timeout=600), save_id, size, f"{name}-no-rescale")
        assert np.abs(arr - arr_without).max() > 0
    if name == "guidance_sweep":
        assert len(nodes_of(prompt, "KSamplerDiffIER")) == len(nodes_of(prompt, "KSampler")) == SWEEP_COLS
        cfgs = [prompt[s]["inputs"]["cfg"] for s in nodes_of(prompt, "KSampler")]
        assert cfgs == [prompt[s]["inputs"]["cfg"] for s in nodes_of(prompt, "KSamplerDiffIER")]
        assert len({prompt[s]["inputs"]["seed"] for s in samplers}) == 1
        cols = [f"CFG {c:g}" for c in cfgs]  # the drawn column labels name the CFG of the samplers below them
        (lid,) = nodes_of(prompt, "DiffIERLabelGrid")
        assert import_pack_file("nodes/grid_drawing.py").parse_labels(prompt[lid]["inputs"]["columns"]) == cols
        header, margin = arr[:layout.header_height], arr[layout.header_height:, :layout.margin_width]
        assert header.max() == 255 and header.min() < 100  # white bands with dark label ink
        assert margin.max() == 255 and margin.min() < 100
    ckpt = prompt[nodes_of(prompt, "CheckpointLoaderSimple")[0]]["inputs"]["ckpt_name"]
    if ckpt.startswith("v2-1_768") and "model_type" in log:
        assert "model_type V_PREDICTION" in log  # ComfyUI detected the 768-v checkpoint as v-prediction


@pytest.mark.parametrize("name", IN_PROCESS)
def test_api_workflow_runs_in_process_with_tiny_models(comfy_nodes, comfy_loop, name, tmp_path):
    """The shipped API file, reduced like the others, through ComfyUI's PromptExecutor; only the loaders are tiny."""
    family, files = IN_PROCESS[name]
    prompt = reduce_for_ci(load_api(name))
    outputs = run_with_tiny_loaders(comfy_nodes, comfy_loop, prompt, make_pipeline(family), files, tmp_path)
    (save_id,) = nodes_of(prompt, "SaveImage")
    (image,) = outputs[save_id]["images"]
    assert_image_file(saved_image_path(tmp_path, image), (SIZE, SIZE), name)
    assert_diffier_reports(prompt, outputs)
    if family == "flux_dev":  # cfg 1, guidance from FluxGuidance on the positive, DiffIER corrects at cfg 1
        (ks,), (guidance,) = nodes_of(prompt, "KSamplerDiffIER"), nodes_of(prompt, "FluxGuidance")
        inputs = prompt[ks]["inputs"]
        assert inputs["cfg"] == 1.0 and inputs["positive"] == [guidance, 0] and inputs["at_cfg_1"] == "correct"
        (note,) = [n for n in json.loads((WORKFLOWS / f"{name}.json").read_text())["nodes"] if n["type"] == "Note"]
        assert f"at_cfg_1 = {inputs['at_cfg_1']} runs DiffIER" in note["widgets_values"][0]  # the canvas says why


def test_in_process_loaders_take_only_the_workflow_files(comfy_nodes, comfy_loop, tmp_path):
    """A loader naming another file fails validation, as a file missing on a server does."""
    family, files = IN_PROCESS["sdxl_txt2img_ksampler_diffier"]
    prompt = reduce_for_ci(load_api("sdxl_txt2img_ksampler_diffier"))
    (loader,) = nodes_of(prompt, "CheckpointLoaderSimple")
    prompt[loader]["inputs"]["ckpt_name"] = "sd_xl_refiner_1.0.safetensors"
    with pytest.raises(AssertionError, match="fails validation.*value_not_in_list"):
        run_with_tiny_loaders(comfy_nodes, comfy_loop, prompt, make_pipeline(family), files, tmp_path)


def _bad(prompt: dict, node_id: str, **inputs) -> dict:
    p = copy.deepcopy(prompt)
    p[node_id]["inputs"].update(inputs)
    return p


def test_bad_requests_get_validation_errors_and_the_server_keeps_serving(server):
    good = reduce_for_ci(load_api("sd21_txt2img_ksampler_diffier"))
    (ks,) = nodes_of(good, "KSamplerDiffIER")
    guider_wf = reduce_for_ci(load_api("sd21_txt2img_guider"))
    (gd,) = nodes_of(guider_wf, "DiffIERGuider")
    # The nodes' validate_inputs judges only V3 combos (which ComfyUI 0.3.75 does not check): those errors arrive
    # as custom_validation_failed with DiffIER's message naming the input. ComfyUI's own min/max and type checks
    # answer for every other input, each error attached to the one input it belongs to.
    custom = "custom_validation_failed"
    cases = [  # (prompt, node, accepted error types, text the error must contain)
        (_bad(good, ks, eta=2.0), ks, {"value_bigger_than_max"}, "eta"),
        (_bad(good, ks, max_iters=-1), ks, {"value_smaller_than_min"}, "max_iters"),
        (_bad(guider_wf, gd, threshold=5.0), gd, {"value_bigger_than_max"}, "threshold"),
        (_bad(good, ks, eta="lots"), ks, {"invalid_input_type"}, "eta"),
        (_bad(good, ks, max_iters="four"), ks, {"invalid_input_type"}, "max_iters"),
        (_bad(good, ks, model=["2", 0]), ks, {"return_type_mismatch"}, "model"),
        (_bad(good, ks, mode="bogus"), ks, {"value_not_in_list", custom}, "'mode' must be"),
        (_bad(guider_wf, gd, mode="bogus"), gd, {"value_not_in_list", custom}, "'mode' must be"),
        (_bad(good, ks, start_percent=1.5), ks, {"value_bigger_than_max"}, "start_percent"),
    ]
    for prompt, node_id, kinds, needle in cases:
        with pytest.raises(PromptRejected) as err:
            server.client.queue_prompt(prompt)
            pytest.fail(f"accepted: {node_id} {prompt[node_id]['inputs']}")
        assert err.value.status == 400, err.value
        body = err.value.body
        assert body["error"]["type"] == "prompt_outputs_failed_validation", body
        errors = body["node_errors"][node_id]["errors"]
        assert any(e["type"] in kinds and needle in e["details"] + e["message"] for e in errors), \
            (kinds, needle, errors)
        if custom not in kinds:  # a schema check: the error names that one input and nothing else
            assert {e["extra_info"]["input_name"] for e in errors} == {needle}, errors
        assert server.alive()
    # unknown node type: rejected as a whole prompt
    broken = copy.deepcopy(good)
    broken[ks]["class_type"] = "KSamplerDiffIERDoesNotExist"
    with pytest.raises(PromptRejected) as err:
        server.client.queue_prompt(broken)
    assert err.value.status == 400 and err.value.body["error"]["type"] == "invalid_prompt"
    # the server still serves the next good prompt (new seed: not answered from ComfyUI's cache)
    good[ks]["inputs"]["seed"] += 1
    result = server.run(good, timeout=600)
    _assert_image(server, result, nodes_of(good, "SaveImage")[0], (SIZE, SIZE), "after_bad_requests")
    assert server.client.get_json("/queue")["queue_running"] == []


def test_text_to_image_on_the_eps_variant(server):
    prompt = reduce_for_ci(load_api("sd21_txt2img_ksampler_diffier"))
    (loader,) = nodes_of(prompt, "CheckpointLoaderSimple")
    prompt[loader]["inputs"]["ckpt_name"] = SD21_EPS
    log_before = len(server.log_text())
    result = server.run(prompt, timeout=600)
    assert "model_type EPS" in server.log_text()[log_before:]
    _assert_image(server, result, nodes_of(prompt, "SaveImage")[0], (SIZE, SIZE), "sd21_eps_txt2img")
    assert_diffier_info(result.outputs[nodes_of(prompt, "PreviewAny")[0]]["text"][0], STEPS)
