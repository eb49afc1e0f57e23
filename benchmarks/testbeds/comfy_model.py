"""A GMM denoiser as a real ComfyUI EPS model (``comfy.model_base.BaseModel`` in a ``ModelPatcher``).

The ``diffusion_model`` computes the ε prediction of a (possibly imperfect) :class:`~.gmm.GMM`
from what ComfyUI hands it: the scaled input ``c_in(σ)·x`` and the timestep ``t(σ)``. It inverts
ComfyUI's ``calculate_input`` and ``timestep`` (continuous EDM sampling: ``t = ¼ log σ``, σ_data = 1)
to recover ``x`` and σ, so ComfyUI's real samplers, schedulers, CFG and patch nodes act on it.

Classes go in through CONDITIONING: the context is ``[B, 1, K]`` one-hot; an all-zero context is the
unconditional (negative) prompt. Latents are ``[B, C, H, W]`` with ``C·H·W = D``.
"""

from __future__ import annotations

import math

import torch

from .gmm import GMM

__all__ = ["GMMDiffusionModel", "make_patcher", "positive", "negative", "latent"]


class GMMDiffusionModel(torch.nn.Module):
    """ε-prediction network of a GMM. ``latent_shape`` is ``(C, H, W)`` with ``C·H·W = gmm.dim``."""

    def __init__(self, gmm: GMM, latent_shape: tuple[int, int, int]) -> None:
        super().__init__()
        if math.prod(latent_shape) != gmm.dim:
            raise ValueError(f"latent shape {latent_shape} does not hold {gmm.dim} dims")
        self.gmm = gmm
        self.latent_shape = tuple(latent_shape)
        self.dtype = torch.float32
        self.register_buffer("_anchor", torch.zeros(1))  # ComfyUI sizes/moves modules by their tensors
        self.calls = 0

    def rows(self, context: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Class-weight row per sample: the one-hot's class, or the unconditional row for zeros/None."""
        if context is None:
            return torch.full((batch,), self.gmm.uncond_row, dtype=torch.long)
        ctx = context.reshape(context.shape[0], -1).float()
        rows = ctx.argmax(dim=1)
        rows = torch.where(ctx.abs().sum(dim=1) > 0, rows, torch.full_like(rows, self.gmm.uncond_row))
        if rows.shape[0] != batch:
            rows = rows.repeat(math.ceil(batch / rows.shape[0]))[:batch]
        return rows.cpu()

    def forward(self, xc, timesteps, context=None, control=None, transformer_options=None, **kwargs):
        self.calls += 1
        batch = xc.shape[0]
        sigmas = (transformer_options or {}).get("sigmas")
        if sigmas is not None and sigmas.numel() == batch:
            sigma = sigmas.float().reshape(batch)
        else:
            sigma = (4.0 * timesteps.float().reshape(-1)).exp().expand(batch)
        x = xc.float() * (sigma.reshape(-1, 1, 1, 1).square() + 1.0).sqrt()          # invert c_in(σ)
        flat = x.reshape(batch, -1).cpu()
        s = sigma.cpu()
        denoised = self.gmm.denoise_rows(flat, s, self.rows(context, batch))
        eps = (flat - denoised) / s.reshape(-1, 1)
        return eps.reshape(xc.shape).to(xc.device)


def make_patcher(gmm: GMM, latent_shape: tuple[int, int, int] = (4, 8, 8), *, sigma_min: float = 0.002,
                 sigma_max: float = 80.0):
    """A ``ModelPatcher`` around a ``BaseModel`` (EPS, continuous-σ EDM sampling) whose network is ``gmm``."""
    import comfy.latent_formats
    import comfy.model_base
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.model_sampling
    import comfy.supported_models_base

    class GMMConfig(comfy.supported_models_base.BASE):
        unet_config = {"disable_unet_model_creation": True}
        unet_extra_config = {}
        sampling_settings = {"sigma_min": sigma_min, "sigma_max": sigma_max, "sigma_data": 1.0}
        latent_format = comfy.latent_formats.LatentFormat   # scale 1, 4 channels, 2-D
        memory_usage_factor = 0.01

    class ModelSampling(comfy.model_sampling.ModelSamplingContinuousEDM, comfy.model_sampling.EPS):
        pass

    config = GMMConfig(GMMConfig.unet_config)
    config.latent_format.latent_channels = latent_shape[0]
    config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.EPS)
    model.model_sampling = ModelSampling(config)
    model.diffusion_model = GMMDiffusionModel(gmm, latent_shape)
    model = model.to(mm.unet_offload_device())
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def positive(labels: torch.Tensor, num_classes: int) -> list:
    """CONDITIONING selecting ``labels[i]`` for sample ``i``: a ``[B, 1, K]`` one-hot context."""
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).float().unsqueeze(1)
    return [[onehot, {}]]


def negative(batch: int, num_classes: int) -> list:
    """The unconditional CONDITIONING: an all-zero context."""
    return [[torch.zeros((batch, 1, num_classes)), {}]]


def latent(batch: int, latent_shape: tuple[int, int, int] = (4, 8, 8)) -> dict:
    """An empty LATENT of ``batch`` samples."""
    return {"samples": torch.zeros((batch,) + tuple(latent_shape))}
