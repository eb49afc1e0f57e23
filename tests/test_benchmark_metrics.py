"""The evidence statistics (``benchmarks/metrics.py``, ``benchmarks/evidence/records.py``), without ComfyUI.

* the one Fréchet distance: closed forms and scipy's matrix square root; FD∞ removes the 1/N bias;
* KID is unbiased (mean ≈ 0 over many pairs of sets from one distribution) and positive between distributions;
* precision / recall / density / coverage equal the ``prdc`` package's;
* the resampled U-statistics leave duplicate pairs out; the target log-odds keep growing where log p reaches 0;
* the bootstrap resamples keep the layout (class balance within seeds; crossed images × seeds);
* the energy-distance estimator is unbiased in the earlier runs' design (its negative values were noise).

Tolerances: the statistical checks use 4 standard errors of the quantity itself, estimated in the test.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def _bench(module: str):
    """``benchmarks.<module>``, imported when a test needs it."""
    return importlib.import_module(f"benchmarks.{module}")


def test_frechet_distance_closed_forms_and_scipy():
    from scipy import linalg

    metrics = _bench("metrics")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 6))
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    shift = np.array([1.0, -2.0, 0.5, 0, 0, 3.0])
    assert metrics.frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9)
    y = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) + 0.3
    ca, cb = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    expected = (np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(ca) + np.trace(cb)
                - 2 * np.trace(linalg.sqrtm(ca @ cb).real))
    assert metrics.frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="N ≥ 2"):
        metrics.frechet_distance(x[:1], y)


def test_sweep_uses_the_one_frechet_distance():
    assert importlib.import_module("sweep.metrics").frechet_distance is _bench("metrics").frechet_distance


def test_fd_infinity_removes_the_sample_count_bias():
    """Samples of the reference's own distribution: FD at N is biased upward by about tr Σ-terms / N; FD∞ is not."""
    metrics = _bench("metrics")
    rng = np.random.default_rng(0)
    d = 16
    reference = rng.standard_normal((20_000, d))
    fd_n, fd_inf = [], []
    for k in range(6):
        x = rng.standard_normal((240, d))
        fd_n.append(metrics.frechet_distance(x, reference))
        fd_inf.append(metrics.fd_infinity(x, reference, seed=k).fd_infinity)
    assert np.mean(fd_n) > 0.2                                 # the bias (≈ d²/(2N) = 0.53 here)
    assert abs(np.mean(fd_inf)) < np.mean(fd_n) / 3
    # a real difference survives: a mean shift of 1 in every dimension is FD 16 at infinitely many samples
    shifted = metrics.fd_infinity(rng.standard_normal((240, d)) + 1.0, reference)
    assert shifted.fd_infinity == pytest.approx(16.0, rel=0.1)
    assert shifted.sizes[0] < shifted.sizes[-1] == 240 and len(shifted.values) == len(shifted.sizes)


def test_kid_is_unbiased_and_positive_between_distributions():
    metrics = _bench("metrics")
    rng = np.random.default_rng(2)
    same = [metrics.kid(rng.standard_normal((40, 4)), rng.standard_normal((60, 4))) for _ in range(300)]
    se = np.std(same, ddof=1) / math.sqrt(len(same))
    assert abs(np.mean(same)) < 4 * se
    assert min(same) < 0 < max(same)                           # single estimates fall on both sides of 0
    apart = [metrics.kid(rng.standard_normal((40, 4)) + 1.0, rng.standard_normal((60, 4))) for _ in range(20)]
    assert min(apart) > 0
    ref = rng.standard_normal((100, 8)) * 7.0
    assert metrics.kid_scale(ref) ** 2 * np.mean((ref ** 2).sum(1)) == pytest.approx(8.0)


def test_prdc_equals_the_prdc_package():
    prdc = pytest.importorskip("prdc")
    metrics = _bench("metrics")
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((120, 5)), rng.standard_normal((90, 5)) * 1.3 + 0.2
    with contextlib.redirect_stdout(io.StringIO()):          # the package prints its sizes
        expected = prdc.compute_prdc(real, fake, nearest_k=5)
    got = metrics.prdc(real, fake, 5)
    assert got == pytest.approx({k: float(v) for k, v in expected.items()}, abs=1e-12)


def test_resampled_pair_means_leave_duplicate_pairs_out():
    metrics = _bench("metrics")
    rng = np.random.default_rng(4)
    m = rng.standard_normal((5, 5))
    m = m + m.T
    ones = np.ones((1, 5))
    assert metrics.weighted_pair_mean(m, ones)[0] == pytest.approx(metrics.pair_mean(m))
    counts = np.array([[2.0, 0.0, 1.0, 0.0, 1.0]])          # sample 0 twice
    positions = [0, 0, 2, 4]
    pairs = [m[a, b] for i, a in enumerate(positions) for j, b in enumerate(positions) if i != j and a != b]
    assert metrics.weighted_pair_mean(m, counts)[0] == pytest.approx(np.mean(pairs))


def test_target_log_odds():
    metrics = _bench("metrics")
    log_probs = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    got = metrics.target_log_odds(log_probs, np.array([0, 1]))
    assert got == pytest.approx([math.log(0.7 / 0.3), math.log(0.1 / 0.9)])
    # far apart classes: log p(target) is 0.0 in float64 for both, the log-odds still order them
    far = np.array([[0.0, -800.0], [0.0, -900.0]])
    assert np.all(far[:, 0] == 0.0) and np.all(np.diff(metrics.target_log_odds(far, np.array([0, 0]))) > 0)


def test_bootstrap_counts_keep_the_layout():
    records = _bench("evidence.records")
    seeds, classes = 3, 4
    layout = records.Layout(np.repeat(np.arange(seeds), 8), np.tile(np.repeat(np.arange(classes), 2), seeds))
    counts = records.resample_counts(layout, 50, seed=0)
    assert counts.shape == (50, 24) and np.all(counts.sum(1) == 24)
    for c in range(classes):                                   # every resample keeps 2 × 3 samples of each class
        assert np.all(counts[:, layout.unit_of == c].sum(1) == 6)
    assert len({tuple(r) for r in counts}) > 40                # and they differ
    # crossed (super-resolution): 2 photos × 3 images, 4 seeds: a sample's count is its image's × its seed's
    images, n_seeds = 6, 4
    crossed = records.Layout(np.repeat(np.arange(n_seeds), images), np.tile(np.arange(images), n_seeds),
                             cluster_of_unit=np.array([0, 0, 0, 1, 1, 1]), crossed=True)
    counts = records.resample_counts(crossed, 30, seed=1)
    assert np.all(counts.sum(1) == images * n_seeds)
    grid = counts.reshape(30, n_seeds, images)
    image_counts, seed_counts = grid.sum(1) / n_seeds, grid.sum(2) / images
    assert np.allclose(grid, seed_counts[:, :, None] * image_counts[:, None, :])


def test_energy_distance_estimator_is_unbiased_in_the_old_design():
    """Two independent exact sets of 60 per class (the earlier runs' design): the mean estimate is 0, single ones
    spread on both sides of it, so a negative energy distance is not by itself a bug."""
    import torch

    gmm = _bench("testbeds.gmm")
    energy = _bench("evidence.energy")
    truth = gmm.make_gmm(seed=0)
    labels = torch.arange(240) % 4
    values = [energy.class_wise_energy_distance(truth.sample(labels, torch.Generator().manual_seed(s)),
                                                truth.sample(labels, torch.Generator().manual_seed(10_000 + s)),
                                                labels, labels) for s in range(40)]
    summary = energy.summarise(values)
    assert abs(summary.mean) < 2 * summary.ci95                # 4 standard errors
    assert 0.1 < summary.share_negative < 0.9
