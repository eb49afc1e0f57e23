"""diffier_core.correction: both modes against golden values, convergence, batching, dtypes, non-finite.

Near-equality checks use the float32 bounds of tests/float_bounds.py; ``torch.equal`` claims are exact by
construction (a factor of 0, a pass-through copy), so they hold on any CPU.
"""

import pytest
import torch
from float_bounds import assert_f32_close, f32_bound, max_abs
from pack_loader import import_core

from benchmarks.instruments import SyncCounter

core = import_core()
scales = core.convention_scales  # (a, b) of the named conventions: eps (1, σ), flow (1 − σ, σ)


def fixed_noise(value: torch.Tensor):
    """A noise source that always returns ``value`` (for closed-form checks)."""
    return lambda like: value.to(like.device, torch.float32).expand_as(like).clone()


def seeded(batch, seed=0):
    return core.PerSampleNoise([seed + i for i in range(batch)])


def data(shape=(2, 4, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


# -- paper mode ------------------------------------------------------------------------------------
def test_paper_mean_one_step_golden():
    """One step of the printed Algorithm 1 (mean loss) against its closed form, on any CPU.

    Bound (tests/float_bounds.py): ε from x̂₀ (2 operations), the step (4), x̂₀ back (2): 8 roundings on values up
    to ``scale = max|x|, |x̂₀|, |ε|, |n|`` → ``8 · eps_f32 · scale``. The loss is a mean of 6 squares: 6 + 3
    roundings on values up to max (ε − n)². The printed ``+`` sign (the bug) misses by 2·0.5·2η|ε − n|/6, > 1e3
    bounds.
    """
    x, d = data((1, 2, 3))
    sigma = torch.tensor([0.5])
    n = torch.randn(1, 2, 3, generator=torch.Generator().manual_seed(5))
    out, info = core.paper_correction(x, d, *scales(sigma, "eps"), fixed_noise(n), eta=0.05, max_iters=1)
    eps = (x - d) / 0.5
    eps_new = eps - 2 * 0.05 * (eps - n) / 6          # ε_cfg − η ∇ mean((ε_cfg − ε)²)
    plus_sign = eps + 2 * 0.05 * (eps - n) / 6
    assert_f32_close(out, x - 0.5 * eps_new, f32_bound(max_abs(x, d, eps, n, eps_new), ops=8),
                     wrong=x - 0.5 * plus_sign)
    assert info.iterations.tolist() == [1]
    loss = ((eps - n) ** 2).mean().reshape(1)
    assert_f32_close(info.loss_initial, loss, f32_bound(max_abs((eps - n) ** 2), ops=9),
                     wrong=((eps - n) ** 2).sum().reshape(1))   # the sum reduction


def test_paper_sum_reduction_wipes_the_prediction():
    """The literal reading: ε_cfg ← 0.9 ε_cfg + 0.1 ε each iteration replaces the prediction by noise."""
    x, d = data((2, 4, 16, 16))
    sigma = torch.tensor([1.0, 1.0])
    eps0 = core.eps_from_denoised(x, d, *scales(sigma, "eps"))
    out, _ = core.paper_correction(x, d, *scales(sigma, "eps"), seeded(2), eta=0.05, threshold=0.0,
                                   max_iters=20, reduction="sum")
    eps = core.eps_from_denoised(x, out, *scales(sigma, "eps"))
    kept = (eps * eps0).flatten(1).sum(1) / eps0.flatten(1).square().sum(1)  # share of ε_cfg left
    torch.testing.assert_close(kept, torch.full((2,), 0.9**20), atol=0.03, rtol=0)  # 0.9^20 ≈ 0.12
    out_mean, _ = core.paper_correction(x, d, *scales(sigma, "eps"), seeded(2), eta=0.05, threshold=0.0,
                                        max_iters=20, reduction="mean")
    assert (out_mean - d).abs().max() < 1e-2 * d.abs().max()  # the mean reading barely moves it


def test_paper_converges_when_loss_stops_changing():
    x, d = data((2, 4, 32, 32))
    n = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    out, info = core.paper_correction(x, d, *scales(torch.tensor([0.7, 0.7]), "eps"), fixed_noise(n),
                                      eta=0.05, threshold=1e-3, max_iters=10)
    assert info.iterations.tolist() == [1, 1]  # same draw → loss change ≪ 1e-3 at k = 1
    assert torch.isfinite(out).all()


def test_paper_flow_at_sigma_one_leaves_estimate():
    x, d = data((1, 3, 4))
    out, _ = core.paper_correction(x, d, *scales(torch.tensor([1.0]), "flow"), seeded(1), max_iters=4)
    assert torch.equal(out, d)


# -- consistency mode ------------------------------------------------------------------------------
def test_consistency_golden_fixed_target():
    """With D_cfg(x') ≡ T, x̂₀ ← x̂₀ + 2η(T − x̂₀) gives T + (1 − 2η)^k (x̂₀ − T).

    Bound (tests/float_bounds.py): 3 iterations of 3 rounded operations each, plus the ε ↔ x̂₀ conversions
    around them (4 per iteration, the division by σ = 0.8 amplifying by 1.25): 30 roundings on values up to
    ``scale = max|x|, |x̂₀|, |T|`` → ``30 · eps_f32 · scale · 1.25``. One iteration too few or too many (the
    bug) misses by 0.1 · 0.9^2 |x̂₀ − T|, > 1e3 bounds.
    """
    x, d = data((1, 2, 4, 4))
    target = torch.full_like(d, 0.3)
    out, info = core.consistency_correction(x, d, *scales(torch.tensor([0.8]), "eps"), seeded(1), lambda xp: target,
                                            eta=0.05, threshold=0.0, max_iters=3)
    assert_f32_close(out, target + 0.9**3 * (d - target), f32_bound(max_abs(x, d, target), ops=30,
                                                                     amplification=1.25),
                     wrong=target + 0.9**2 * (d - target))
    assert info.model_evals == 3 and info.iterations.tolist() == [3]


@pytest.mark.parametrize("convention", ["eps", "flow"])
def test_consistency_loss_is_training_loss_of_ideal_denoiser(convention):
    """Data = a point mass at μ: the ideal denoiser returns μ; at x̂₀ = μ the training loss is exactly 0."""
    mu = torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([0.4])
    x = core.renoise(mu, torch.randn_like(mu), *scales(sigma, convention))
    out, info = core.consistency_correction(x, mu.clone(), *scales(sigma, convention), seeded(1), lambda xp: mu,
                                            max_iters=4)
    assert info.loss_initial.item() < 1e-10
    assert info.iterations.tolist() == [1] and info.model_evals == 1  # converged at once: no wasted evals
    torch.testing.assert_close(out, mu)
    off = mu + 0.5
    out2, info2 = core.consistency_correction(x, off, *scales(sigma, convention), seeded(1), lambda xp: mu,
                                              threshold=0.0, max_iters=1)
    assert info2.loss_initial.item() > 0.1
    assert (out2 - mu).abs().mean() < (off - mu).abs().mean()  # pulled toward the model's answer


def test_consistency_samples_independent_of_batch():
    """Each sample of a batch equals its batch-1 run, up to float32 rounding, on any CPU.

    Bound (tests/float_bounds.py): per element, 4 iterations of at most 10 rounded operations (re-noise,
    conversions, the step) on values up to ``scale = max|x|, |x̂₀|, |T|`` divided by σ = 0.5 (amplification 2):
    ``40 · eps_f32 · scale · 2``. Per-sample reductions (the rms for convergence) may add in another order in a
    batch, but only decide when to stop, and both samples are far from the threshold (1 and 4 iterations).
    The other sample's result (sample mixing) misses by > 1e3 bounds.
    """
    x, d = data((2, 2, 6, 6), seed=4)
    target = torch.stack([d[0], torch.zeros_like(d[1])])  # sample 0 already consistent, sample 1 not
    sigma = torch.tensor([0.5, 0.5])
    out, info = core.consistency_correction(x, d, *scales(sigma, "eps"), core.PerSampleNoise([10, 11]),
                                            lambda xp: target, max_iters=4)
    assert info.iterations.tolist() == [1, 4]
    bound = f32_bound(max_abs(x, d, target), ops=40, amplification=2.0)
    for i, s in enumerate([10, 11]):
        solo, _ = core.consistency_correction(x[i:i + 1], d[i:i + 1], *scales(sigma[i:i + 1], "eps"),
                                              core.PerSampleNoise([s]),
                                              lambda xp, i=i: target[i:i + 1], max_iters=4)
        assert_f32_close(out[i:i + 1], solo, bound, wrong=out[1 - i:2 - i])


def test_consistency_flow_at_sigma_one_is_finite():
    x, d = data((1, 4, 4, 4))
    out, info = core.consistency_correction(x, d, *scales(torch.tensor([1.0]), "flow"), seeded(1),
                                            lambda xp: torch.zeros_like(xp), max_iters=2)
    assert torch.isfinite(out).all() and info.loss_initial.item() == 0.0


# -- shared behaviour ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["paper", "consistency"])
def test_low_precision_in_float32_out_input_dtype(dtype, mode):
    x, d = (t.to(dtype) * 200 for t in data((1, 4, 16, 16)))  # large values: float16 squares would overflow
    cfg = core.DiffIERSettings(mode=mode)
    out, info = core.diffier_step(x, d, *scales(torch.tensor(0.5), "eps"), cfg, seeded(1),
                                  evaluate=lambda xp: d)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert torch.isfinite(info.loss_initial).all() and info.kept.all()


@pytest.mark.parametrize("mode", ["paper", "consistency"])
def test_nonfinite_input_passes_through_and_is_flagged(mode):
    x, d = data((2, 2, 4, 4))
    d[0, 0, 0, 0] = float("nan")
    out, info = core.diffier_step(x, d, *scales(torch.tensor([0.5, 0.5]), "eps"), core.DiffIERSettings(mode=mode),
                                  seeded(2), evaluate=lambda xp: torch.zeros_like(xp))
    assert torch.isnan(out[0, 0, 0, 0]) and torch.equal(out[0].isnan(), d[0].isnan())  # not hidden
    assert torch.isfinite(out[1]).all() and not torch.equal(out[1], d[1])             # not spread
    assert info.input_finite.tolist() == [False, True]


def test_nonfinite_correction_is_discarded_per_sample():
    x, d = data((2, 2, 4, 4))

    def evaluate(xp):
        out = torch.zeros_like(xp)
        out[1] = float("inf")
        return out

    out, info = core.diffier_step(x, d, *scales(torch.tensor([0.5, 0.5]), "eps"), core.DiffIERSettings(), seeded(2),
                                  evaluate=evaluate)
    assert torch.equal(out[1], d[1]) and not torch.equal(out[0], d[0])
    assert info.kept.tolist() == [True, False] and info.input_finite.tolist() == [True, True]


@pytest.mark.parametrize("shape", [(2, 8, 16), (2, 4, 3, 6, 6)])
def test_audio_and_video_shapes(shape):
    x, d = data(shape)
    out, info = core.diffier_step(x, d, *scales(torch.tensor([0.3, 0.6]), "flow"), core.DiffIERSettings(), seeded(2),
                                  evaluate=lambda xp: xp * 0.5)
    assert out.shape == shape and torch.isfinite(out).all() and info.model_evals >= 1


def test_disabled_config_is_identity():
    x, d = data()
    out, info = core.diffier_step(x, d, *scales(torch.tensor(0.5), "eps"), core.DiffIERSettings(eta=0.0), seeded(2))
    assert out is d and info.model_evals == 0


def test_bad_shapes_and_missing_evaluator():
    x, d = data()
    with pytest.raises(core.DiffIERParameterError, match="denoised"):
        core.diffier_step(x, d[:1], *scales(torch.tensor(0.5), "eps"), core.DiffIERSettings(), seeded(2))
    with pytest.raises(core.DiffIERParameterError, match="signal_scale"):
        core.diffier_step(x, d, *scales(torch.ones(3), "eps"), core.DiffIERSettings(), seeded(2))
    with pytest.raises(core.DiffIERParameterError, match="evaluate"):
        core.diffier_step(x, d, *scales(torch.tensor(0.5), "eps"), core.DiffIERSettings(), seeded(2))


def test_info_resolves_to_python_numbers():
    x, d = data()
    _, info = core.diffier_step(x, d, *scales(torch.tensor(0.5), "eps"), core.DiffIERSettings(mode="paper"), seeded(2))
    r = info.resolve()
    assert r["mode"] == "paper" and r["model_evals"] == 0
    assert all(isinstance(v, int) for v in r["iterations"]) and len(r["loss_initial"]) == 2


def test_resolve_steps_matches_resolve_and_adds_sigma():
    x, d = data()
    infos, sigmas = [], []
    for s in (0.9, 0.4):
        paper = core.DiffIERSettings(mode="paper")
        _, info = core.diffier_step(x, d, *scales(torch.tensor(s), "eps"), paper, seeded(2))
        infos.append(info)
        sigmas.append(torch.tensor([s, s]))
    with SyncCounter() as c:
        records = core.resolve_steps(sigmas, infos)
    assert c.count == 1
    for i, (record, info) in enumerate(zip(records, infos, strict=True)):
        expected = info.resolve()
        assert record["step"] == i and record["sigma"] == pytest.approx(float(sigmas[i][0]))
        for key in expected:
            assert record[key] == pytest.approx(expected[key])


# -- any affine convention x = a x₀ + b ε -------------------------------------------------------------
def test_consistency_renoises_and_weighs_with_the_given_scales():
    """Flow with noise scale s = 7.5 at σ = 0.4 (a = 0.6, b = 3): x' = a x̂₀ + b ε, and the initial loss is the
    training loss mean((ε' − ε)²) = (a/b)² mean((x̂₀' − x̂₀)²).

    Bounds (tests/float_bounds.py): x' is 3 roundings on values up to ``max|a x̂₀|, |b ε|``; the loss a mean of
    N squares (N + 3 roundings) on values up to ``(a/b)² max (T − x̂₀)²``. Re-noising with b = σ (the bug) misses
    by 2.6 |ε|, the loss weighed by (a/σ)² by a factor 56: both beyond 1e3 bounds.
    """
    x, d = data((1, 2, 4, 4))
    n = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(6))
    target = torch.full_like(d, 0.3)
    a, b, sigma = torch.tensor([0.6]), torch.tensor([0.4 * 7.5]), 0.4
    seen = []

    def evaluate(x_prime):
        seen.append(x_prime.clone())
        return target

    _, info = core.consistency_correction(x, d, a, b, fixed_noise(n), evaluate, threshold=0.0, max_iters=1)
    expected = 0.6 * d + 3.0 * n
    assert_f32_close(seen[0], expected, f32_bound(max_abs(0.6 * d, 3.0 * n, expected), ops=4),
                     wrong=0.6 * d + sigma * n)
    loss = ((0.6 / 3.0) ** 2 * ((target - d) ** 2).mean()).reshape(1)
    weighed_by_sigma = ((0.6 / sigma) ** 2 * ((target - d) ** 2).mean()).reshape(1)
    assert_f32_close(info.loss_initial, loss, f32_bound(max_abs(loss), ops=d.numel() + 3), wrong=weighed_by_sigma)


def test_paper_one_step_golden_with_a_noise_scale():
    """``test_paper_mean_one_step_golden`` with a = 0.75, b = 0.25 · 7.5 (flow with noise scale 7.5 at σ = 0.25).

    Bound: the same 8 roundings on values up to ``scale``, x̂₀ back divided by a = 0.75 (amplification 4/3).
    Reading ε with b = σ (the bug) misses by ≫ 1e3 bounds.
    """
    x, d = data((1, 2, 3))
    n = torch.randn(1, 2, 3, generator=torch.Generator().manual_seed(5))
    a, b = torch.tensor([0.75]), torch.tensor([1.875])
    out, info = core.paper_correction(x, d, a, b, fixed_noise(n), eta=0.05, max_iters=1)
    eps = (x - 0.75 * d) / 1.875
    eps_new = eps - 2 * 0.05 * (eps - n) / 6
    eps_sigma = (x - 0.75 * d) / 0.25
    wrong = (x - 0.25 * (eps_sigma - 2 * 0.05 * (eps_sigma - n) / 6)) / 0.75
    assert_f32_close(out, (x - 1.875 * eps_new) / 0.75,
                     f32_bound(max_abs(x, d, eps, n, eps_new, 1.875 * eps_new), ops=8, amplification=4 / 3),
                     wrong=wrong)
    assert info.iterations.tolist() == [1] and info.noised.tolist() == [True]


@pytest.mark.parametrize("mode", ["paper", "consistency"])
def test_a_sample_without_noise_passes_through_and_is_flagged(mode):
    """b = 0 for sample 0 (no noise at its σ): it is returned unchanged, flagged ``noised = False`` (not as a
    discarded non-finite correction); sample 1 equals its batch-1 run up to float32 rounding (bound as in
    ``test_consistency_samples_independent_of_batch``: 40 roundings, divided by b = 0.4), and is not its input."""
    x, d = data((2, 2, 4, 4))
    a, b = torch.tensor([1.0, 0.6]), torch.tensor([0.0, 0.4])
    target = torch.zeros_like(d)
    config = core.DiffIERSettings(mode=mode, threshold=0.0, max_iters=3)
    out, info = core.diffier_step(x, d, a, b, config, core.PerSampleNoise([7, 8]), evaluate=lambda xp: target)
    assert torch.equal(out[0], d[0]) and not torch.equal(out[1], d[1]) and torch.isfinite(out).all()
    assert info.noised.tolist() == [False, True] and info.kept.tolist() == [False, True]
    assert info.input_finite.tolist() == [True, True] and info.iterations.tolist() == [0, 3]
    solo, _ = core.diffier_step(x[1:], d[1:], a[1:], b[1:], config, core.PerSampleNoise([8]),
                                evaluate=lambda xp: target[1:])
    assert_f32_close(out[1:], solo, f32_bound(max_abs(x, d, out), ops=40, amplification=2.5),
                     wrong=d[1:])
    assert info.resolve()["noised"] == [False, True]


def test_bad_scale_shapes_name_the_parameter():
    x, d = data()
    with pytest.raises(core.DiffIERParameterError, match="noise_scale"):
        core.diffier_step(x, d, torch.ones(2), torch.ones(3), core.DiffIERSettings(), seeded(2),
                          evaluate=lambda xp: d)
