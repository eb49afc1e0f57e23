"""The paper's Eq. 9 (benchmarks/eq9.py): the per-sample guidance weight that cancels the branch error along Δ.

Float32 values of order 1 compared with ``assert_close``'s float32 defaults (1.3e-6 relative, 1e-5 absolute),
far below the 0.5 gap between the tested weights.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import eq9


def test_optimal_omega_recovers_the_weight():
    g = torch.Generator().manual_seed(0)
    delta = torch.randn((5, 4, 8, 8), generator=g)
    w0 = torch.tensor([0.5, 1.0, 2.0, 4.0, 7.5])
    err = (w0 - 1).reshape(-1, 1, 1, 1) * delta
    torch.testing.assert_close(eq9.optimal_omega(delta, err), w0)
    # an error orthogonal to Δ does not change ω*
    ortho = torch.randn(delta.shape, generator=g)
    flat_d, flat_o = delta.reshape(5, -1), ortho.reshape(5, -1)
    ortho = (flat_o - (flat_o * flat_d).sum(1, keepdim=True) / flat_d.square().sum(1, keepdim=True) * flat_d)
    torch.testing.assert_close(eq9.optimal_omega(delta, err + ortho.reshape(delta.shape)), w0)
    batch = eq9.optimal_omega(delta, err, reduction="batch")
    torch.testing.assert_close(batch, torch.full((5,), float(w0.mean())))
    assert eq9.optimal_omega(delta, err, omega_max=3.0).max() == 3.0
    # the guided prediction with ω* is the truth when the error lies along Δ
    cond, uncond = torch.randn((2, 5, 4, 8, 8), generator=g)
    truth = cond + (w0 - 1).reshape(-1, 1, 1, 1) * (cond - uncond)
    omega = eq9.optimal_omega(cond - uncond, truth - cond)
    torch.testing.assert_close(eq9.guide_with_omega(uncond, cond, omega), truth)
    with pytest.raises(ValueError):
        eq9.optimal_omega(delta, err, reduction="median")
