"""DiffIER core: DiffIER and what DiffIER needs, in plain torch (never imports ComfyUI).

Chen, Ding, Xue (2025), "Optimizing Diffusion Models with Iterative Error Reduction".
"""

from .config import AT_CFG_1, DEFAULTS, INNER_GUIDANCE, MODES, RANGES, REDUCTIONS, DiffIERSettings
from .conversions import (
    CONVENTIONS,
    append_dims,
    convention_scales,
    denoised_delta_from_eps_delta,
    denoised_from_eps,
    eps_from_denoised,
    renoise,
)
from .correction import StepInfo, consistency_correction, diffier_step, paper_correction, resolve_steps
from .errors import DiffIERError, DiffIERParameterError
from .metrics import per_sample_finite, per_sample_mean_square, per_sample_rms, per_sample_sum_square
from .noise import PerSampleNoise, mix_seed, sample_seeds

__all__ = [
    "AT_CFG_1", "CONVENTIONS", "DEFAULTS", "INNER_GUIDANCE", "MODES", "RANGES", "REDUCTIONS", "DiffIERSettings",
    "DiffIERError", "DiffIERParameterError", "PerSampleNoise", "StepInfo", "append_dims",
    "consistency_correction", "convention_scales", "denoised_delta_from_eps_delta", "denoised_from_eps", "diffier_step",
    "eps_from_denoised", "mix_seed", "paper_correction",
    "per_sample_finite", "per_sample_mean_square", "per_sample_rms", "per_sample_sum_square", "renoise",
    "resolve_steps", "sample_seeds",
]
