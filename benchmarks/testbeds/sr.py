"""The super-resolution testbeds: the pack's embedded SR demo models on held-out images, scored by PSNR.

Two models (trained by the pack's demo training code, loaded by the pack's ``DiffIERDemoModelLoader`` node):

* ``sr`` — ``sr_digits_x4`` (MNIST 7×7 → 28×28) on the digits test split: seed ``s`` uses test images
  ``[64 s, 64 s + n)`` (a fixed, seeded order), so tuning and test seeds use disjoint images;
* ``sr_photos`` — ``sr_photos_x2`` (16×16 → 32×32 patches of grey ``skimage.data`` photos) on patches of the
  photos held out of training (``test_photo_patches``): seed ``s`` draws its ``n`` non-flat patches with generator
  seed ``s`` (patches of different seeds are different crops of the same three held-out photos and may overlap).

LR inputs: Gaussian blur, then area downsampling (the demo's ``sr_degrade``); conditioning: the LR image bicubic
upsampled as the positive's concat image, zeros as the negative's (the demo's ``sr_conditioning``). Score: PSNR (dB)
of the output against HR in [0, 1], mean over images, higher is better (SSIM is recorded too). A seed also fixes the
initial noise.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import metrics as M

__all__ = ["MODELS", "STRIDE", "image_quality", "SRBed"]

#: testbed -> (demo model file, dataset)
MODELS = {"sr": ("sr_digits_x4.safetensors", "digits"), "sr_photos": ("sr_photos_x2.safetensors", "photos")}
STRIDE = 64   # images per seed slot of the digits test set (a seed uses the first n of its slot)


def image_quality(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM of ``pred`` vs ``target`` (``[B, 1, H, W]`` in [0, 1], data range 1)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    p, t = pred.double().clamp(0, 1), target.double()
    psnr = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(p, t, data_range=1.0, reduction="none")
    return {"psnr": psnr.float(), "ssim": ssim.float()}


class SRBed:
    """The tuning protocol's bed (:mod:`benchmarks.tuning`) on one SR demo model.

    Args:
        testbed: ``sr`` (digits ×4) or ``sr_photos`` (photo patches ×2).
        images: images per seed (at most :data:`STRIDE`).
        steps: Euler steps.
        harness: a booted harness to share (None: boot one).
    """

    set_lower = False
    aggregate = "difference"
    score_label = "PSNR (dB) ↑"

    def __init__(self, testbed: str, images: int, steps: int, harness: Any = None) -> None:
        from ..harness import Harness, training

        if testbed not in MODELS:
            raise ValueError(f"testbed must be one of {sorted(MODELS)}, got {testbed!r}")
        if not 0 < images <= STRIDE:
            raise ValueError(f"images must be in 1..{STRIDE}, got {images}")
        self.name = testbed
        self.model_name, self.dataset = MODELS[testbed]
        self.groups = ["digits_x4" if self.dataset == "digits" else "photos_x2"]
        self.h = harness or Harness()
        self.dm = self.h.pack.demo.models
        self.sr_data = training("data.sr")
        (self.model,) = self.h.run_node("DiffIERDemoModelLoader", model_name=self.model_name)
        self.mconfig = self.model.model.diffier_demo_config
        self.images, self.base_steps = images, steps
        self._data: dict[int, tuple] = {}

    def config(self) -> dict[str, Any]:
        images = (f"test split, seed s uses [{STRIDE}s, {STRIDE}s+n)" if self.dataset == "digits" else
                  "held-out photos' patches, seed s draws them with generator seed s")
        return {"samples": self.images, "steps": self.base_steps, "sampler": "euler", "scheduler": "normal",
                "model": self.model_name, "images": images}

    def hr(self, seed: int) -> torch.Tensor:
        """The HR images ``[n, 1, H, W]`` in [0, 1] of ``seed``."""
        if self.dataset == "photos":
            return self.sr_data.test_photo_patches(self.images, seed=seed)[0]
        split = self.sr_data.digits_split()
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(split["x_test"].shape[0], generator=g)[:STRIDE * (seed + 1)]
        return split["x_test"][idx].unsqueeze(1)[STRIDE * seed: STRIDE * seed + self.images]

    def data(self, seed: int) -> tuple:
        """``(hr, lr, positive, negative)`` of ``seed`` (cached)."""
        if seed not in self._data:
            hr = self.hr(seed)
            lr = self.dm.sr_degrade(hr, self.mconfig["scale"], self.mconfig["blur_sigma"])
            pos, neg = self.dm.sr_conditioning(self.dm.sr_condition_image(lr, self.mconfig))
            self._data[seed] = (hr, lr, pos, neg)
        return self._data[seed]

    def bicubic(self, seeds: list[int]) -> dict[str, float]:
        """The bicubic upsampling of the LR inputs: mean PSNR and SSIM over the images of ``seeds`` (a reference)."""
        q = [image_quality(((self.dm.sr_upsample(lr * 2 - 1, self.mconfig["hr_size"]) + 1) / 2).clamp(0, 1), hr)
             for hr, lr, _, _ in (self.data(s) for s in seeds)]
        return {k: float(torch.cat([x[k] for x in q]).mean()) for k in ("psnr", "ssim")}

    def run(self, group: str, job: Any, omega: float, seed: int, steps: int) -> dict[str, Any]:
        """One KSampler batch of ``job`` on the images of ``seed``: per-image PSNR."""
        hr, _, pos, neg = self.data(seed)
        res = self.h.sample(self.model, job.method(), positive=pos, negative=neg,
                            latent=self.dm.sr_empty_latent(hr.shape[0], self.mconfig), seed=seed, steps=steps,
                            cfg=omega, sampler=job.sampler or "euler", scheduler="normal")
        finite = torch.isfinite(res.samples).reshape(res.samples.shape[0], -1).all(dim=1)
        out = ((torch.nan_to_num(res.samples.float(), nan=0.0, posinf=1.0, neginf=-1.0) + 1) / 2).clamp(0, 1)
        q = image_quality(out, hr)
        return {"set": float(q["psnr"].mean()), "sample": q["psnr"].double(), "ssim": float(q["ssim"].mean()),
                "nonfinite": int((~finite).sum()), "evals": res.evals_per_sample, "wall_s": res.wall_s}

    def pooled_set(self, runs: list[dict]) -> None:
        return None

    def set_bootstrap(self, runs_a: list[dict], runs_b: list[dict], reps: int) -> dict[str, float]:
        """Paired bootstrap over images of the mean PSNR difference."""
        ci = M.bootstrap_mean_diff(torch.cat([r["sample"] for r in runs_a]),
                                   torch.cat([r["sample"] for r in runs_b]), reps)
        return {"mean": ci["mean"], "lo": ci["lo"], "hi": ci["hi"]}
