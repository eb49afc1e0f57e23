"""Unit tests of the sweep's pure parts: metric math, the ``--method`` grammar, workflow patching, the job store
and the grid. The end-to-end behaviour on real servers is in ``test_sweep_servers.py``."""

from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sweep import client, graph, report, runner
from sweep import methods as methods_mod
from sweep import metrics as M

REPO = Path(__file__).resolve().parent.parent


def digits() -> dict:
    return json.loads((REPO / "workflows" / "demo_digits_api.json").read_text())


# -- metrics ------------------------------------------------------------------------------------------------------

def test_clipped_fraction_counts_channel_values_at_either_end():
    img = np.full((4, 5, 3), 128, np.uint8)
    img[0, :, 0] = 0      # 5 values
    img[1, :2, :] = 255   # 6 values
    img[2, 0, 1] = 1      # not clipped
    assert M.clipped_fraction(img) == pytest.approx(11 / 60)
    assert M.clipped_fraction(img.astype(np.float64) / 255) == pytest.approx(11 / 60)


def test_mean_saturation_is_hsv_saturation():
    img = np.zeros((1, 4, 3), np.uint8)
    img[0, 0] = (255, 0, 0)      # 1
    img[0, 1] = (100, 100, 100)  # 0
    img[0, 2] = (200, 100, 50)   # 150/200
    # img[0, 3] black: 0 (not NaN)
    assert M.mean_saturation(img) == pytest.approx((1 + 0 + 0.75 + 0) / 4)


def test_diversity_is_the_mean_pairwise_rms_distance():
    base = np.full((64, 64, 3), 0.25)
    assert M.diversity([base, base.copy()]) == 0.0
    assert M.diversity([base, base + 0.5]) == pytest.approx(0.5)
    assert M.diversity([base, base + 0.5, base + 0.25]) == pytest.approx((0.5 + 0.25 + 0.25) / 3)
    assert M.diversity([base]) is None


def test_psnr_and_ssim_match_their_definitions():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    a = rng.random((37, 53, 3))
    b = np.clip(a + 0.08 * rng.standard_normal(a.shape), 0, 1)
    assert M.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1), rel=1e-12)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
                                channel_axis=2)
    assert M.ssim(a, b) == pytest.approx(ref, rel=1e-9)
    assert M.ssim(a, a) == pytest.approx(1.0) and M.psnr(a, a) == math.inf
    assert M.psnr(np.zeros((8, 8, 3)), np.full((8, 8, 3), 0.1)) == pytest.approx(20.0)


def test_metric_errors_name_the_problem():
    with pytest.raises(ValueError, match="50×40 but the reference is 40×50"):
        M.psnr(np.zeros((40, 50, 3)), np.zeros((50, 40, 3)))
    with pytest.raises(ValueError, match="NaN"):
        M.clipped_fraction(np.full((4, 4, 3), np.nan))
    with pytest.raises(ValueError, match="at least 11×11"):
        M.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


def test_features_are_4x4_thumbnails():
    img = np.zeros((96, 96, 3), np.uint8)
    img[:48, :48] = 255
    f = M.features(img).reshape(4, 4, 3)
    assert f.shape == (4, 4, 3) and f[:2, :2].min() == 1.0 and f[2:, :].max() == 0.0 and f[:, 2:].max() == 0.0
    assert M.features(np.zeros((3, 2, 3))).shape == (48,)  # smaller than 4×4: repeated up


# -- methods ------------------------------------------------------------------------------------------------------

def test_method_grammar_expands_alternatives_and_chains_in_order():
    ms = methods_mod.parse_methods(["cfg", "diffier:eta=0.02|0.05,max_iters=2|4", "rescalecfg:multiplier=0.7+diffier",
                                    "fast=diffier:max_iters=2", "x=APG:norm_threshold=5|10"])
    labels = [m.label for m in ms]
    assert labels == ["cfg", "diffier:eta=0.02,max_iters=2", "diffier:eta=0.02,max_iters=4",
                      "diffier:eta=0.05,max_iters=2", "diffier:eta=0.05,max_iters=4",
                      "rescalecfg:multiplier=0.7+diffier", "fast", "x[norm_threshold=5]", "x[norm_threshold=10]"]
    assert ms[0].steps == () and not ms[0].uses_diffier
    assert ms[5].canonical() == [{"node": "RescaleCFG", "inputs": {"multiplier": 0.7}},
                                 {"node": "DiffIERGuider", "inputs": {}}]
    assert ms[2].canonical() == [{"node": "DiffIERGuider", "inputs": {"eta": 0.02, "max_iters": 4}}]
    assert methods_mod.parse_method("diffier-cfg")[0].canonical()[0]["inputs"] == {"inner_guidance": "cfg"}
    assert methods_mod.parse_method("diffier:mode=paper")[0].canonical()[0]["inputs"] == {"mode": "paper"}


@pytest.mark.parametrize(("spec", "needle"), [
    ("diffier:eta", "'eta' is not key=value"),
    ("diffier:model=1", "'model' is wired by the sweep"),
    ("1bad", "bad node name '1bad'"),
    ("", "empty method"),
])
def test_method_errors_name_the_value(spec, needle):
    with pytest.raises(methods_mod.MethodSpecError, match=needle):
        methods_mod.parse_methods([spec])


def test_duplicate_labels_are_rejected():
    with pytest.raises(methods_mod.MethodSpecError, match="both labelled 'diffier'"):
        methods_mod.parse_methods(["diffier", "diffier"])


# -- workflow graph -----------------------------------------------------------------------------------------------

def txt2img(sampler: str = "KSampler") -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "3": {"class_type": sampler, "inputs": {"model": ["4", 0], "seed": 42, "steps": 20, "cfg": 7.0,
                                                "sampler_name": "euler", "scheduler": "normal", "positive": ["6", 0],
                                                "negative": ["7", 0], "latent_image": ["5", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "ComfyUI"}},
    }


def test_chain_goes_before_the_sampler_and_nothing_else_changes():
    wf = txt2img()
    original = copy.deepcopy(wf)
    points = graph.sweep_points(wf, need_prompt=True, need_seed=True)
    assert (str(points.cfg), str(points.prompt), str(points.seed)) == ("3.cfg", "6.text", "3.seed")
    (method,) = methods_mod.parse_method("rescalecfg:multiplier=0.7+diffier:eta=0.1")
    out = graph.build_job_workflow(wf, points, method, 5.0, "a dog", 7)
    assert wf == original  # the user's workflow is not changed
    assert out["diffier_sweep_1"]["class_type"] == "RescaleCFG" and out["diffier_sweep_1"]["inputs"] == {
        "multiplier": 0.7, "model": ["4", 0]}
    assert out["diffier_sweep_2"]["inputs"] == {"eta": 0.1, "model": ["diffier_sweep_1", 0]}
    assert out["3"]["inputs"]["model"] == ["diffier_sweep_2", 0]
    assert (out["3"]["inputs"]["cfg"], out["3"]["inputs"]["seed"], out["6"]["inputs"]["text"]) == (5.0, 7, "a dog")
    changed = copy.deepcopy(out)
    for k in ("diffier_sweep_1", "diffier_sweep_2"):
        del changed[k]
    changed["3"]["inputs"].update(model=["4", 0], cfg=7.0, seed=42)
    changed["6"]["inputs"]["text"] = "a cat"
    assert changed == original
    plain = graph.build_job_workflow(wf, points, methods_mod.parse_method("cfg")[0], 3.0, None, None)
    assert plain["3"]["inputs"]["model"] == ["4", 0] and plain["6"]["inputs"]["text"] == "a cat"
    assert plain["3"]["inputs"]["seed"] == 42 and set(plain) == set(wf)


def test_a_sampler_with_diffier_built_in_gets_its_own_diffier_off():
    wf = digits()
    points = graph.sweep_points(wf, prompt_input="2.digit", need_seed=True)
    out = graph.build_job_workflow(wf, points, methods_mod.parse_method("diffier")[0], 3.0, "7", 1)
    assert out["5"]["inputs"]["eta"] == 0.0 and out["5"]["inputs"]["model"] == ["diffier_sweep_1", 0]
    assert out["2"]["inputs"]["digit"] == "7" and wf["5"]["inputs"]["eta"] == 0.05


def test_sampler_custom_advanced_seed_is_on_its_random_noise():
    wf = txt2img()
    del wf["3"]
    wf["10"] = {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                                                      "cfg": 4.0}}
    wf["11"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}}
    wf["12"] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["11", 0], "guider": ["10", 0],
                                                                  "sampler": ["13", 0], "sigmas": ["14", 0],
                                                                  "latent_image": ["5", 0]}}
    points = graph.sweep_points(wf, need_prompt=True, need_seed=True)
    assert (points.sampler, str(points.cfg), str(points.seed), str(points.prompt)) == ("10", "10.cfg",
                                                                                       "11.noise_seed", "6.text")


@pytest.mark.parametrize(("edit", "kwargs", "needle"), [
    (lambda wf: wf.pop("3"), {}, "the workflow has no sampler node"),
    (lambda wf: wf.update({"20": copy.deepcopy(wf["3"])}), {}, r"2 sampler nodes \(3: KSampler, 20: KSampler\)"),
    (lambda wf: None, {"sampler_id": "99"}, "--sampler 99: the workflow has no node '99'"),
    (lambda wf: None, {"sampler_id": "8"}, "node 8 is a VAEDecode"),
    (lambda wf: wf["3"]["inputs"].update(seed=["30", 0]), {"need_seed": True}, "gets its seed from node 30"),
    (lambda wf: wf["3"]["inputs"].update(positive=["5", 0]), {"need_prompt": True},
     "comes from node 5 .EmptyLatentImage., which has no 'text' input"),
    (lambda wf: None, {"prompt_input": "6.txt"}, "node 6 .CLIPTextEncode. has no input 'txt'"),
    (lambda wf: None, {"seed_input": "nodot"}, "expected NODE_ID.INPUT"),
])
def test_workflow_errors_name_the_node(edit, kwargs, needle):
    wf = txt2img()
    edit(wf)
    with pytest.raises(graph.WorkflowError, match=needle):
        graph.sweep_points(wf, **kwargs)


def test_load_workflow_explains_ui_format():
    with pytest.raises(graph.WorkflowError, match="UI-format workflow.*Export \\(API\\)"):
        graph.load_workflow(json.dumps({"nodes": [], "links": []}), "wf.json")
    with pytest.raises(graph.WorkflowError, match="wf.json: not JSON"):
        graph.load_workflow("{", "wf.json")
    assert graph.load_workflow(json.dumps({"prompt": txt2img()}))["3"]["class_type"] == "KSampler"


OBJECT_INFO = {  # the two combo formats ComfyUI's /object_info uses
    "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["a.safetensors", "b.safetensors"], {}]}},
                               "output": ["MODEL", "CLIP", "VAE"]},
    "KSampler": {"input": {"required": {"sampler_name": ["COMBO", {"options": ["euler", "dpmpp_2m"]}]}},
                 "output": ["LATENT"]},
    "RescaleCFG": {"input": {"required": {"model": ["MODEL"], "multiplier": ["FLOAT", {"default": 0.7}]}},
                   "output": ["MODEL"]},
    "APG": {"input": {"required": {"model": ["MODEL", {}], "eta": ["FLOAT", {"default": 1.0}],
                                   "momentum": ["FLOAT", {"default": 0.0}]}}, "output": ["MODEL"]},
    "VAEDecode": {"input": {}, "output": ["IMAGE"]},
}


def test_server_checks_name_the_missing_piece():
    wf = {k: v for k, v in txt2img().items() if k in ("4", "3", "8")}
    methods = methods_mod.parse_methods(["cfg", "diffier", "apg:etaa=1", "vaedecode=VAEDecode"])
    problems = graph.check_against_server(wf, OBJECT_INFO, "http://h:1", methods)
    text = "\n".join(problems)
    assert "server http://h:1 has no DiffIERGuider node: the ComfyUI-DiffIER pack is not installed" in text
    assert ("workflow node 4 (CheckpointLoaderSimple): missing model file: ckpt_name = 'model.safetensors' is not in "
            "that server's models/checkpoints list (the server offers: 'a.safetensors', 'b.safetensors')") in text
    assert "method 'apg:etaa=1': APG has no input 'etaa'" in text
    assert "method 'vaedecode': VAEDecode is not a MODEL → MODEL patch node" in text
    wf["4"]["inputs"]["ckpt_name"] = "b.safetensors"
    wf["3"]["inputs"]["sampler_name"] = "bogus"
    problems = graph.check_against_server(wf, OBJECT_INFO, "http://h:1", methods_mod.parse_methods(["rescalecfg"]))
    assert problems == ["server http://h:1, workflow node 3 (KSampler): sampler_name = 'bogus' is not one of the "
                        "allowed values (the server offers: 'euler', 'dpmpp_2m')"]


def test_fill_defaults_completes_patch_nodes_only():
    wf = graph.build_job_workflow(txt2img(), graph.sweep_points(txt2img()),
                                  methods_mod.parse_method("apg:eta=2+rescalecfg")[0], 3.0, None, None)
    full = graph.fill_defaults(wf, OBJECT_INFO)
    assert full["diffier_sweep_1"]["inputs"] == {"eta": 2.0, "momentum": 0.0, "model": ["4", 0]}
    assert isinstance(full["diffier_sweep_1"]["inputs"]["eta"], float)
    assert full["diffier_sweep_2"]["inputs"]["multiplier"] == 0.7
    assert full["3"] == wf["3"]  # the user's nodes are left alone
    assert wf["diffier_sweep_1"]["inputs"] == {"eta": 2, "model": ["4", 0]}  # the input copy is not changed


def test_upstream_patches_follow_the_model_path():
    wf = txt2img()
    wf["20"] = {"class_type": "DiffIERGuider", "inputs": {"model": ["4", 0]}}
    wf["3"]["inputs"]["model"] = ["20", 0]
    assert graph.upstream_patches(wf, graph.sweep_points(wf), ("DiffIERGuider",)) == ["20"]


# -- job store, ids, grid -----------------------------------------------------------------------------------------

def png(value: int, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(buf, format="PNG")
    return buf.getvalue()


def make_job(method: str = "cfg", omega: float = 3.0, seed: int = 0) -> object:
    spec = {"method": method, "omega": omega, "seed": seed}
    return runner.Job(runner.make_job_id(spec), method, omega, 0, None, seed, {}, spec)


def test_job_ids_are_hashes_of_what_is_rendered():
    a = runner.make_job_id({"omega": 3.0, "method": [{"node": "APG", "inputs": {"eta": 1}}]})
    b = runner.make_job_id({"method": [{"inputs": {"eta": 1}, "node": "APG"}], "omega": 3.0})
    assert a == b and len(a) == 16
    assert a != runner.make_job_id({"omega": 3.5, "method": [{"node": "APG", "inputs": {"eta": 1}}]})


def test_store_keeps_finished_jobs_and_never_overwrites_them(tmp_path):
    store = runner.JobStore(tmp_path)
    job = make_job()
    assert not store.is_done(job.id)
    done = client.Finished("pid-1", {}, [({"filename": "x.png"}, png(255))], wall_s=2.0, exec_s=1.0)
    rec = store.save_done(job, "http://a", done)
    assert rec["images"][0]["clipped_fraction"] == 1.0 and rec["wall_s_per_image"] == 2.0
    assert store.is_done(job.id) and (tmp_path / rec["images"][0]["path"]).is_file()
    assert store.save_done(job, "http://b", done) is None  # a second finish is not recorded
    store.save_failed(job, "boom")  # a late failure never replaces a result
    assert store.load(job.id)["server"] == "http://a" and store.load(job.id)["status"] == "done"
    (tmp_path / rec["images"][0]["path"]).unlink()
    assert not store.is_done(job.id)  # a record without its image is not finished


def test_grid_has_rows_omega_and_columns_methods(tmp_path):
    paths = {}
    for i, (m, w) in enumerate([("cfg", 1.5), ("diffier", 1.5), ("cfg", 5.0)]):
        p = tmp_path / f"{i}.png"
        p.write_bytes(png(60 * (i + 1), size=100))
        paths[(m, w)] = p
    paths[("diffier", 5.0)] = None  # failed
    grid = np.asarray(report.make_grid(paths, ["cfg", "diffier"], [1.5, 5.0], cell=100, title="t"))
    h, w = grid.shape[:2]
    assert (w, h) == (70 + 2 * 106, 46 + 2 * 106)
    cell = lambda r, c: grid[46 + r * 106 + 50, 70 + c * 106 + 50]  # noqa: E731 - centre pixel of a tile
    assert tuple(cell(0, 0)) == (60,) * 3 and tuple(cell(0, 1)) == (120,) * 3 and tuple(cell(1, 0)) == (180,) * 3
    assert tuple(grid[46 + 106 + 5, 70 + 106 + 90]) == (160,) * 3  # the failed tile is grey


def test_reference_images_pair_by_key(tmp_path):
    for name in ("p0_s1_0_abcdef12.png", "p1_sx_0.png", "photo.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    refs = report.load_reference(tmp_path)
    assert set(refs) == {"p0_s1_0", "p1_sx_0", "#photo.jpg"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        report.load_reference(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        report.load_reference(tmp_path / "missing")
