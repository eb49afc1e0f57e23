"""DiffIER's correction of the guided prediction at one sampling step (paper: Algorithm 1, Eq. 12).

Two well-defined readings of Algorithm 1 (the printed one is ambiguous; read literally it is
destructive, see ``paper`` with ``reduction="sum"``):

``paper`` — Algorithm 1 as printed, made well defined. In ε-space, per sample of N elements:

    ε ~ N(0, I) (fresh, seeded)                          # line 8
    L_k = mean((ε_cfg − ε)²)                              # line 9, PyTorch's default reduction
    ε_cfg ← ε_cfg − η ∇L = ε_cfg − 2η (ε_cfg − ε) / N     # line 10, gradient *descent*
    stop when |L_k − L_{k−1}| < threshold or k = max_iters

  With ``reduction="sum"`` the step is ``2η (ε_cfg − ε)``, i.e. ``ε_cfg ← 0.9 ε_cfg + 0.1 ε`` at
  η = 0.05: every iteration replaces a tenth of the prediction with noise.

``consistency`` (default) — the loss read as the diffusion *training* loss at the inference sample,
with the model in the loop. Per iteration, with x̂₀ the current clean estimate at (x_t, σ):

    ε ~ N(0, I) (fresh, seeded)
    x' = a(σ) x̂₀ + b(σ) ε                                # re-noise in the model's own convention
    x̂₀' = D(x', σ)                                        # one model evaluation (cond, or cond+uncond CFG)
    L = mean((ε'(x') − ε)²)                               # the training loss, Eq. 12
    x̂₀ ← x̂₀ + 2η (x̂₀' − x̂₀)                              # descent on L w.r.t. x̂₀, Jacobian dropped
                                                          # ≡ ε_cfg ← ε_cfg + 2η (ε' − ε)
    a sample stops once rms(Δx̂₀) / rms(x_t) < threshold, or at k = max_iters; the loop ends
    after the first iteration if every sample is already below the threshold there

Both modes work in the model's own affine noise convention ``x = a(σ) x₀ + b(σ) ε``, with the signal
scale a and the noise scale b given per sample (:mod:`diffier_core.conversions`). A sample whose noise
scale is 0 (no noise at that σ: ε says nothing there) passes through unchanged and is flagged in
:class:`StepInfo`.

Samples that converge stop changing while the others go on, so a sample's result never depends on
the rest of its batch. All arithmetic is in float32; the result is cast back to the input dtype.
Non-finite values are never spread or hidden: a sample whose input is non-finite passes through
unchanged, and a correction that turns a finite sample non-finite is discarded for that sample;
both are recorded in :class:`StepInfo` so the caller can warn, naming the step.

The correction needs no autograd: it runs under ``torch.no_grad()`` in every grad mode the caller
samples in (see :func:`diffier_step` for what a caller whose prediction requires grad gets back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .config import DiffIERSettings
from .conversions import denoised_delta_from_eps_delta
from .errors import DiffIERParameterError
from .metrics import per_sample_finite

__all__ = ["StepInfo", "resolve_steps", "NoiseFn", "EvaluateFn", "paper_correction", "consistency_correction",
           "diffier_step"]

#: ``noise(like)`` returns float32 N(0, I) of ``like``'s shape, seeded per sample.
NoiseFn = Callable[[torch.Tensor], torch.Tensor]
#: ``evaluate(x_prime)`` returns the model's clean estimate D(x', σ) at the step's σ (conditional or guided).
EvaluateFn = Callable[[torch.Tensor], torch.Tensor]

_TINY = 1e-12
#: rows of :meth:`StepInfo.pack`
_PACKED_FIELDS = 6


@dataclass
class StepInfo:
    """What one correction did; tensors stay on the device until :meth:`resolve` (one sync).

    Attributes:
        mode: the mode that ran.
        iterations: per-sample number of updates applied, shape ``[B]``.
        loss_initial: per-sample loss at the first iteration, shape ``[B]``.
        loss_final: per-sample loss at the last evaluated iteration, shape ``[B]``.
        model_evals: extra guided model evaluations spent (0 in ``paper`` mode).
        input_finite: per-sample: the incoming prediction was finite.
        kept: per-sample: the correction was kept (False where it was discarded as non-finite, or where the
            sample had no noise).
        noised: per-sample: the noise scale b(σ) was non-zero (False: no noise at that σ, passed through).
    """

    mode: str
    iterations: torch.Tensor
    loss_initial: torch.Tensor
    loss_final: torch.Tensor
    model_evals: int
    input_finite: torch.Tensor
    kept: torch.Tensor
    noised: torch.Tensor

    def pack(self) -> torch.Tensor:
        """The per-sample fields as one float32 tensor of shape ``[6, B]`` (stays on the device)."""
        return torch.stack([self.iterations.float(), self.loss_initial.float(), self.loss_final.float(),
                            self.input_finite.float(), self.kept.float(), self.noised.float()])

    def resolve(self) -> dict[str, Any]:
        """Python numbers (copies to the host once)."""
        return self._from_packed(self.pack().tolist())

    def _from_packed(self, packed: list[list[float]]) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "iterations": [int(v) for v in packed[0]],
            "loss_initial": packed[1],
            "loss_final": packed[2],
            "model_evals": self.model_evals,
            "input_finite": [bool(v) for v in packed[3]],
            "kept": [bool(v) for v in packed[4]],
            "noised": [bool(v) for v in packed[5]],
        }


def resolve_steps(sigmas: list[torch.Tensor], infos: list[StepInfo]) -> list[dict[str, Any]]:
    """Per-step records as Python numbers, with the step's σ, in a single device-to-host copy."""
    if not infos:
        return []
    rows = [torch.cat([sigma.detach().float().max().reshape(1).to(info.iterations.device), info.pack().flatten()])
            for sigma, info in zip(sigmas, infos, strict=True)]
    sizes = {r.numel() for r in rows}
    host = torch.stack(rows).tolist() if len(sizes) == 1 else [r.tolist() for r in rows]
    records = []
    for index, (row, info) in enumerate(zip(host, infos, strict=True)):
        batch = (len(row) - 1) // _PACKED_FIELDS
        record = info._from_packed([row[1 + i * batch:1 + (i + 1) * batch] for i in range(_PACKED_FIELDS)])
        record.update(step=index, sigma=row[0])
        records.append(record)
    return records


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``[B]`` tensor shaped to broadcast against ``like`` (``[B, 1, ...]``)."""
    return values.reshape(values.shape + (1,) * (like.ndim - 1))


def _mean_square(t: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of t² in float32, without a full-size temporary."""
    flat = t.reshape(t.shape[0], -1)
    norm: torch.Tensor = torch.linalg.vector_norm(flat, dim=1, dtype=torch.float32)
    return norm.square() / flat.shape[1]


def _guard_(corrected: torch.Tensor, x: torch.Tensor, denoised: torch.Tensor,
            noised: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the float32 ``corrected`` only where input and output are finite and the sample had noise; cast back.

    ``corrected`` is our own buffer and is overwritten in place; that (and ``out=``) is only legal
    without autograd, which is why every caller runs under ``torch.no_grad()``.
    """
    input_finite = per_sample_finite(denoised) & per_sample_finite(x)
    kept = input_finite & per_sample_finite(corrected) & noised
    torch.where(_per_sample(kept, corrected), corrected, denoised, out=corrected)
    return corrected.to(denoised.dtype), input_finite, kept


def _straight_through(out: torch.Tensor, denoised: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """``out``'s values with ``denoised``'s autograd graph: ∂out/∂denoised = I (the correction is a constant).

    This is the paper's own approximation (its update drops the network Jacobian), so a caller that
    differentiates through sampling keeps its gradient instead of finding it cut. Where a sample was
    not kept, ``out`` is ``denoised`` itself (so ``inf`` stays ``inf`` and is never turned into NaN).
    """
    keep = _per_sample(kept, out)
    return torch.where(keep, out + (denoised - denoised.detach()), denoised)


def _noised(noise_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: whether b ≠ 0, and b with 1 where it is 0 (a safe divisor; those samples pass through)."""
    noised = noise_scale != 0
    return noised, torch.where(noised, noise_scale, torch.ones_like(noise_scale))


def _eps_cfg(x: torch.Tensor, denoised: torch.Tensor, signal_scale: torch.Tensor,
             noise_scale: torch.Tensor) -> torch.Tensor:
    """ε = (x − a x̂₀) / b in one new float32 buffer (``eps_from_denoised``'s arithmetic, without its temporaries)."""
    a, b = _per_sample(signal_scale, denoised), _per_sample(noise_scale, denoised)
    return denoised.to(torch.float32, copy=True).mul_(a).neg_().add_(x).div_(b)


@torch.no_grad()
def paper_correction(x: torch.Tensor, denoised: torch.Tensor, signal_scale: torch.Tensor, noise_scale: torch.Tensor,
                     noise: NoiseFn, *, eta: float = 0.05, threshold: float = 1e-3,
                     max_iters: int = 4, reduction: str = "mean") -> tuple[torch.Tensor, StepInfo]:
    """Algorithm 1 lines 7–11 in ε-space, made well defined (see module docstring).

    Args:
        x: the noisy input x_t, shape ``[B, ...]``.
        denoised: the guided clean estimate x̂₀ that ComfyUI's CFG produced, same shape.
        signal_scale: per-sample a(σ) of ``x = a x₀ + b ε``, shape ``[B]``.
        noise_scale: per-sample b(σ), shape ``[B]``; a sample with b = 0 passes through.
        noise: seeded per-sample N(0, I) source.
        eta, threshold, max_iters: as in :class:`~diffier_core.config.DiffIERSettings`.
        reduction: ``"mean"`` (step 2η(ε_cfg − ε)/N) or ``"sum"`` (step 2η(ε_cfg − ε), destructive).

    Returns:
        The corrected clean estimate (input dtype) and a :class:`StepInfo`. No host sync happens here;
        the working set is three float32 latents (ε_cfg, the accumulated Δε, the residual). Runs under
        ``torch.no_grad()`` in every grad mode: the result never carries an autograd graph.
    """
    a = signal_scale.float()
    noised, b = _noised(noise_scale.float())
    eps0 = _eps_cfg(x, denoised, a, b)                                        # ε_cfg
    delta = torch.zeros_like(eps0)                                            # ε_cfg(k) − ε_cfg(0)
    batch, numel = x.shape[0], eps0[0].numel()
    to_sum = 1.0 if reduction == "mean" else float(numel)
    step_scale = 2.0 * eta / (numel if reduction == "mean" else 1)
    active = noised.clone()
    iterations = torch.zeros(batch, dtype=torch.int32, device=x.device)
    loss_initial = loss_prev = torch.zeros(batch, device=x.device)
    for k in range(max_iters):
        residual = noise(eps0).neg_().add_(eps0).add_(delta)                  # ε_cfg − ε
        loss = _mean_square(residual) * to_sum                                # L_k
        if k == 0:
            loss_initial = loss
        else:
            active = active & ((loss - loss_prev).abs() >= threshold)
        delta.addcmul_(residual, _per_sample(active.float() * -step_scale, residual))  # −η ∇L
        iterations = iterations + active.to(torch.int32)
        loss_prev = loss
        del residual
    corrected = denoised_delta_from_eps_delta(delta, a, b).add_(denoised)
    del delta, eps0
    out, input_finite, kept = _guard_(corrected, x, denoised, noised)
    return out, StepInfo("paper", iterations, loss_initial, loss_prev, 0, input_finite, kept, noised)


@torch.no_grad()
def consistency_correction(x: torch.Tensor, denoised: torch.Tensor, signal_scale: torch.Tensor,
                           noise_scale: torch.Tensor, noise: NoiseFn, evaluate: EvaluateFn, *, eta: float = 0.05,
                           threshold: float = 1e-3, max_iters: int = 4) -> tuple[torch.Tensor, StepInfo]:
    """The consistency reading of Algorithm 1 with the model in the loop (see module docstring).

    With x' = a x̂₀ + b ε and ε' = (x' − a x̂₀')/b, the residual is ε' − ε = a (x̂₀ − x̂₀')/b, so the
    loss (weight (a/b)²) and the update both need only ``x̂₀' − x̂₀``: the working set is x̂₀, x' and that
    difference (at most three float32 latents) next to the model's own output.

    Args:
        x: the noisy input x_t, shape ``[B, ...]``.
        denoised: the guided clean estimate x̂₀ that ComfyUI's CFG produced, same shape.
        signal_scale: per-sample a(σ) of ``x = a x₀ + b ε``, shape ``[B]``.
        noise_scale: per-sample b(σ), shape ``[B]``; a sample with b = 0 passes through.
        noise: seeded per-sample N(0, I) source.
        evaluate: ``evaluate(x')`` → the model's clean estimate at (x', σ), one batched model call (its
            result is read, never written).
        eta, threshold, max_iters: as in :class:`~diffier_core.config.DiffIERSettings`.

    Returns:
        The corrected clean estimate (input dtype) and a :class:`StepInfo`. Exactly one host sync,
        after the first iteration, decides whether further model evaluations are needed; later
        iterations mask converged samples on the device without syncing. Runs under ``torch.no_grad()``
        in every grad mode, ``evaluate`` included: the inner model calls never record a graph.
    """
    x0 = denoised.float().clone() if denoised.dtype == torch.float32 else denoised.float()
    flat_x = x.reshape(x.shape[0], -1)
    x_scale = (torch.linalg.vector_norm(flat_x, dim=1, dtype=torch.float32)
               / flat_x.shape[1] ** 0.5).clamp_min(_TINY)                     # rms(x_t)
    noised, b = _noised(noise_scale.float())
    a = _per_sample(signal_scale.float(), x0)
    s = _per_sample(b, x0)
    loss_weight = torch.where(noised, (a / s).square().flatten(), 0.0)        # (a/b)² per sample
    batch = x.shape[0]
    active = noised.clone()
    iterations = torch.zeros(batch, dtype=torch.int32, device=x.device)
    loss_initial = loss = torch.zeros(batch, device=x.device)
    evals = 0
    for k in range(max_iters):
        x_prime = noise(x0).mul_(s).addcmul_(a, x0)                           # x' = a x̂₀ + b ε
        d_prime = evaluate(x_prime.to(x.dtype))                               # x̂₀' = D(x', σ)
        del x_prime
        evals += 1
        # x̂₀' − x̂₀; in place only on our own float32 copy (the evaluator's tensor is never written)
        diff = d_prime - x0 if d_prime.dtype == torch.float32 else d_prime.float().sub_(x0)
        del d_prime
        loss = loss_weight * _mean_square(diff)                               # mean((ε' − ε)²)
        if k == 0:
            loss_initial = loss
        step_rms = active.float() * 2.0 * eta * _mean_square(diff).sqrt()    # rms(Δx̂₀)
        x0.addcmul_(diff, _per_sample(active.float() * 2.0 * eta, diff))      # x̂₀ += 2η (x̂₀' − x̂₀)
        del diff
        iterations = iterations + active.to(torch.int32)
        # NaN compares False: a sample whose step went non-finite stops (and is discarded below).
        active = active & (step_rms / x_scale >= threshold)
        if k == 0 and max_iters > 1 and not bool(active.any()):
            break  # the step's one host sync: the first update was already below the threshold
    out, input_finite, kept = _guard_(x0, x, denoised, noised)
    return out, StepInfo("consistency", iterations, loss_initial, loss, evals, input_finite, kept, noised)


def _per_sample_scale(name: str, value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a float32 ``[B]`` tensor on ``like``'s device (a scalar is broadcast), or a clear error."""
    value = torch.as_tensor(value).to(device=like.device, dtype=torch.float32)
    if value.ndim == 0 or value.numel() == 1:
        value = value.reshape(1).expand(like.shape[0])
    if value.shape != (like.shape[0],):
        raise DiffIERParameterError(name, tuple(value.shape), f"a scalar or a [B] tensor with B = {like.shape[0]}")
    return value


def diffier_step(x: torch.Tensor, denoised: torch.Tensor, signal_scale: torch.Tensor, noise_scale: torch.Tensor,
                 settings: DiffIERSettings, noise: NoiseFn, *,
                 evaluate: EvaluateFn | None = None) -> tuple[torch.Tensor, StepInfo]:
    """Apply DiffIER to one step's guided clean estimate, dispatching on ``settings.mode``.

    Args:
        x: the noisy input x_t, shape ``[B, ...]`` (any number of trailing dims: image, video, audio).
        denoised: the guided clean estimate, same shape as ``x``.
        signal_scale: a(σ) of the model's ``x = a x₀ + b ε``, per sample (shape ``[B]``) or a scalar tensor
            (:func:`diffier_core.conversions.convention_scales` gives it for the named conventions).
        noise_scale: b(σ), the same way; a sample with b = 0 passes through unchanged (``StepInfo.noised``).
        settings: validated settings; the step reads ``mode``, ``eta``, ``threshold``, ``max_iters``, ``reduction``.
        noise: seeded per-sample N(0, I) source, e.g. :class:`diffier_core.noise.PerSampleNoise`.
        evaluate: required in ``consistency`` mode: x' ↦ the model's clean estimate at the same σ.

    Returns:
        ``(corrected, info)``; with the correction disabled, ``corrected`` is ``denoised`` itself.

    Grad modes: the correction needs no autograd and runs under ``torch.no_grad()`` whatever mode the
    caller samples in (``inference_mode``, ``no_grad`` or ``enable_grad``), so no graph is built for the
    inner loop or its model evaluations. If grad is enabled and ``denoised`` requires grad, the result
    has the corrected values and ``denoised``'s graph, with the correction treated as a constant
    (∂corrected/∂denoised = I, the paper's dropped Jacobian).
    """
    if x.shape != denoised.shape:
        raise DiffIERParameterError("denoised", tuple(denoised.shape),
                                    f"a tensor of the input's shape {tuple(x.shape)}")
    if x.ndim < 2:
        raise DiffIERParameterError("x", tuple(x.shape), "a batched tensor with at least 2 dims [B, ...]")
    a = _per_sample_scale("signal_scale", signal_scale, x)
    b = _per_sample_scale("noise_scale", noise_scale, x)
    if not settings.enabled:
        batch = x.shape[0]
        zeros = torch.zeros(batch, device=x.device)
        flags = per_sample_finite(denoised)
        return denoised, StepInfo(settings.mode, zeros.int(), zeros, zeros, 0, flags, flags, b != 0)
    if settings.mode == "paper":
        out, info = paper_correction(x, denoised, a, b, noise, eta=settings.eta, threshold=settings.threshold,
                                     max_iters=settings.max_iters, reduction=settings.reduction)
    elif evaluate is None:
        raise DiffIERParameterError("evaluate", None, "a callable x' -> guided clean estimate in 'consistency' mode")
    else:
        out, info = consistency_correction(x, denoised, a, b, noise, evaluate, eta=settings.eta,
                                           threshold=settings.threshold, max_iters=settings.max_iters)
    if torch.is_grad_enabled() and denoised.requires_grad:
        out = _straight_through(out, denoised, info.kept)
    return out, info
