"""diffier_core.metrics: per-sample float32 reductions.

The inputs are small integers: every sum and square is exact, so the values hold bit for bit on any CPU.
"""

import torch
from pack_loader import import_core

core = import_core()


def test_per_sample_reductions_golden():
    t = torch.tensor([[1.0, -1.0, 1.0, -1.0], [2.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(core.per_sample_mean_square(t), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(core.per_sample_sum_square(t), torch.tensor([4.0, 4.0]))
    torch.testing.assert_close(core.per_sample_rms(t), torch.tensor([1.0, 1.0]))


def test_float16_reductions_do_not_overflow():
    t = torch.full((1, 4096), 300.0, dtype=torch.float16)  # 300² * 4096 overflows float16
    out = core.per_sample_sum_square(t)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out.item() == 300.0**2 * 4096


def test_finite_flags():
    t = torch.zeros(3, 2)
    t[1, 0] = float("nan")
    t[2, 1] = float("inf")
    assert core.per_sample_finite(t).tolist() == [True, False, False]
