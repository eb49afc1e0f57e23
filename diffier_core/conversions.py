"""Conversions between the noise prediction ε and the clean estimate x̂₀ for any affine noise convention.

ComfyUI's ``model_sampling.noise_scaling`` noises a clean latent as ``x = a(σ) x₀ + b(σ) ε``, with a per-sample
signal scale a and noise scale b; the pack reads both off the model itself (``nodes/comfy_adapter.py``). The two
conventions of ComfyUI's built-in samplings (:func:`convention_scales`):

* ``"eps"``  (EPS, V-prediction, EDM, X0 models):   a = 1,     b = σ
* ``"flow"`` (CONST / rectified-flow models):         a = 1 − σ, b = σ   (b = s·σ with CONST's ``noise_scale`` s)

Every function is elementwise with a and b broadcast per sample (shape ``[B]`` or scalar), so samples of a batch
never mix.
"""

from __future__ import annotations

from typing import Literal

import torch

from .errors import DiffIERParameterError

__all__ = [
    "CONVENTIONS",
    "Convention",
    "append_dims",
    "convention_scales",
    "eps_from_denoised",
    "denoised_from_eps",
    "renoise",
    "denoised_delta_from_eps_delta",
]

Convention = Literal["eps", "flow"]
CONVENTIONS: tuple[str, ...] = ("eps", "flow")

#: Below this magnitude of the signal scale a(σ) the map ε → x̂₀ is treated as degenerate (flow at σ → 1).
DEGENERATE_SIGNAL_SCALE = 1e-4


def append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims to a per-sample tensor ``t`` (shape ``[B]`` or scalar) up to ``ndim``."""
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim > ndim:
        raise DiffIERParameterError("t", tuple(t.shape), f"a per-sample tensor with at most ndim = {ndim} dims")
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


def convention_scales(sigma: torch.Tensor, convention: Convention) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of a named convention at σ: ``eps`` (1, σ), ``flow`` (1 − σ, σ)."""
    if convention not in CONVENTIONS:
        raise DiffIERParameterError("convention", convention, f"one of {CONVENTIONS}")
    return (torch.ones_like(sigma) if convention == "eps" else 1.0 - sigma), sigma


def eps_from_denoised(x: torch.Tensor, denoised: torch.Tensor, signal_scale: torch.Tensor,
                      noise_scale: torch.Tensor) -> torch.Tensor:
    """ε = (x − a x̂₀) / b  (b ≠ 0)."""
    return (x - append_dims(signal_scale, x.ndim) * denoised) / append_dims(noise_scale, x.ndim)


def denoised_from_eps(x: torch.Tensor, eps: torch.Tensor, signal_scale: torch.Tensor,
                      noise_scale: torch.Tensor) -> torch.Tensor:
    """x̂₀ = (x − b ε) / a  (a ≠ 0; for flow this needs σ < 1)."""
    return (x - append_dims(noise_scale, x.ndim) * eps) / append_dims(signal_scale, x.ndim)


def renoise(denoised: torch.Tensor, noise: torch.Tensor, signal_scale: torch.Tensor,
            noise_scale: torch.Tensor) -> torch.Tensor:
    """x' = a x̂₀ + b ε: the forward (training) noising of x̂₀, as the model's ``noise_scaling`` does."""
    ndim = denoised.ndim
    return append_dims(signal_scale, ndim) * denoised + append_dims(noise_scale, ndim) * noise


def denoised_delta_from_eps_delta(delta_eps: torch.Tensor, signal_scale: torch.Tensor,
                                  noise_scale: torch.Tensor) -> torch.Tensor:
    """Δx̂₀ = −b Δε / a at fixed x; zero where |a| < 1e-4 (flow at σ ≈ 1, where ε fixes no x̂₀)."""
    a = signal_scale
    degenerate = a.abs() < DEGENERATE_SIGNAL_SCALE
    factor = torch.where(degenerate, torch.zeros_like(a), -noise_scale / torch.where(degenerate, torch.ones_like(a), a))
    return append_dims(factor, delta_eps.ndim) * delta_eps
