"""Image metrics of the sweep (numpy only). Images are ``H×W×3`` arrays, uint8 or float in [0, 1].

Reference-free, per image:

* :func:`clipped_fraction`: share of channel values at the ends of the range (0 or 255): blown-out or
  crushed pixels, the typical high-CFG failure.
* :func:`mean_saturation`: mean HSV saturation ``(max − min) / max`` per pixel (0 where ``max = 0``).

Across images:

* :func:`diversity`: mean pairwise RMS distance (in [0, 1] units) between the images of one prompt over
  seeds, on 64×64 area-downsampled copies; 0 when every seed gives the same picture.
* :func:`psnr`, :func:`ssim`: against a reference image of the same prompt and seed (SSIM: Wang et al.
  2004, Gaussian window σ = 1.5 of width 11, K1 = 0.01, K2 = 0.03, per channel then averaged; the same
  definition as ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``).
* :func:`frechet_distance` of :func:`features`: the repository's one Fréchet distance (``benchmarks/metrics.py``)
  of *pixel statistics*, not Inception FID:
  each image becomes its 4×4 area-downsampled RGB thumbnail (48 numbers in [0, 1]); only comparable
  between methods of the same sweep, and only computed with at least :data:`FD_MIN_IMAGES` images a side.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from benchmarks.metrics import frechet_distance

__all__ = ["FD_MIN_IMAGES", "to_float", "clipped_fraction", "mean_saturation", "downsample", "diversity", "psnr",
           "ssim", "features", "frechet_distance", "image_metrics"]

FD_MIN_IMAGES = 8
FEATURE_SIDE = 4
DIVERSITY_SIDE = 64


def to_float(image: np.ndarray) -> np.ndarray:
    """``H×W×3`` float64 in [0, 1] (uint8 is divided by 255; grey ``H×W`` is repeated to 3 channels)."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image: expected H×W×3, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError("image: has NaN or Inf values")
    return out


def clipped_fraction(image: np.ndarray) -> float:
    """Share of channel values at 0 or at full scale (≤ 0.5/255 from either end of [0, 1])."""
    x = to_float(image)
    eps = 0.5 / 255.0
    return float(np.mean((x <= eps) | (x >= 1.0 - eps)))


def mean_saturation(image: np.ndarray) -> float:
    """Mean HSV saturation over pixels."""
    x = to_float(image)
    hi, lo = x.max(axis=2), x.min(axis=2)
    sat = np.divide(hi - lo, hi, out=np.zeros_like(hi), where=hi > 0)
    return float(sat.mean())


def downsample(image: np.ndarray, side: int) -> np.ndarray:
    """Area average to ``side×side×3`` (the image is cropped to a multiple of ``side`` first, or resized up
    by repetition when it is smaller)."""
    x = to_float(image)
    h, w = x.shape[:2]
    if h < side or w < side:
        x = np.repeat(np.repeat(x, math.ceil(side / h), axis=0), math.ceil(side / w), axis=1)
        h, w = x.shape[:2]
    bh, bw = h // side, w // side
    x = x[: bh * side, : bw * side]
    return x.reshape(side, bh, side, bw, 3).mean(axis=(1, 3))


def diversity(images: Sequence[np.ndarray]) -> float | None:
    """Mean pairwise RMS distance of 64×64 copies; None for fewer than two images."""
    if len(images) < 2:
        return None
    small = [downsample(im, DIVERSITY_SIDE) for im in images]
    dists = [math.sqrt(float(np.mean((a - b) ** 2))) for a, b in itertools.combinations(small, 2)]
    return float(np.mean(dists))


def _same_shape(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = to_float(a), to_float(b)
    if x.shape != y.shape:
        raise ValueError(f"reference: image is {x.shape[1]}×{x.shape[0]} but the reference is "
                         f"{y.shape[1]}×{y.shape[0]}")
    return x, y


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (peak 1); ``inf`` for identical images."""
    x, y = _same_shape(image, reference)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _gaussian_window(sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation of an ``H×W`` array, valid part only."""
    n = len(g)
    rows = sum(g[i] * x[i: x.shape[0] - n + 1 + i] for i in range(n))
    return sum(g[j] * rows[:, j: rows.shape[1] - n + 1 + j] for j in range(n))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """Structural similarity, mean over the valid region and the three channels (images ≥ 11×11)."""
    x, y = _same_shape(image, reference)
    if min(x.shape[:2]) < 11:
        raise ValueError(f"ssim: images must be at least 11×11, got {x.shape[1]}×{x.shape[0]}")
    g = _gaussian_window()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(3):
        a, b = x[..., c], y[..., c]
        mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
        var_a = _filter_valid(a * a, g) - mu_a**2
        var_b = _filter_valid(b * b, g) - mu_b**2
        cov = _filter_valid(a * b, g) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        values.append(float(s.mean()))
    return float(np.mean(values))


def features(image: np.ndarray) -> np.ndarray:
    """The FD feature vector: the 4×4 area-downsampled RGB thumbnail, flattened (48 values)."""
    return downsample(image, FEATURE_SIDE).reshape(-1)


def image_metrics(image: np.ndarray) -> dict[str, float]:
    """The reference-free per-image metrics."""
    return {"clipped_fraction": clipped_fraction(image), "mean_saturation": mean_saturation(image)}
