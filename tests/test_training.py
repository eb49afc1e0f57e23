"""The training room (``training/``): a few steps of each command train, and the weights they write load through the
pack's demo loader and sample through ComfyUI's KSampler."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training import train_digits
from training.data import digits as digits_data

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent


def _sample_once(run_node, patcher, positive, negative, latent) -> torch.Tensor:
    (out,) = run_node("KSampler", model=patcher, seed=0, steps=2, cfg=2.0, sampler_name="euler", scheduler="normal",
                      positive=positive, negative=negative, latent_image=latent, denoise=1.0)
    return out["samples"]


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def test_train_sr_command_writes_a_model_that_loads_and_samples(comfy_root, pack_module, run_node, tmp_path):
    """``python -m training.train_sr`` from the repository root (its own ComfyUI boot), 3 steps."""
    out = tmp_path / "sr.safetensors"
    done = subprocess.run([sys.executable, "-m", "training.train_sr", "--task", "digits", "--steps", "3",
                           "--batch", "4", "--out", str(out), "--comfyui", str(comfy_root)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    models = pack_module.demo.models
    demo = models.load_demo_file(out)     # what the loader node runs for a file in demo/weights/
    assert (demo.kind, demo.config["scale"], demo.config["hr_size"]) == ("sr", 4, 28)
    training = json.loads(_metadata(out)["diffier_demo.training"])
    assert training["steps_done"] == 3 and math.isfinite(training["final_loss"])
    pos, neg = run_node("DiffIERDemoSRCondition", model=demo.patcher, image=torch.rand(2, 7, 7, 3))
    (latent,) = run_node("DiffIERDemoSREmptyLatent", model=demo.patcher, batch_size=2)
    assert torch.isfinite(_sample_once(run_node, demo.patcher, pos, neg, latent)).all()


def test_train_digits_writes_both_models(pack_module, run_node, tmp_path):
    """``train_digits`` in this process with the pack's ``demo.models``: 3 diffusion steps and one classifier epoch,
    which already recognises far more test digits than chance."""
    args = train_digits.parse_args(["--steps", "3", "--batch", "4", "--clf-epochs", "1", "--threads", "1",
                                    "--out", str(tmp_path / "digits.safetensors"),
                                    "--classifier-out", str(tmp_path / "classifier.safetensors")])
    done = train_digits.run(args, pack_module.demo.models)
    assert done["classifier"]["test_accuracy"] > 0.5          # chance: 0.1
    classifier = digits_data.load_classifier(tmp_path / "classifier.safetensors")
    assert isinstance(classifier, digits_data.DigitsClassifier)
    assert [s for s, _ in done["diffusion"]["loss_curve"]] == [1]
    demo = pack_module.demo.models.load_demo_file(tmp_path / "digits.safetensors")
    assert demo.kind == "digits"
    (pos,) = run_node("DiffIERDemoCondition", model=demo.patcher, digit="4")
    (neg,) = run_node("DiffIERDemoCondition", model=demo.patcher, digit="unconditional")
    (latent,) = run_node("DiffIERDemoEmptyLatent", batch_size=2)
    assert torch.isfinite(_sample_once(run_node, demo.patcher, pos, neg, latent)).all()


def test_the_shipped_classifier_loads_and_recognises_the_test_split():
    """``training/data/digits_classifier.safetensors`` (the benchmarks' digits classifier) scores the held-out split
    far above chance (0.1)."""
    split = digits_data.load_split()
    _, probs = digits_data.load_classifier().embed(split["x_test"])
    assert float((probs.argmax(-1) == split["y_test"]).float().mean()) > 0.9
