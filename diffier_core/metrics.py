"""Per-sample reductions in float32 (a batch never mixes samples)."""

from __future__ import annotations

import torch

__all__ = ["per_sample_mean_square", "per_sample_sum_square", "per_sample_rms", "per_sample_finite"]


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).float()


def per_sample_mean_square(t: torch.Tensor) -> torch.Tensor:
    """mean(t²) over every dim but the batch, in float32: the paper's L with PyTorch's default reduction."""
    return _flat(t).square().mean(dim=1)


def per_sample_sum_square(t: torch.Tensor) -> torch.Tensor:
    """sum(t²) over every dim but the batch, in float32: the paper's L read literally as ‖·‖²."""
    return _flat(t).square().sum(dim=1)


def per_sample_rms(t: torch.Tensor) -> torch.Tensor:
    """Root mean square over every dim but the batch, in float32."""
    return per_sample_mean_square(t).sqrt()


def per_sample_finite(t: torch.Tensor) -> torch.Tensor:
    """True for each sample whose every element is finite."""
    return torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
