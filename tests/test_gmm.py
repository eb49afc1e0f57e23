"""The known-score testbed's analytic mixture (benchmarks/testbeds/gmm.py).

Float64 throughout: the 1e-7 relative tolerances are ~5e8 float64 epsilons, far above any CPU's reordering.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.testbeds import gmm as G


@pytest.fixture(scope="module")
def small():
    gmm = G.make_gmm(num_classes=3, comps_per_class=2, dim=12, principal_dims=4, seed=3)
    return G.GMM(*(t.double() if t.is_floating_point() else t for t in
                   (gmm.means, gmm.variances, gmm.comp_class, gmm.class_weights)))


@pytest.mark.parametrize("sigma", [0.05, 0.7, 3.0, 40.0])
def test_score_is_autograd_of_log_density(small, sigma):
    g = torch.Generator().manual_seed(0)
    rows = torch.tensor([0, 1, 2, 3, 0, 2])          # 3 = unconditional
    x = (small.sample(rows, g) + sigma * torch.randn((6, small.dim), generator=g, dtype=torch.float64))
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(small.log_prob(x, sigma, rows).sum(), x)
    s = torch.full((6,), sigma, dtype=torch.float64)
    torch.testing.assert_close(small.score(x.detach(), s, rows), grad, rtol=1e-7, atol=1e-9)
    # ε* = −σ ∇log q (Tweedie) and D* = x − σ ε*
    torch.testing.assert_close(small.eps(x.detach(), s, rows), -sigma * grad, rtol=1e-7, atol=1e-9)


def test_score_matches_finite_differences(small):
    x = torch.randn((1, small.dim), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rows, sigma, h = torch.tensor([1]), 0.5, 1e-6
    fd = torch.stack([(small.log_prob(x + h * e, sigma, rows) - small.log_prob(x - h * e, sigma, rows)) / (2 * h)
                      for e in torch.eye(small.dim, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(small.score(x, torch.tensor([sigma], dtype=torch.float64), rows), fd,
                               rtol=1e-5, atol=1e-6)


def test_denoiser_is_posterior_mean_monte_carlo():
    gmm = G.make_gmm(num_classes=2, comps_per_class=2, dim=4, principal_dims=2, seed=4)
    g = torch.Generator().manual_seed(2)
    rows = torch.zeros(400_000, dtype=torch.long)
    x0 = gmm.sample(rows, g)
    sigma = 0.6
    xt = x0 + sigma * torch.randn(x0.shape, generator=g)
    # E[x0 − D*(x_t)] = 0 and E[(x0 − D*) · D*] = 0 (orthogonality of the posterior mean)
    d = gmm.denoise_rows(xt, torch.full((x0.shape[0],), sigma), rows)
    resid = x0 - d
    assert resid.mean(0).abs().max() < 0.01
    assert (resid * d).sum(1).mean().abs() < 0.02


def test_bayes_classifier_and_sampling():
    gmm = G.make_gmm()
    labels = torch.arange(800) % gmm.num_classes
    x = gmm.sample(labels, torch.Generator().manual_seed(0))
    assert (gmm.classify(x) == labels).float().mean() > 0.99
    assert (gmm.classify(gmm.means) == gmm.comp_class).all()
    # heavy noise: near chance; weights rows sum to one
    assert torch.allclose(gmm.class_weights.sum(1), torch.ones(gmm.num_classes + 1))


def test_blurred_model():
    gmm = G.make_gmm(num_classes=3, comps_per_class=2, dim=16, seed=1)
    bad = gmm.blurred(var_scale=2.0, var_add=0.1, mean_shrink=0.5, leak=0.3)
    assert torch.allclose(bad.class_weights.sum(1), torch.ones(4))
    assert torch.allclose(bad.variances, gmm.variances * 2 + 0.1)
    # leak: 30 % of the unconditional weights on every conditional row
    other = bad.class_weights[0, gmm.comp_class != 0]
    assert torch.allclose(other, torch.full_like(other, 0.3 / 6))
    # mean shrink keeps the class mean
    for c in range(3):
        sel = gmm.comp_class == c
        torch.testing.assert_close(bad.means[sel].mean(0), gmm.means[sel].mean(0))
    no_op = gmm.blurred()
    torch.testing.assert_close(no_op.means, gmm.means)
