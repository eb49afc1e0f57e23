"""The paper's Eq. 9: the guidance weight that minimises the guided score's error at one step.

With ``s_cfg = s_c + (ω − 1) Δ``, ``Δ = s_c − s_∅`` and the branch error ``e = ∇log q(x|c) − s_c``,
``‖s_cfg − ∇log q‖²`` is minimised by ``ω* = 1 + ⟨Δ, e⟩ / ‖Δ‖²``. The ratio is the same in ε-space
(``Δ_ε = ε_c − ε_∅``, ``e_ε = ε* − ε_c``), since ``s = −ε/σ`` scales both by ``−1/σ``.

Not a node and not part of the pack: the archived known-score write-up (docs/evidence/archive/known_score.md)
measured it and found it no better than a fixed ω. The error ``e`` is either the true one (an oracle, known on
synthetic testbeds) or an estimate, e.g. the consistency residual ``ε'(x') − ε`` at the re-noised conditional
estimate ``x' = a(σ) x̂₀ + σ ε`` (the direction DiffIER's consistency mode steps along). Plain torch; float32
arithmetic.
"""

from __future__ import annotations

import torch

__all__ = ["OMEGA_REDUCTIONS", "optimal_omega", "guide_with_omega"]

OMEGA_REDUCTIONS: tuple[str, ...] = ("sample", "batch")

_TINY = 1e-12


def optimal_omega(delta: torch.Tensor, error: torch.Tensor, *, reduction: str = "sample",
                  omega_min: float = 0.0, omega_max: float = 20.0) -> torch.Tensor:
    """Eq. 9's ``ω* = 1 + ⟨Δ, e⟩/‖Δ‖²`` per sample, shape ``[B]``, clamped to ``[omega_min, omega_max]``.

    Args:
        delta: the conditional minus unconditional prediction ``[B, ...]`` (ε- or score-space).
        error: the conditional branch's error in the same space and sign convention (truth − cond).
        reduction: ``"sample"`` (one ω per sample) or ``"batch"`` (the paper's expectation over x_t:
            the mean of the per-sample ratios, the same ω for the whole batch).
        omega_min, omega_max: clamp; samples with ``Δ = 0`` get ``1 + 0 = 1`` before clamping.
    """
    if reduction not in OMEGA_REDUCTIONS:
        raise ValueError(f"reduction must be one of {OMEGA_REDUCTIONS}, got {reduction!r}")
    if delta.shape != error.shape:
        raise ValueError(f"error must have delta's shape {tuple(delta.shape)}, got {tuple(error.shape)}")
    d = delta.reshape(delta.shape[0], -1).float()
    e = error.reshape(error.shape[0], -1).float()
    ratio = (d * e).sum(dim=1) / d.square().sum(dim=1).clamp_min(_TINY)
    omega = 1.0 + ratio
    if reduction == "batch":
        omega = omega.mean().expand_as(omega)
    return omega.clamp(omega_min, omega_max)


def guide_with_omega(uncond: torch.Tensor, cond: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """``uncond + ω (cond − uncond)`` with a per-sample ``ω`` (shape ``[B]``); any prediction type."""
    w = omega.to(cond.dtype).reshape((-1,) + (1,) * (cond.ndim - 1))
    return uncond + w * (cond - uncond)
