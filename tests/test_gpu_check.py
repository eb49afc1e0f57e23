"""The GPU check's CPU path and its bundle: ``python -m benchmarks.gpu_check --device cpu --quick`` and
``scripts/gpu_bundle.py`` (no GPU and no download here; the GPU run itself happens on a lent machine).

The quick run executes every section on the CPU with a narrow SD 2.1 UNet; what it reports is checked for
structure and for the deterministic parts (the checks' verdicts, host reads per step, model evaluations). Wall
times are never asserted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from scripts import gpu_bundle as bundle

REPO = Path(__file__).resolve().parent.parent

SECTIONS = ("checks", "syncs", "kernel", "end_to_end", "samplers")
CHECKS = ("core_dtypes", "model_dtypes", "routes", "batch_independence", "non_finite")
VARIANTS = ("paper", "quality", "balanced", "fast")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick", "--out",
                           str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not (out / "overhead_cuda.json").exists(), "a CPU run must never write the CUDA result's name"
    assert (out / "overhead_cuda_cpu_dryrun.png").stat().st_size > 10_000
    return json.loads((out / "overhead_cuda_cpu_dryrun.json").read_text())


@pytest.mark.integration
@pytest.mark.slow
def test_every_section_ran_and_is_labelled_a_dry_run(result):
    assert result["schema"] == 1 and result["dry_run"] is True and result["quick"] is True
    assert {name: s["status"] for name, s in result["sections"].items()} == dict.fromkeys(SECTIONS, "done")
    meta = result["meta"]
    assert meta["device"] == "cpu" and meta["comfyui"] == "0.3.75" and meta["sizes"]["unet_channels"] == 32
    assert set(result["summary"]) >= {"checks_ok", "host_syncs_added_per_step", "kernel_ratio_to_unet_eval_max",
                                      "end_to_end_ratio"}


@pytest.mark.integration
@pytest.mark.slow
def test_every_check_passes_on_the_cpu(result):
    checks = result["checks"]
    assert checks["ok"] == dict.fromkeys(CHECKS, True) and checks["all_ok"] is True
    core = {(r["dtype"], r["mode"]): r for r in checks["core_dtypes"]}
    assert set(core) == {(d, m) for d in ("float32", "float16", "bfloat16") for m in ("paper", "consistency")}
    for (dtype, _), row in core.items():
        assert row["output_dtype"] == dtype and row["max_abs_vs_float32_on_same_values"] <= row["one_ulp_at_max"]
    assert {r["model_dtype"] for r in checks["model_dtypes"]} == {"float32", "float16", "bfloat16"}
    assert checks["routes"]["guider_max_abs"] == 0.0 and checks["routes"]["cfg_guider_max_abs"] == 0.0
    assert checks["batch_independence"]["mixing_margin"] >= 100
    assert checks["non_finite"]["nan_prediction"]["input_finite_flags"][1] == [False, True]


@pytest.mark.integration
@pytest.mark.slow
def test_every_sampler_runs_in_both_grad_modes(result):
    samplers = result["samplers"]
    assert samplers["ok"] is True and samplers["all_ran"] is True and samplers["interrupted"] == []
    rows = samplers["rows"]
    assert [r["sampler"] for r in rows] == ["euler", "lms", "dpmpp_2m_sde", "uni_pc"]
    assert all(r["ok"] and r["grad_modes_max_abs"] <= 0.01 * r["effect_max_abs"] for r in rows)
    uni_pc = rows[-1]     # ComfyUI samples uni_pc without no_grad: DiffIER keeps the graph it is given
    assert uni_pc["enable_grad"]["requires_grad"] and not uni_pc["inference_mode"]["requires_grad"]
    assert result["summary"]["checks_ok"]["samplers"] is True


@pytest.mark.integration
@pytest.mark.slow
def test_host_syncs_per_step(result):
    """paper adds none; consistency one (its early-exit test); one iteration (balanced) none; a partial window
    (fast) one, its σ test."""
    syncs = result["syncs"]
    assert syncs["core_step"] == {"paper": 0, "quality": 1, "balanced": 0}
    assert syncs["added_per_step"] == {"paper": 0, "quality": 1, "balanced": 0, "fast": 1}
    fast_sites = syncs["runs"]["fast"]["sites_longer_run"]
    assert any(site.startswith("pack:nodes/patch.py") for site in fast_sites), fast_sites
    assert not any(site.startswith("pack:") for site in syncs["runs"]["ksampler"]["sites_longer_run"])


@pytest.mark.integration
@pytest.mark.slow
def test_kernel_rows(result):
    kernel = result["kernel"]
    rows = kernel["rows"]
    assert {(r["variant"], r["dtype"], r["batch"]) for r in rows} == {
        (v, d, b) for v in ("paper", "quality", "balanced") for d in ("float16", "bfloat16") for b in (1, 2)}
    for row in rows:
        assert math.isfinite(row["ratio_to_unet_eval"]) and row["ratio_to_unet_eval"] > 0
        assert row["host_syncs_per_step"] == {"paper": 0, "quality": 1, "balanced": 0}[row["variant"]]
    assert set(kernel["unet"]) == {f"{d}/{b}" for d in ("float16", "bfloat16") for b in (1, 2)}


@pytest.mark.integration
@pytest.mark.slow
def test_end_to_end_evaluations(result):
    """Model rows per image against KSampler: balanced exactly 1.5×, fast below it, quality up to 3×."""
    methods = result["end_to_end"]["methods"]
    assert set(methods) == {"ksampler", *VARIANTS[1:]}
    ratio = {k: v["evals_ratio_to_ksampler"] for k, v in methods.items()}
    assert ratio["ksampler"] == 1.0 and ratio["balanced"] == 1.5
    assert 1.0 < ratio["fast"] <= ratio["balanced"] < ratio["quality"] <= 3.0
    for method in methods.values():
        assert method["median_seconds"] > 0 and len(method["seconds"]) == result["end_to_end"]["config"]["rounds"]


# -- the bundle ---------------------------------------------------------------------------------------------------
def test_every_bundled_distribution_is_installed_here():
    """``build`` takes each distribution at the version this Python runs the tests with."""
    for name in bundle.DISTRIBUTIONS:
        assert bundle.installed_version(name)


def test_missing_distributions_are_those_the_python_lacks():
    manifest = {"distributions": [{"name": "PyYAML"}, {"name": "torchsde"}, {"name": "scipy"}]}
    have = {"pyyaml", "scipy"}
    missing = bundle.missing_distributions(manifest, installed=lambda n: bundle.canonical(n) in have)
    assert [d["name"] for d in missing] == ["torchsde"]


def _fake_bundle(tmp_path: Path) -> Path:
    """A bundle with a two-file ComfyUI tree and one distribution, made with the builder's own functions."""
    tree = tmp_path / "tree"
    (tree / "custom_nodes").mkdir(parents=True)
    (tree / "comfyui_version.py").write_text('__version__ = "0.3.75"\n')
    (tree / "tests").mkdir()
    (tree / "tests" / "skipped.py").write_text("")
    (tree / "__pycache__").mkdir()
    (tree / "__pycache__" / "x.pyc").write_bytes(b"")
    (tree / "custom_nodes" / "link").symlink_to(tmp_path)
    wheel = tmp_path / "diffier_fake_dist-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("diffier_fake_mod/__init__.py", "VALUE = 42\n")
        zf.writestr("diffier_fake_dist-1.0.dist-info/METADATA", "Name: diffier-fake-dist\nVersion: 1.0\n")
    out = tmp_path / "bundle"
    (out / "dists").mkdir(parents=True)
    tops = bundle.wheel_to_archive(wheel, out / "dists" / "fake.tar.xz")
    with tarfile.open(out / "comfyui.tar.xz", "w:xz") as tar:
        bundle._add_tree(tar, tree, "comfyui/", bundle.TREE_EXCLUDES)
    manifest = {"schema": bundle.SCHEMA, "comfyui": "0.3.75", "python_version": "3.12",
                "comfyui_archive": {"file": "comfyui.tar.xz", "sha256": bundle.sha256(out / "comfyui.tar.xz")},
                "distributions": [{"name": "diffier-fake-dist", "version": "1.0", "file": "dists/fake.tar.xz",
                                   "sha256": bundle.sha256(out / "dists" / "fake.tar.xz"), "top_level": tops}],
                "stand_ins": bundle.STAND_INS}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_unpack_lays_out_a_comfyui_tree_with_the_pack_and_the_missing_packages(tmp_path):
    out = _fake_bundle(tmp_path)
    pack = tmp_path / "pack"
    pack.mkdir()
    report = bundle.unpack(out, tmp_path / "run", pack=pack, everything=True)
    run = tmp_path / "run"
    assert (run / "comfyui" / "comfyui_version.py").is_file()
    assert not (run / "comfyui" / "tests").exists() and not (run / "comfyui" / "__pycache__").exists()
    assert not (run / "comfyui" / "custom_nodes" / "link").exists()
    assert (run / "comfyui" / "custom_nodes" / "ComfyUI-DiffIER").resolve() == pack.resolve()
    assert (run / "web").is_dir() and json.loads((run / "unpacked.json").read_text()) == report
    assert report["from_bundle"] == ["diffier-fake-dist==1.0"] and report["stand_ins"] == ["av"]
    probe = ("import diffier_fake_mod, av\nfrom av.container import InputContainer\n"
             "from av.subtitles.stream import SubtitleStream\nassert diffier_fake_mod.VALUE == 42\n"
             "try:\n    av.open('x.mp4')\nexcept ImportError as e:\n    print('raised', e)\n")
    proc = subprocess.run([sys.executable, "-S", "-c", probe], env={"PYTHONPATH": str(run / "site")},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "raised PyAV is not installed" in proc.stdout


def test_unpack_skips_what_the_python_has_and_refuses_a_changed_archive(tmp_path):
    out = _fake_bundle(tmp_path)
    pack = tmp_path / "pack"
    pack.mkdir()
    report = bundle.unpack(out, tmp_path / "run", pack=pack)       # av is installed in this Python
    assert report["stand_ins"] == [] and not (tmp_path / "run" / "site" / "av").exists()
    archive = out / "dists" / "fake.tar.xz"
    archive.write_bytes(archive.read_bytes() + b"\0")
    with pytest.raises(SystemExit, match="SHA-256"):
        bundle.unpack(out, tmp_path / "run2", pack=pack)


def test_sha256_matches_hashlib(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"diffier" * 1000)
    assert bundle.sha256(f) == hashlib.sha256(b"diffier" * 1000).hexdigest()


def test_the_cuda_sync_log_reads_cuda_s_warnings_with_their_lines():
    """``SyncLog``'s CUDA branch, without a GPU: ``set_sync_debug_mode`` is recorded instead of set, and the
    warnings CUDA would raise are raised by hand; the count, the labels and the mode's reset are checked."""
    probe = """
import warnings, torch
from benchmarks.gpu_check import SyncLog
modes = []
torch.cuda.set_sync_debug_mode = modes.append
with SyncLog(torch.device("cuda"), object, lambda f, n: f"{f.rsplit('/', 1)[-1]}:{n}") as log:
    warnings.warn("called a synchronizing CUDA operation")
    warnings.warn("called a synchronizing CUDA operation")
    warnings.warn("something else")
print(log.count, log.sites[0].startswith("<string>:"), modes)
"""
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**os.environ, "PYTHONPATH": ""},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == "2 True ['warn', 'default']"
