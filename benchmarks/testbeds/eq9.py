"""Eq. 9 adaptive guidance as a benchmark-only ComfyUI post-CFG hook (oracle and estimated error).

The hook replaces the guided prediction by ``D_∅ + ω*_t (D_c − D_∅)`` with ``ω*_t`` from
``diffier_core.adaptive.optimal_omega``. The branch error ``e = ε* − ε_c`` is

* ``oracle``: the true error from the testbed's exact conditional ε* (needs the labels of the batch);
* ``estimate``: the consistency residual ``ε_c(x') − ε`` at ``x' = D_c + σ ε`` (one extra
  conditional evaluation per sample and step, through ComfyUI's ``calc_cond_batch``).

It records the mean ω per step in ``trace`` (σ, mean ω, and the oracle ω when it can be computed).
"""

from __future__ import annotations

from typing import Any

import torch

from .gmm import GMM

__all__ = ["Eq9Hook"]


class Eq9Hook:
    """Post-CFG function; ``apply(model)`` returns a patched clone.

    Args:
        adaptive: the pack's ``diffier_core.adaptive`` module.
        error: ``"oracle"`` or ``"estimate"``.
        reduction: ``"sample"`` or ``"batch"`` (see ``optimal_omega``).
        truth: the exact mixture (oracle error, and the oracle ω logged next to an estimate).
        labels: ``[B]`` class of each sample of the batch.
        seed: seeds the estimate's noise.
    """

    def __init__(self, adaptive: Any, error: str, reduction: str, truth: GMM, labels: torch.Tensor,
                 seed: int = 0, omega_min: float = 0.0, omega_max: float = 20.0) -> None:
        if error not in ("oracle", "estimate"):
            raise ValueError(f"error must be 'oracle' or 'estimate', got {error!r}")
        self.adaptive, self.error, self.reduction = adaptive, error, reduction
        self.truth, self.labels = truth, labels
        self.omega_min, self.omega_max = omega_min, omega_max
        self.generator = torch.Generator().manual_seed(seed)
        self.trace: list[dict[str, float]] = []

    def apply(self, model: Any) -> Any:
        m = model.clone()

        def post_cfg(args: dict[str, Any]) -> torch.Tensor:   # a plain function: clone() deep-copies hooks
            return self(args)

        m.set_model_sampler_post_cfg_function(post_cfg)
        return m

    def _true_eps(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1).float().cpu()
        return self.truth.eps(flat, sigma.float().cpu().expand(x.shape[0]), self.labels).reshape(x.shape)

    def __call__(self, args: dict[str, Any]) -> torch.Tensor:
        import comfy.samplers

        uncond_d, cond_d = args["uncond_denoised"], args["cond_denoised"]
        if uncond_d is None:
            return args["denoised"]
        x, sigma = args["input"], args["sigma"]
        s = sigma.float().reshape((-1,) + (1,) * (x.ndim - 1))
        eps_c, eps_u = (x - cond_d) / s, (x - uncond_d) / s
        delta = eps_c - eps_u
        oracle_err = self._true_eps(x, sigma).to(x) - eps_c
        oracle = self.adaptive.optimal_omega(delta, oracle_err, reduction=self.reduction,
                                             omega_min=self.omega_min, omega_max=self.omega_max)
        if self.error == "oracle":
            omega = oracle
        else:
            noise = torch.randn(x.shape, generator=self.generator).to(x)
            x_prime = cond_d + s * noise
            (cond_prime, _) = comfy.samplers.calc_cond_batch(args["model"], [args["cond"], None], x_prime, sigma,
                                                             args["model_options"])
            residual = (x_prime - cond_prime) / s - noise
            omega = self.adaptive.optimal_omega(delta, residual, reduction=self.reduction,
                                                omega_min=self.omega_min, omega_max=self.omega_max)
        self.trace.append({"sigma": float(sigma.max()), "omega": float(omega.mean()),
                           "omega_oracle": float(oracle.mean())})
        return self.adaptive.guide_with_omega(uncond_d, cond_d, omega)
