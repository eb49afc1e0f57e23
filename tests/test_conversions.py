"""diffier_core.conversions: ε ↔ x̂₀ for both of ComfyUI's noise conventions."""

import pytest
import torch
from pack_loader import import_core

core = import_core()


@pytest.mark.parametrize("convention", ["eps", "flow"])
def test_round_trip_eps_denoised(convention):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 5, 5, generator=g)
    eps = torch.randn(3, 4, 5, 5, generator=g)
    sigma = torch.tensor([0.1, 0.5, 0.9])
    x = core.renoise(x0, eps, sigma, convention)
    torch.testing.assert_close(core.eps_from_denoised(x, x0, sigma, convention), eps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(core.denoised_from_eps(x, eps, sigma, convention), x0, rtol=1e-5, atol=1e-5)


def test_golden_values():
    x0, eps, sigma = torch.full((1, 1), 2.0), torch.full((1, 1), -1.0), torch.tensor([0.25])
    assert core.renoise(x0, eps, sigma, "eps").item() == pytest.approx(2.0 - 0.25)       # x0 + σε
    assert core.renoise(x0, eps, sigma, "flow").item() == pytest.approx(0.75 * 2.0 - 0.25)  # (1−σ)x0 + σε
    x = torch.full((1, 1), 1.0)
    assert core.eps_from_denoised(x, x0, sigma, "eps").item() == pytest.approx((1.0 - 2.0) / 0.25)
    assert core.eps_from_denoised(x, x0, sigma, "flow").item() == pytest.approx((1.0 - 1.5) / 0.25)


@pytest.mark.parametrize("convention", ["eps", "flow"])
def test_denoised_delta_matches_finite_difference(convention):
    g = torch.Generator().manual_seed(1)
    x, eps, d_eps = (torch.randn(2, 3, 4, generator=g) for _ in range(3))
    sigma = torch.tensor([0.3, 0.7])
    before = core.denoised_from_eps(x, eps, sigma, convention)
    after = core.denoised_from_eps(x, eps + d_eps, sigma, convention)
    torch.testing.assert_close(core.denoised_delta_from_eps_delta(d_eps, sigma, convention), after - before,
                               rtol=1e-5, atol=1e-5)


def test_flow_degenerate_sigma_one_gives_zero_delta():
    delta = core.denoised_delta_from_eps_delta(torch.ones(2, 3), torch.tensor([1.0, 0.5]), "flow")
    assert torch.all(delta[0] == 0)
    torch.testing.assert_close(delta[1], torch.full((3,), -1.0))


def test_per_sample_sigma_broadcast_on_5d_and_3d():
    for shape in [(2, 4, 3, 5, 5), (2, 8, 16)]:
        x0 = torch.ones(shape)
        out = core.renoise(x0, torch.zeros(shape), torch.tensor([0.2, 0.6]), "flow")
        assert torch.allclose(out[0], torch.full(shape[1:], 0.8))
        assert torch.allclose(out[1], torch.full(shape[1:], 0.4))


def test_unknown_convention_raises_naming_it():
    with pytest.raises(core.DiffIERParameterError, match="convention"):
        core.renoise(torch.ones(1, 1), torch.ones(1, 1), torch.ones(1), "vp")
