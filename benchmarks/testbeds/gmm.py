"""A class-conditional Gaussian mixture with analytic noisy scores, and imperfect "trained" copies of it.

Data: ``K`` classes, ``M`` diagonal-covariance Gaussian components per class, ``D`` dimensions.
Everything below is exact for the variance-exploding noising ``x_σ = x₀ + σ n`` that ComfyUI's EPS
models use:

* ``q_σ(x | c) = Σ_k w_ck N(x; μ_k, diag(v_k + σ²))`` with class weights ``w_ck`` (zero off class c);
* the ideal denoiser ``D*(x, σ, c) = E[x₀ | x_σ = x, c] = Σ_k r_k(x) (μ_k + v_k/(v_k+σ²) (x − μ_k))``
  with ``r_k`` the posterior responsibilities; ``ε* = (x − D*)/σ`` and ``∇log q_σ = −ε*/σ``.

A *weighting* is one row of mixture weights over all components, so the conditional, the unconditional
and any blend ("partly unconditional") are the same code: :meth:`GMM.denoise` takes one weight row per
sample. An imperfect model is another :class:`GMM` (``GMM.blurred``): variances inflated ("blurred":
the model learnt a smoother density), means shrunk toward their class mean, and a conditional branch
that leaks a fraction ``leak`` of the unconditional mixture.
"""

from __future__ import annotations

import dataclasses
import math

import torch

__all__ = ["GMM", "make_gmm"]

_LOG2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass
class GMM:
    """A diagonal Gaussian mixture with a class label per component.

    Attributes:
        means: ``[C, D]`` component means.
        variances: ``[C, D]`` component variances (diagonal covariances), all > 0.
        comp_class: ``[C]`` class index of each component (``0..K-1``).
        class_weights: ``[K+1, C]`` mixture weights, each row sums to 1: row ``c < K`` is the
            conditional q(x|c) as this density represents it, row ``K`` the unconditional q(x).
    """

    means: torch.Tensor
    variances: torch.Tensor
    comp_class: torch.Tensor
    class_weights: torch.Tensor

    @property
    def num_classes(self) -> int:
        return self.class_weights.shape[0] - 1

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def uncond_row(self) -> int:
        """Index of the unconditional weighting in :attr:`class_weights`."""
        return self.num_classes

    def to(self, device) -> GMM:
        return GMM(*(t.to(device) for t in (self.means, self.variances, self.comp_class, self.class_weights)))

    # -- sampling ----------------------------------------------------------------------------------
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact samples ``x₀ ~ q(x | labels[i])`` (a label equal to ``K`` samples the marginal), ``[N, D]``."""
        weights = self.class_weights[labels]
        comp = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        noise = torch.randn((labels.shape[0], self.dim), generator=generator)
        return self.means[comp] + self.variances[comp].sqrt() * noise

    # -- densities and denoisers -------------------------------------------------------------------
    def _component_loglik(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``log N(x; μ_k, v_k + σ²)`` ``[N, C]`` and the per-component total variances ``[N, C, D]``."""
        total = self.variances.unsqueeze(0) + sigma.reshape(-1, 1, 1).square()          # [N, C, D]
        diff = x.unsqueeze(1) - self.means.unsqueeze(0)                                   # [N, C, D]
        loglik = -0.5 * ((diff.square() / total).sum(-1) + total.log().sum(-1) + self.dim * _LOG2PI)
        return loglik, total

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float, rows: torch.Tensor) -> torch.Tensor:
        """``log q_σ(x | row)`` per sample, ``[N]``; ``rows`` indexes :attr:`class_weights`."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])
        loglik, _ = self._component_loglik(x, sigma)
        return torch.logsumexp(loglik + self.class_weights[rows].clamp_min(1e-30).log(), dim=1)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Exact posterior mean ``E[x₀ | x_σ = x]`` under the mixture with per-sample weights.

        Args:
            x: ``[N, D]`` noisy points.
            sigma: ``[N]`` noise levels (> 0, or 0: then the result is ``x`` itself).
            weights: ``[N, C]`` mixture weights (rows of :attr:`class_weights`, or blends of them).
        """
        loglik, total = self._component_loglik(x, sigma)
        resp = torch.softmax(loglik + weights.clamp_min(1e-30).log(), dim=1)              # [N, C]
        shrink = self.variances.unsqueeze(0) / total                                      # [N, C, D]
        comp_mean = self.means.unsqueeze(0) + shrink * (x.unsqueeze(1) - self.means.unsqueeze(0))
        return torch.einsum("nc,ncd->nd", resp, comp_mean)

    def denoise_rows(self, x: torch.Tensor, sigma: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """:meth:`denoise` with weights given as row indices of :attr:`class_weights`."""
        return self.denoise(x, sigma, self.class_weights[rows])

    def eps(self, x: torch.Tensor, sigma: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``ε*(x, σ, row) = (x − D*)/σ``, ``[N, D]``."""
        return (x - self.denoise_rows(x, sigma, rows)) / sigma.reshape(-1, 1)

    def score(self, x: torch.Tensor, sigma: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``∇ₓ log q_σ(x | row) = −ε*/σ = (D* − x)/σ²``, ``[N, D]``."""
        return (self.denoise_rows(x, sigma, rows) - x) / sigma.reshape(-1, 1).square()

    def class_log_posterior(self, x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """``log p(c | x) = log q_σ(x | c) p(c) − log Σ_c' q_σ(x | c') p(c')`` under this mixture, ``[N, K]``."""
        sig = torch.full((x.shape[0],), float(sigma), dtype=x.dtype)
        loglik, _ = self._component_loglik(x, sig)                                         # [N, C]
        cw = self.class_weights[: self.num_classes]                                        # [K, C]
        prior = self.class_weights[self.uncond_row]
        # p(c) = Σ_k over class c of the unconditional weights
        class_prior = torch.stack([prior[self.comp_class == c].sum() for c in range(self.num_classes)])
        # exact zeros (not a floor such as 1e-30, which would cap the log-odds at about 69)
        log_cw = torch.where(cw > 0, cw.log(), torch.full_like(cw, -math.inf)).to(loglik.dtype)
        joint = torch.logsumexp(loglik.unsqueeze(1) + log_cw.unsqueeze(0), dim=2)
        joint = joint + class_prior.log().to(loglik.dtype)
        return joint - torch.logsumexp(joint, dim=1, keepdim=True)

    def classify(self, x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """Bayes classifier ``argmax_c q_σ(x | c) p(c)`` under this mixture (uniform or given class prior)."""
        return self.class_log_posterior(x, sigma).argmax(dim=1)

    # -- imperfect copies --------------------------------------------------------------------------
    def blurred(self, *, var_scale: float = 1.0, var_add: float = 0.0, mean_shrink: float = 0.0,
                leak: float = 0.0) -> GMM:
        """An imperfect model of this mixture.

        Args:
            var_scale, var_add: variances become ``var_scale · v + var_add`` (over-smoothed density).
            mean_shrink: component means move this fraction toward their class mean (blurred modes).
            leak: the conditional rows become ``(1 − leak) q(x|c) + leak q(x)`` (a conditional branch
                that is partly unconditional, as with weak conditioning or label dropout leakage).
        """
        means = self.means.clone()
        for c in range(self.num_classes):
            sel = self.comp_class == c
            w = self.class_weights[c, sel].unsqueeze(1)
            class_mean = (w * self.means[sel]).sum(0) / w.sum()
            means[sel] = self.means[sel] + mean_shrink * (class_mean - self.means[sel])
        weights = self.class_weights.clone()
        uncond = weights[self.uncond_row]
        weights[: self.num_classes] = (1.0 - leak) * weights[: self.num_classes] + leak * uncond
        return GMM(means, self.variances * var_scale + var_add, self.comp_class.clone(), weights)


def make_gmm(*, num_classes: int = 4, comps_per_class: int = 3, dim: int = 256, class_scale: float = 0.6,
             comp_scale: float = 0.45, base_var: float = 0.02, principal_var: float = 0.5,
             principal_dims: int = 24, seed: int = 0) -> GMM:
    """The testbed's true data distribution (seeded).

    Class centres ~ N(0, class_scale²), component means = centre + N(0, comp_scale²); each component
    has variance ``base_var`` everywhere plus ``principal_var`` along its own ``principal_dims``
    random coordinates (a thin, anisotropic "manifold" per component). Uniform class prior and
    uniform component weights within a class.
    """
    g = torch.Generator().manual_seed(seed)
    centres = class_scale * torch.randn((num_classes, dim), generator=g)
    comp_class = torch.arange(num_classes).repeat_interleave(comps_per_class)
    means = centres[comp_class] + comp_scale * torch.randn((comp_class.shape[0], dim), generator=g)
    variances = torch.full((comp_class.shape[0], dim), base_var)
    for k in range(comp_class.shape[0]):
        idx = torch.randperm(dim, generator=g)[:principal_dims]
        variances[k, idx] += principal_var
    total = comp_class.shape[0]
    weights = torch.zeros((num_classes + 1, total))
    for c in range(num_classes):
        weights[c, comp_class == c] = 1.0 / comps_per_class
    weights[num_classes] = 1.0 / total
    return GMM(means, variances, comp_class, weights)
