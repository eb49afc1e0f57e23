"""diffier_core.conversions: ε ↔ x̂₀ for both of ComfyUI's noise conventions."""

import pytest
import torch
from float_bounds import assert_f32_close, f32_bound, max_abs
from pack_loader import import_core

core = import_core()
scales = core.convention_scales  # (a, b) of the named conventions: eps (1, σ), flow (1 − σ, σ)


OTHER = {"eps": "flow", "flow": "eps"}


@pytest.mark.parametrize("convention", ["eps", "flow"])
def test_round_trip_eps_denoised(convention):
    """x = a·x₀ + σε, then ε and x₀ back from x: equal up to float32 rounding, on any CPU.

    Bound (tests/float_bounds.py): each way is at most 4 rounded operations (a·x₀ + σε; then x − a·x₀ or
    x − σε, and one division) on values up to ``scale = max|x₀|, |ε|, |x|``; the division by σ (ε back) or
    by a = 1 − σ (x₀ back, flow) amplifies the error by 1 / min(σ, a) = 10 here, so
    ``bound = 8 · eps_f32 · scale · 10`` ≈ 4e-5. Reading x with the other convention (the bug this guards
    against) misses by about |x₀| ≈ 1 or more, > 1e3 bounds (asserted).
    """
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 5, 5, generator=g)
    eps = torch.randn(3, 4, 5, 5, generator=g)
    sigma = torch.tensor([0.1, 0.5, 0.9])
    x = core.renoise(x0, eps, *scales(sigma, convention))
    amplification = 1.0 / float(torch.minimum(sigma, 1 - sigma).min()) if convention == "flow" else 1.0 / 0.1
    bound = f32_bound(max_abs(x0, eps, x), ops=8, amplification=amplification)
    assert_f32_close(core.eps_from_denoised(x, x0, *scales(sigma, convention)), eps, bound,
                     wrong=core.eps_from_denoised(x, x0, *scales(sigma, OTHER[convention])))
    assert_f32_close(core.denoised_from_eps(x, eps, *scales(sigma, convention)), x0, bound,
                     wrong=core.denoised_from_eps(x, eps, *scales(sigma, OTHER[convention])))


def test_golden_values():
    """Binary fractions (2, −1, 0.25, 0.75): every operation is exact, so these hold bit for bit on any CPU."""
    x0, eps, sigma = torch.full((1, 1), 2.0), torch.full((1, 1), -1.0), torch.tensor([0.25])
    assert core.renoise(x0, eps, *scales(sigma, "eps")).item() == pytest.approx(2.0 - 0.25)       # x0 + σε
    assert core.renoise(x0, eps, *scales(sigma, "flow")).item() == pytest.approx(0.75 * 2.0 - 0.25)  # (1−σ)x0 + σε
    x = torch.full((1, 1), 1.0)
    assert core.eps_from_denoised(x, x0, *scales(sigma, "eps")).item() == pytest.approx((1.0 - 2.0) / 0.25)
    assert core.eps_from_denoised(x, x0, *scales(sigma, "flow")).item() == pytest.approx((1.0 - 1.5) / 0.25)


@pytest.mark.parametrize("convention", ["eps", "flow"])
def test_denoised_delta_matches_finite_difference(convention):
    """Δx̂₀ from Δε equals the difference of two conversions, up to float32 rounding, on any CPU.

    Bound: each conversion is 3 rounded operations on values up to ``scale`` (x, ε, ε + Δε and the results),
    the subtraction of the two results one more, and the flow division by 1 − σ amplifies by 1 / 0.3; so
    ``bound = 8 · eps_f32 · scale · amplification``. The other convention's factor (the bug) misses by
    about |Δε|, > 1e3 bounds (asserted).
    """
    g = torch.Generator().manual_seed(1)
    x, eps, d_eps = (torch.randn(2, 3, 4, generator=g) for _ in range(3))
    sigma = torch.tensor([0.3, 0.7])
    before = core.denoised_from_eps(x, eps, *scales(sigma, convention))
    after = core.denoised_from_eps(x, eps + d_eps, *scales(sigma, convention))
    amplification = 1.0 / float((1 - sigma).min()) if convention == "flow" else 1.0
    bound = f32_bound(max_abs(x, eps, eps + d_eps, before, after), ops=8, amplification=amplification)
    assert_f32_close(core.denoised_delta_from_eps_delta(d_eps, *scales(sigma, convention)), after - before, bound,
                     wrong=core.denoised_delta_from_eps_delta(d_eps, *scales(sigma, OTHER[convention])))


def test_flow_degenerate_sigma_one_gives_zero_delta():
    delta = core.denoised_delta_from_eps_delta(torch.ones(2, 3), *scales(torch.tensor([1.0, 0.5]), "flow"))
    assert torch.all(delta[0] == 0)
    torch.testing.assert_close(delta[1], torch.full((3,), -1.0))


def test_per_sample_sigma_broadcast_on_5d_and_3d():
    for shape in [(2, 4, 3, 5, 5), (2, 8, 16)]:
        x0 = torch.ones(shape)
        out = core.renoise(x0, torch.zeros(shape), *scales(torch.tensor([0.2, 0.6]), "flow"))
        assert torch.allclose(out[0], torch.full(shape[1:], 0.8))
        assert torch.allclose(out[1], torch.full(shape[1:], 0.4))


def test_unknown_convention_raises_naming_it():
    with pytest.raises(core.DiffIERParameterError, match="convention"):
        core.renoise(torch.ones(1, 1), torch.ones(1, 1), *scales(torch.ones(1), "vp"))


def test_a_per_sample_tensor_with_too_many_dims_raises_naming_it():
    with pytest.raises(core.DiffIERParameterError, match=r"'t' must be a per-sample tensor with at most ndim = 2"):
        core.append_dims(torch.ones(2, 3, 4), 2)


# -- any affine convention x = a x₀ + b ε, per sample -------------------------------------------------------
#: per-sample (a, b): eps, flow, flow with noise scale 7.5 (newer ComfyUI's CONST.noise_scale), a negative a
SIGNAL = torch.tensor([1.0, 0.7, 0.75, -0.5])
NOISE = torch.tensor([0.1, 0.3, 0.25 * 7.5, 2.0])


def test_convention_scales_are_the_named_conventions():
    sigma = torch.tensor([0.0, 0.25, 1.0])
    a, b = core.convention_scales(sigma, "eps")
    assert torch.equal(a, torch.ones(3)) and torch.equal(b, sigma)
    a, b = core.convention_scales(sigma, "flow")
    assert torch.equal(a, 1.0 - sigma) and torch.equal(b, sigma)


def test_golden_values_with_a_noise_scale():
    """x₀ = 2, ε = −1, σ = 0.25, s = 7.5: a = 0.75, b = 1.875 (binary fractions: exact on any CPU)."""
    x0, eps = torch.full((1, 1), 2.0), torch.full((1, 1), -1.0)
    a, b = torch.tensor([0.75]), torch.tensor([0.25 * 7.5])
    x = core.renoise(x0, eps, a, b)
    assert x.item() == 0.75 * 2.0 - 1.875
    assert core.eps_from_denoised(x, x0, a, b).item() == -1.0
    assert core.denoised_from_eps(x, eps, a, b).item() == 2.0
    assert core.denoised_delta_from_eps_delta(torch.ones(1, 1), a, b).item() == -1.875 / 0.75


def test_round_trip_with_per_sample_scales():
    """x = a x₀ + b ε and back, for four samples with four different maps, up to float32 rounding on any CPU.

    Bound: as in ``test_round_trip_eps_denoised``, 8 roundings on values up to ``scale``, amplified by
    1 / min(|a|, |b|) = 10 (the divisions). Δx̂₀ = −b Δε / a against the difference of two conversions: the same
    8 roundings, amplified by max(|b|, 1) / min|a| = 4. Swapping a and b (the bug) misses by more than 1e3 bounds.
    """
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    x = core.renoise(x0, eps, SIGNAL, NOISE)
    amplification = 1.0 / float(torch.minimum(SIGNAL.abs(), NOISE.abs()).min())
    bound = f32_bound(max_abs(x0, eps, x), ops=8, amplification=amplification)
    assert_f32_close(core.eps_from_denoised(x, x0, SIGNAL, NOISE), eps, bound,
                     wrong=core.eps_from_denoised(x, x0, NOISE, SIGNAL))
    assert_f32_close(core.denoised_from_eps(x, eps, SIGNAL, NOISE), x0, bound,
                     wrong=core.denoised_from_eps(x, eps, NOISE, SIGNAL))
    d_eps = torch.randn(4, 3, 5, 5, generator=g)
    delta = core.denoised_from_eps(x, eps + d_eps, SIGNAL, NOISE) - core.denoised_from_eps(x, eps, SIGNAL, NOISE)
    amplification = max(float(NOISE.abs().max()), 1.0) / float(SIGNAL.abs().min())
    bound = f32_bound(max_abs(x, eps, eps + d_eps, delta), ops=8, amplification=amplification)
    assert_f32_close(core.denoised_delta_from_eps_delta(d_eps, SIGNAL, NOISE), delta, bound,
                     wrong=core.denoised_delta_from_eps_delta(d_eps, SIGNAL, SIGNAL))


def test_per_sample_scales_keep_samples_independent():
    """Each sample of a batch gives exactly what it gives alone (elementwise: the same operations, bit for bit)."""
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g)
    x = core.renoise(x0, eps, SIGNAL, NOISE)
    outs = {"renoise": x, "eps": core.eps_from_denoised(x, x0, SIGNAL, NOISE),
            "x0": core.denoised_from_eps(x, eps, SIGNAL, NOISE),
            "delta": core.denoised_delta_from_eps_delta(eps, SIGNAL, NOISE)}
    for i in range(4):
        one = slice(i, i + 1)
        a, b = SIGNAL[one], NOISE[one]
        solo = {"renoise": core.renoise(x0[one], eps[one], a, b), "eps": core.eps_from_denoised(x[one], x0[one], a, b),
                "x0": core.denoised_from_eps(x[one], eps[one], a, b),
                "delta": core.denoised_delta_from_eps_delta(eps[one], a, b)}
        for name, value in solo.items():
            assert torch.equal(outs[name][one], value), (name, i)


def test_negative_signal_scale_is_not_degenerate_and_tiny_one_is():
    delta = core.denoised_delta_from_eps_delta(torch.ones(3, 2), torch.tensor([-0.5, 5e-5, -5e-5]),
                                               torch.tensor([1.0, 1.0, 1.0]))
    assert torch.equal(delta[0], torch.full((2,), 2.0)) and torch.all(delta[1:] == 0)
