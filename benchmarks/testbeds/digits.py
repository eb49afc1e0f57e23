"""The learned-model testbed: the pack's embedded MNIST digits model, scored by a held-out classifier.

The model is loaded by the pack's own ``DiffIERDemoModelLoader`` node; every run is one KSampler batch with an
equal number of samples per digit. Score: Fréchet distance between the held-out classifier's 64-d features of the
samples (all seeds of a run pooled) and of the 1,000-image test split, lower is better. A seed fixes the initial
noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import metrics as M

__all__ = ["MODEL_NAME", "DigitsBed"]

MODEL_NAME = "digits_diffusion.safetensors"


class _Shared:
    """The booted harness, the model, the conditioning helpers and the classifier's test-split features."""

    def __init__(self, harness: Any = None) -> None:
        from ..harness import Harness, training

        self.h = harness or Harness()
        self.dm = self.h.pack.demo.models
        (self.model,) = self.h.run_node("DiffIERDemoModelLoader", model_name=MODEL_NAME)
        dd = training("data.digits")
        self.classifier = dd.load_classifier()
        feats, _ = self.classifier.embed(dd.load_split()["x_test"])
        self.test_features = feats.numpy().astype(np.float64)


class DigitsBed:
    """The tuning protocol's bed (:mod:`benchmarks.tuning`): one group, ``samples`` digits per run (10 classes).

    Args:
        samples: samples per run (a multiple of 10 is used: ``samples // 10`` per digit).
        steps: Euler steps.
        share: a bed whose harness, model and classifier to reuse (another sample count).
        harness: a booted harness to use when not sharing (None: boot one).
    """

    name = "digits"
    set_lower = True
    aggregate = "log_ratio"
    score_label = "FD (classifier features, pooled over seeds) ↓"
    groups = ["digits"]
    scheduler = "normal"

    def __init__(self, samples: int, steps: int, share: DigitsBed | None = None, harness: Any = None) -> None:
        if samples < 10:
            raise ValueError(f"samples must be at least 10 (one per digit), got {samples}")
        self.shared = share.shared if share is not None else _Shared(harness)
        self.h = self.shared.h
        self.base_steps = steps
        self.labels = torch.arange(10).repeat_interleave(samples // 10)
        dm, inner = self.shared.dm, self.shared.model.model
        self.positive = dm.digits_conditioning(inner, self.labels.tolist())
        self.negative = dm.digits_conditioning(inner, dm.NULL_CLASS, batch=self.labels.numel())

    def config(self) -> dict[str, Any]:
        return {"samples": int(self.labels.numel()), "steps": self.base_steps, "sampler": "euler",
                "scheduler": self.scheduler, "model": MODEL_NAME, "reference_set": "test split (1000)"}

    def run(self, group: str, job: Any, omega: float, seed: int, steps: int) -> dict[str, Any]:
        """One KSampler batch of ``job``: the classifier features of the samples and their FD."""
        sh = self.shared
        latent = sh.dm.digits_empty_latent(self.labels.numel())
        res = self.h.sample(sh.model, job.method(), positive=self.positive, negative=self.negative, latent=latent,
                            seed=seed, steps=steps, cfg=omega, sampler=job.sampler or "euler",
                            scheduler=self.scheduler)
        finite = torch.isfinite(res.samples).reshape(res.samples.shape[0], -1).all(dim=1)
        images = sh.dm.digits_to_unit(torch.nan_to_num(res.samples, nan=0.0, posinf=1.0, neginf=-1.0))
        feats, probs = sh.classifier.embed(images)
        f = feats.numpy().astype(np.float64)
        return {"set": M.frechet_distance(f, sh.test_features),
                "accuracy": float((probs.argmax(-1) == self.labels).float().mean()),
                "nonfinite": int((~finite).sum()), "evals": res.evals_per_sample, "wall_s": res.wall_s, "feats": f}

    def pooled_set(self, runs: list[dict]) -> float:
        """FD of the samples of all seeds pooled."""
        return M.frechet_distance(np.concatenate([r["feats"] for r in runs]), self.shared.test_features)

    def set_bootstrap(self, runs_a: list[dict], runs_b: list[dict], reps: int) -> dict[str, float]:
        """Paired bootstrap over samples of the pooled FD difference (same sample indices for both methods)."""
        fa = np.concatenate([r["feats"] for r in runs_a])
        fb = np.concatenate([r["feats"] for r in runs_b])
        ref = self.shared.test_features
        rng = np.random.default_rng(1)
        boots = []
        for _ in range(reps):
            idx = rng.integers(0, fa.shape[0], fa.shape[0])
            boots.append(M.frechet_distance(fa[idx], ref) - M.frechet_distance(fb[idx], ref))
        return {"mean": M.frechet_distance(fa, ref) - M.frechet_distance(fb, ref),
                "lo": float(np.quantile(boots, 0.025)), "hi": float(np.quantile(boots, 0.975))}
