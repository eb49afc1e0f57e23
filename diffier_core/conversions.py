"""Conversions between the noise prediction ε and the clean estimate x̂₀ for ComfyUI's conventions.

ComfyUI samples in one of two affine noise conventions (``model_sampling.noise_scaling``):

* ``"eps"``  (EPS, V-prediction, EDM, X0 models):  ``x = x₀ + σ ε``
* ``"flow"`` (CONST / rectified-flow models):        ``x = (1 − σ) x₀ + σ ε``

Every function is elementwise with σ broadcast per sample, so samples of a batch never mix.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = [
    "CONVENTIONS",
    "Convention",
    "append_dims",
    "signal_scale",
    "eps_from_denoised",
    "denoised_from_eps",
    "renoise",
    "denoised_delta_from_eps_delta",
]

Convention = Literal["eps", "flow"]
CONVENTIONS: tuple[str, ...] = ("eps", "flow")

#: Below this value of the signal scale a(σ) the map ε → x̂₀ is treated as degenerate (flow at σ → 1).
DEGENERATE_SIGNAL_SCALE = 1e-4


def append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims to a per-sample tensor ``t`` (shape ``[B]`` or scalar) up to ``ndim``."""
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim > ndim:
        raise ValueError(f"append_dims: tensor has {t.ndim} dims, more than the target {ndim}")
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


def _check(convention: str) -> None:
    if convention not in CONVENTIONS:
        from .errors import DiffIERParameterError

        raise DiffIERParameterError("convention", convention, f"one of {CONVENTIONS}")


def signal_scale(sigma: torch.Tensor, convention: Convention) -> torch.Tensor:
    """a(σ) in ``x = a(σ) x₀ + σ ε``: 1 for ``eps``, 1 − σ for ``flow``."""
    _check(convention)
    return torch.ones_like(sigma) if convention == "eps" else 1.0 - sigma


def eps_from_denoised(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor,
                      convention: Convention) -> torch.Tensor:
    """ε = (x − a(σ) x̂₀) / σ  (σ > 0)."""
    s = append_dims(sigma, x.ndim)
    return (x - append_dims(signal_scale(sigma, convention), x.ndim) * denoised) / s


def denoised_from_eps(x: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor,
                      convention: Convention) -> torch.Tensor:
    """x̂₀ = (x − σ ε) / a(σ)  (a(σ) > 0; for ``flow`` this needs σ < 1)."""
    s = append_dims(sigma, x.ndim)
    return (x - s * eps) / append_dims(signal_scale(sigma, convention), x.ndim)


def renoise(denoised: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor,
            convention: Convention) -> torch.Tensor:
    """x' = a(σ) x̂₀ + σ ε: the forward (training) noising of x̂₀ at level σ, as ``noise_scaling`` does."""
    s = append_dims(sigma, denoised.ndim)
    return append_dims(signal_scale(sigma, convention), denoised.ndim) * denoised + s * noise


def denoised_delta_from_eps_delta(delta_eps: torch.Tensor, sigma: torch.Tensor,
                                  convention: Convention) -> torch.Tensor:
    """Δx̂₀ = −σ Δε / a(σ) at fixed x; zero where a(σ) < 1e-4 (flow at σ ≈ 1, where ε fixes no x̂₀)."""
    a = signal_scale(sigma, convention)
    degenerate = a.abs() < DEGENERATE_SIGNAL_SCALE
    factor = torch.where(degenerate, torch.zeros_like(a), -sigma / a.clamp_min(DEGENERATE_SIGNAL_SCALE))
    return append_dims(factor, delta_eps.ndim) * delta_eps
