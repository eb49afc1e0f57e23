"""The super-resolution testbeds: the pack's embedded SR demo models on held-out images.

Two models (trained by the pack's demo training code, loaded by the pack's ``DiffIERDemoModelLoader`` node):

* ``sr`` — ``sr_digits_x4`` (MNIST 7×7 → 28×28) on images of the digits test split: tuning and test use disjoint
  index ranges of one fixed, seeded order (:data:`DIGIT_IMAGES`);
* ``sr_photos`` — ``sr_photos_x2`` (16×16 → 32×32 grey patches) on non-overlapping, non-flat patches of photos the
  model never saw: tuning photos and test photos are disjoint (:data:`PHOTO_SPLIT`), every natural photo that ships
  in an installed package is used (``training/data/sr.py`` ``HELD_OUT_PHOTOS``).

Every seed samples every image of the phase once (one KSampler batch), so each LR input has one output per seed.
LR inputs: Gaussian blur, then area downsampling (the demo's ``sr_degrade``); conditioning: the LR image bicubic
upsampled as the positive's concat image, zeros as the negative's (the demo's ``sr_conditioning``). Metrics of a
cell (bootstrap: photos, images inside photos, and seeds resampled):

* quality: PSNR (dB) against HR, mean over images and seeds (the primary metric: what the paper reports; it rewards
  blur); SSIM; realism: KID of the outputs against HR images (digits: the digits classifier's features against
  the test split; photos: pixels against every non-flat patch of the phase's photos) — a blurred output scores
  well on PSNR and badly on KID;
* adherence: consistency with the LR input, the PSNR of the re-degraded output against the LR image;
* diversity: the spread across seeds for the same LR input (RMS over pixels of the per-pixel standard deviation
  across seeds, mean over images).

The bicubic upsampling of the LR inputs is scored the same way (a deterministic reference row).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from .. import metrics
from ..evidence.records import Estimate, Layout, estimate
from .base import BedMetrics, BedSpec, Metric, PhaseSize, SampleCounts, SampledRun, flag_nonfinite

__all__ = ["MODELS", "DIGIT_IMAGES", "PHOTO_SPLIT", "image_quality", "SRSamples", "SRScores", "SRBed"]

#: testbed -> (demo model file, dataset)
MODELS = {"sr": ("sr_digits_x4.safetensors", "digits"), "sr_photos": ("sr_photos_x2.safetensors", "photos")}
#: digits ×4: the first index of each phase's images in the seeded order of the test split (tuning: the images
#: the earlier runs' test seeds used; test: a range no run used before)
DIGIT_IMAGES = {"tuning": 0, "test": 256}
#: photos ×2: tuning photos and test photos, disjoint; together every held-out photo
PHOTO_SPLIT = {"tuning": ("camera", "coffee"),
               "test": ("astronaut", "motorcycle", "china", "flower", "grace_hopper")}


def image_quality(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM of ``pred`` vs ``target`` (``[B, 1, H, W]`` in [0, 1], data range 1)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    p, t = pred.double().clamp(0, 1), target.double()
    psnr = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(p, t, data_range=1.0, reduction="none")
    return {"psnr": psnr.float(), "ssim": ssim.float()}


def _psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mse = (pred.double() - target.double()).square().flatten(1).mean(1)
    return (10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))).float()


@dataclasses.dataclass
class SRSamples:
    """One KSampler batch: per output the index of its image in the phase, the output, and its per-image scores."""

    image: np.ndarray      # [n] int64, index into the phase's images
    outputs: np.ndarray    # [n, 1, H, W] float32 in [0, 1]
    psnr: np.ndarray       # [n] dB against HR
    ssim: np.ndarray       # [n]
    lr_psnr: np.ndarray    # [n] dB: the re-degraded output against the LR input
    finite: np.ndarray     # [n] bool


@dataclasses.dataclass
class SRScores(SampleCounts):
    """Every metric of an SR cell (estimates: value and 95 % bootstrap interval over photos, images and seeds).

    Args:
        psnr: mean PSNR against HR (↑, primary quality; rewards blur).
        ssim: mean SSIM against HR (↑).
        realism_kid: KID of the outputs against HR images (features scaled by
            :func:`benchmarks.metrics.kid_scale` of the reference; ↓; a blurred output scores badly).
        lr_consistency: mean PSNR of the re-degraded output against the LR input (↑: adherence).
        spread: spread across seeds for the same input (diversity).
        nonfinite: outputs that were not finite; samples: outputs in the cell.
    """

    psnr: Estimate
    ssim: Estimate
    realism_kid: Estimate
    lr_consistency: Estimate
    spread: Estimate


@dataclasses.dataclass(frozen=True)
class PhaseImages:
    """A phase's HR images, their LR inputs and conditioning, their photo, and the realism reference features."""

    hr: torch.Tensor
    lr: torch.Tensor
    positive: list
    negative: list
    photo: np.ndarray
    reference_features: np.ndarray
    kid_scale: float
    reference_kernel_mean: float


class SRBed:
    """The evidence protocol's bed on one SR demo model.

    Args:
        testbed: ``sr`` (digits ×4) or ``sr_photos`` (photo patches ×2).
        sizes: ``{"tuning": PhaseSize, "test": PhaseSize}``; ``samples_per_seed`` is the number of images (digits)
            or of patches per photo (photos); photos: ``reference_seed`` draws the patches.
        harness: a booted harness to share (None: boot one).
    """

    spec = BedSpec(
        "normal",
        BedMetrics(quality=Metric("psnr", False, "PSNR against HR (dB) ↑"),
                   secondary=Metric("realism_kid", True, "realism KID against HR images ↓"),
                   adherence=Metric("lr_consistency", False, "LR consistency: re-degraded output vs LR, PSNR (dB) ↑"),
                   diversity=Metric("spread", None, "spread across seeds for one LR input")),
        SRSamples, SRScores)

    def __init__(self, testbed: str, sizes: dict[str, PhaseSize], harness: Any = None) -> None:
        from training.data import sr as sr_data

        from ..harness import Harness

        if testbed not in MODELS:
            raise ValueError(f"testbed must be one of {sorted(MODELS)}, got {testbed!r}")
        self.name = testbed
        self.model_name, self.dataset = MODELS[testbed]
        self.groups = ["digits_x4" if self.dataset == "digits" else "photos_x2"]
        self.sizes = sizes
        self.h = harness or Harness()
        self.dm = self.h.pack.demo.models
        self.sr_data = sr_data
        (self.model,) = self.h.run_node("DiffIERDemoModelLoader", model_name=self.model_name)
        self.mconfig = self.model.model.diffier_demo_config
        self._phases: dict[str, PhaseImages] = {}
        self._classifier = None

    # -- data --------------------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> np.ndarray:
        """Realism features of ``[n, 1, H, W]`` images in [0, 1]: the digits classifier's (digits) or pixels."""
        if self.dataset == "photos":
            return images.reshape(images.shape[0], -1).double().numpy()
        if self._classifier is None:
            from training.data import digits as digits_data

            self._classifier = digits_data.load_classifier()
        feats, _ = self._classifier.embed(images[:, 0])
        return feats.double().numpy()

    def _hr_images(self, phase: str) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
        """``(HR [n, 1, H, W], photo of each [n], realism reference images)`` of ``phase``."""
        size = self.sizes[phase]
        if self.dataset == "photos":
            names = PHOTO_SPLIT[phase]
            hr = torch.cat([self.sr_data.photo_tiles(p, size.samples_per_seed, size.reference_seed) for p in names])
            photo = np.repeat(np.arange(len(names)), size.samples_per_seed)
            reference = torch.cat([self.sr_data.photo_tiles(p, None, size.reference_seed) for p in names])
            return hr, photo, reference
        split = self.sr_data.digits_split()
        order = torch.randperm(split["x_test"].shape[0], generator=torch.Generator().manual_seed(0))
        first = DIGIT_IMAGES[phase]
        hr = split["x_test"][order[first:first + size.samples_per_seed]].unsqueeze(1)
        return hr, np.arange(hr.shape[0]), split["x_test"].unsqueeze(1)

    def images(self, phase: str) -> PhaseImages:
        """The phase's images, LR inputs, conditioning and realism reference (cached)."""
        if phase not in self._phases:
            hr, photo, reference = self._hr_images(phase)
            lr = self.dm.sr_degrade(hr, self.mconfig["scale"], self.mconfig["blur_sigma"])
            pos, neg = self.dm.sr_conditioning(self.dm.sr_condition_image(lr, self.mconfig))
            ref = self.features(reference)
            scale = metrics.kid_scale(ref)
            ref = ref * scale
            self._phases[phase] = PhaseImages(hr, lr, pos, neg, photo, ref, scale,
                                              metrics.pair_mean(metrics.polynomial_kernel(ref, ref)))
        return self._phases[phase]

    def describe(self, phase: str) -> dict[str, Any]:
        data = self.images(phase)
        images = (f"{len(PHOTO_SPLIT[phase])} photos {list(PHOTO_SPLIT[phase])} × {self.sizes[phase].samples_per_seed} "
                  f"non-overlapping non-flat 32×32 patches each (tiles drawn with seed "
                  f"{self.sizes[phase].reference_seed})" if self.dataset == "photos" else
                  f"{data.hr.shape[0]} test-split images, positions [{DIGIT_IMAGES[phase]}, "
                  f"{DIGIT_IMAGES[phase] + data.hr.shape[0]}) of its seeded order")
        reference = ("(every non-flat tile of the phase's photos), pixels" if self.dataset == "photos"
                     else "(the test split), digits classifier features")
        return {"model": self.model_name, "scheduler": self.spec.scheduler, "images": images,
                "realism_reference": f"{data.reference_features.shape[0]} HR images {reference}",
                "bicubic": self.bicubic(phase)}

    def bicubic(self, phase: str) -> dict[str, float]:
        """The bicubic upsampling of the LR inputs, scored like a method (deterministic: no spread)."""
        data = self.images(phase)
        out = ((self.dm.sr_upsample(data.lr * 2 - 1, self.mconfig["hr_size"]) + 1) / 2).clamp(0, 1)
        q = image_quality(out, data.hr)
        lr_psnr = _psnr(self.dm.sr_degrade(out, self.mconfig["scale"], self.mconfig["blur_sigma"]), data.lr)
        feats = self.features(out) * data.kid_scale
        kid = (metrics.pair_mean(metrics.polynomial_kernel(feats, feats)) + data.reference_kernel_mean
               - 2 * float(metrics.polynomial_kernel(feats, data.reference_features).mean()))
        return {"psnr": float(q["psnr"].mean()), "ssim": float(q["ssim"].mean()), "realism_kid": kid,
                "lr_consistency": float(lr_psnr.mean()), "spread": 0.0}

    # -- sampling and scoring ------------------------------------------------------------------------
    def sample(self, group: str, patches: tuple, omega: float, seed: int, sampler: str, steps: int,
               phase: str) -> SampledRun:
        """One KSampler batch of ``patches`` on every image of ``phase``."""
        from ..harness import Method

        data = self.images(phase)
        n = data.hr.shape[0]
        res = self.h.sample(self.model, Method("job", patches), positive=data.positive, negative=data.negative,
                            latent=self.dm.sr_empty_latent(n, self.mconfig), seed=seed, steps=steps, cfg=omega,
                            sampler=sampler, scheduler=self.spec.scheduler)
        samples, finite = flag_nonfinite(res.samples.float())
        out = ((samples + 1) / 2).clamp(0, 1)
        q = image_quality(out, data.hr)
        lr_psnr = _psnr(self.dm.sr_degrade(out, self.mconfig["scale"], self.mconfig["blur_sigma"]), data.lr)
        record = SRSamples(np.arange(n), out.numpy(), q["psnr"].numpy(), q["ssim"].numpy(), lr_psnr.numpy(), finite)
        return SampledRun(record, res.evals_per_sample, res.calls, res.wall_s, res.cpu_s)

    def layout(self, phase: str) -> Layout:
        size, data = self.sizes[phase], self.images(phase)
        n = data.hr.shape[0]
        return Layout(np.repeat(np.arange(len(size.seeds)), n), np.tile(np.arange(n), len(size.seeds)),
                      cluster_of_unit=data.photo if self.dataset == "photos" else None, crossed=True)

    def score(self, group: str, phase: str, records: list[SRSamples], counts: np.ndarray) -> SRScores:
        """Every metric of a cell from its seeds' records, with replicates on the resamples ``counts``."""
        data = self.images(phase)
        total = counts.sum(1)
        psnr, ssim, lr_psnr = (np.concatenate([getattr(r, k) for r in records]).astype(np.float64)
                               for k in ("psnr", "ssim", "lr_psnr"))
        outputs = np.stack([r.outputs for r in records])                        # [S, n, 1, H, W]
        per_image_spread = np.sqrt(outputs.astype(np.float64).var(axis=0, ddof=1).reshape(outputs.shape[1], -1)
                                   .mean(1)) if len(records) > 1 else np.zeros(outputs.shape[1])
        image = np.concatenate([r.image for r in records])
        image_weight = np.stack([np.bincount(image, weights=c, minlength=outputs.shape[1]) for c in counts])
        feats = self.features(torch.from_numpy(outputs.reshape(-1, *outputs.shape[2:]))) * data.kid_scale
        within = metrics.polynomial_kernel(feats, feats)
        to_ref = metrics.polynomial_kernel(feats, data.reference_features).mean(1)
        kid = metrics.pair_mean(within) + data.reference_kernel_mean - 2 * to_ref.mean()
        kid_reps = (metrics.weighted_pair_mean(within, counts) + data.reference_kernel_mean
                    - 2 * (counts @ to_ref) / total)
        return SRScores(
            psnr=estimate(float(psnr.mean()), counts @ psnr / total),
            ssim=estimate(float(ssim.mean()), counts @ ssim / total),
            realism_kid=estimate(kid, kid_reps),
            lr_consistency=estimate(float(lr_psnr.mean()), counts @ lr_psnr / total),
            spread=estimate(float(per_image_spread.mean()), image_weight @ per_image_spread / image_weight.sum(1)),
            nonfinite=int(sum((~r.finite).sum() for r in records)), samples=int(image.size))
