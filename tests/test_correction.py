"""diffier_core.correction: both modes against golden values, convergence, batching, dtypes, non-finite.

Near-equality checks use the float32 bounds of tests/float_bounds.py; ``torch.equal`` claims are exact by
construction (a factor of 0, a pass-through copy), so they hold on any CPU.
"""

import pytest
import torch
from float_bounds import assert_f32_close, f32_bound, max_abs
from pack_loader import import_core

core = import_core()


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
    out, info = core.paper_correction(x, d, sigma, fixed_noise(n), convention="eps", eta=0.05, max_iters=1)
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
    eps0 = core.eps_from_denoised(x, d, sigma, "eps")
    out, _ = core.paper_correction(x, d, sigma, seeded(2), convention="eps", eta=0.05, threshold=0.0,
                                   max_iters=20, reduction="sum")
    eps = core.eps_from_denoised(x, out, sigma, "eps")
    kept = (eps * eps0).flatten(1).sum(1) / eps0.flatten(1).square().sum(1)  # share of ε_cfg left
    torch.testing.assert_close(kept, torch.full((2,), 0.9**20), atol=0.03, rtol=0)  # 0.9^20 ≈ 0.12
    out_mean, _ = core.paper_correction(x, d, sigma, seeded(2), convention="eps", eta=0.05, threshold=0.0,
                                        max_iters=20, reduction="mean")
    assert (out_mean - d).abs().max() < 1e-2 * d.abs().max()  # the mean reading barely moves it


def test_paper_converges_when_loss_stops_changing():
    x, d = data((2, 4, 32, 32))
    n = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    out, info = core.paper_correction(x, d, torch.tensor([0.7, 0.7]), fixed_noise(n), convention="eps",
                                      eta=0.05, threshold=1e-3, max_iters=10)
    assert info.iterations.tolist() == [1, 1]  # same draw → loss change ≪ 1e-3 at k = 1
    assert torch.isfinite(out).all()


def test_paper_flow_at_sigma_one_leaves_estimate():
    x, d = data((1, 3, 4))
    out, _ = core.paper_correction(x, d, torch.tensor([1.0]), seeded(1), convention="flow", max_iters=4)
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
    out, info = core.consistency_correction(x, d, torch.tensor([0.8]), seeded(1), lambda xp: target,
                                            convention="eps", eta=0.05, threshold=0.0, max_iters=3)
    assert_f32_close(out, target + 0.9**3 * (d - target), f32_bound(max_abs(x, d, target), ops=30,
                                                                     amplification=1.25),
                     wrong=target + 0.9**2 * (d - target))
    assert info.model_evals == 3 and info.iterations.tolist() == [3]


@pytest.mark.parametrize("convention", ["eps", "flow"])
def test_consistency_loss_is_training_loss_of_ideal_denoiser(convention):
    """Data = a point mass at μ: the ideal denoiser returns μ; at x̂₀ = μ the training loss is exactly 0."""
    mu = torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([0.4])
    x = core.renoise(mu, torch.randn_like(mu), sigma, convention)
    out, info = core.consistency_correction(x, mu.clone(), sigma, seeded(1), lambda xp: mu,
                                            convention=convention, max_iters=4)
    assert info.loss_initial.item() < 1e-10
    assert info.iterations.tolist() == [1] and info.model_evals == 1  # converged at once: no wasted evals
    torch.testing.assert_close(out, mu)
    off = mu + 0.5
    out2, info2 = core.consistency_correction(x, off, sigma, seeded(1), lambda xp: mu, convention=convention,
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
    out, info = core.consistency_correction(x, d, sigma, core.PerSampleNoise([10, 11]), lambda xp: target,
                                            convention="eps", max_iters=4)
    assert info.iterations.tolist() == [1, 4]
    bound = f32_bound(max_abs(x, d, target), ops=40, amplification=2.0)
    for i, s in enumerate([10, 11]):
        solo, _ = core.consistency_correction(x[i:i + 1], d[i:i + 1], sigma[i:i + 1], core.PerSampleNoise([s]),
                                              lambda xp, i=i: target[i:i + 1], convention="eps", max_iters=4)
        assert_f32_close(out[i:i + 1], solo, bound, wrong=out[1 - i:2 - i])


def test_consistency_flow_at_sigma_one_is_finite():
    x, d = data((1, 4, 4, 4))
    out, info = core.consistency_correction(x, d, torch.tensor([1.0]), seeded(1), lambda xp: torch.zeros_like(xp),
                                            convention="flow", max_iters=2)
    assert torch.isfinite(out).all() and info.loss_initial.item() == 0.0


# -- shared behaviour ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["paper", "consistency"])
def test_low_precision_in_float32_out_input_dtype(dtype, mode):
    x, d = (t.to(dtype) * 200 for t in data((1, 4, 16, 16)))  # large values: float16 squares would overflow
    cfg = core.DiffIERConfig(mode=mode)
    out, info = core.diffier_step(x, d, torch.tensor(0.5), cfg, seeded(1), convention="eps",
                                  evaluate=lambda xp: d)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert torch.isfinite(info.loss_initial).all() and info.kept.all()


@pytest.mark.parametrize("mode", ["paper", "consistency"])
def test_nonfinite_input_passes_through_and_is_flagged(mode):
    x, d = data((2, 2, 4, 4))
    d[0, 0, 0, 0] = float("nan")
    out, info = core.diffier_step(x, d, torch.tensor([0.5, 0.5]), core.DiffIERConfig(mode=mode), seeded(2),
                                  convention="eps", evaluate=lambda xp: torch.zeros_like(xp))
    assert torch.isnan(out[0, 0, 0, 0]) and torch.equal(out[0].isnan(), d[0].isnan())  # not hidden
    assert torch.isfinite(out[1]).all() and not torch.equal(out[1], d[1])             # not spread
    assert info.input_finite.tolist() == [False, True]


def test_nonfinite_correction_is_discarded_per_sample():
    x, d = data((2, 2, 4, 4))

    def evaluate(xp):
        out = torch.zeros_like(xp)
        out[1] = float("inf")
        return out

    out, info = core.diffier_step(x, d, torch.tensor([0.5, 0.5]), core.DiffIERConfig(), seeded(2),
                                  convention="eps", evaluate=evaluate)
    assert torch.equal(out[1], d[1]) and not torch.equal(out[0], d[0])
    assert info.kept.tolist() == [True, False] and info.input_finite.tolist() == [True, True]


@pytest.mark.parametrize("shape", [(2, 8, 16), (2, 4, 3, 6, 6)])
def test_audio_and_video_shapes(shape):
    x, d = data(shape)
    out, info = core.diffier_step(x, d, torch.tensor([0.3, 0.6]), core.DiffIERConfig(), seeded(2),
                                  convention="flow", evaluate=lambda xp: xp * 0.5)
    assert out.shape == shape and torch.isfinite(out).all() and info.model_evals >= 1


def test_disabled_config_is_identity():
    x, d = data()
    out, info = core.diffier_step(x, d, torch.tensor(0.5), core.DiffIERConfig(eta=0.0), seeded(2),
                                  convention="eps")
    assert out is d and info.model_evals == 0


def test_bad_shapes_and_missing_evaluator():
    x, d = data()
    with pytest.raises(core.DiffIERParameterError, match="denoised"):
        core.diffier_step(x, d[:1], torch.tensor(0.5), core.DiffIERConfig(), seeded(2), convention="eps")
    with pytest.raises(core.DiffIERParameterError, match="sigma"):
        core.diffier_step(x, d, torch.ones(3), core.DiffIERConfig(), seeded(2), convention="eps")
    with pytest.raises(core.DiffIERParameterError, match="evaluate"):
        core.diffier_step(x, d, torch.tensor(0.5), core.DiffIERConfig(), seeded(2), convention="eps")


def test_info_resolves_to_python_numbers():
    x, d = data()
    _, info = core.diffier_step(x, d, torch.tensor(0.5), core.DiffIERConfig(mode="paper"), seeded(2),
                                convention="eps")
    r = info.resolve()
    assert r["mode"] == "paper" and r["model_evals"] == 0
    assert all(isinstance(v, int) for v in r["iterations"]) and len(r["loss_initial"]) == 2


def test_resolve_steps_matches_resolve_and_adds_sigma():
    x, d = data()
    infos, sigmas = [], []
    for s in (0.9, 0.4):
        _, info = core.diffier_step(x, d, torch.tensor(s), core.DiffIERConfig(mode="paper"), seeded(2),
                                    convention="eps")
        infos.append(info)
        sigmas.append(torch.tensor([s, s]))
    with core.SyncCounter() as c:
        records = core.resolve_steps(sigmas, infos)
    assert c.count == 1
    for i, (record, info) in enumerate(zip(records, infos, strict=True)):
        expected = info.resolve()
        assert record["step"] == i and record["sigma"] == pytest.approx(float(sigmas[i][0]))
        for key in expected:
            assert record[key] == pytest.approx(expected[key])
