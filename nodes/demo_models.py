"""The pack's embedded demo models, built from ComfyUI's own classes (no download, no pickle).

A demo model is a ``.safetensors`` file in the pack's ``models/`` folder whose metadata names its
``diffier_demo.kind`` and carries the network config as JSON. It loads the way ComfyUI loads any
diffusion model: a ``comfy.supported_models_base.BASE`` config subclass, ``get_model``,
``load_model_weights`` and a ``comfy.model_patcher.ModelPatcher``; sampling then goes through
ComfyUI's normal samplers.

Kinds:

``digits`` — a class-conditional pixel-space ε-prediction UNet (``openaimodel.UNetModel``) on 32×32
one-channel MNIST digits in [-1, 1], ComfyUI's discrete (SD) schedule, class conditioning through
cross-attention on a learned table of 10 digit embeddings + 1 null embedding (trained with CFG
dropout to the null), stored in the same file as ``class_embedding`` (shape ``[11, tokens, dim]``).
Trained by ``training/train_digits.py``.

``sr`` — a conditional super-resolution ε-prediction UNet (same ComfyUI classes, no attention) on
one-channel images in [-1, 1]. The condition is the low-resolution image, bicubic-upsampled to the
high-resolution size and passed through ComfyUI's concat mechanism (``BaseModel.concat_keys =
("concat_image",)``, the CONDITIONING dict's ``concat_latent_image`` → ``c_concat``, exactly how
ComfyUI's inpaint / pix2pix models receive their images), so positive and negative carry different
concat images; the null condition is all zeros (CFG dropout to zeros in training). The metadata
config names the scale, the HR/LR sizes and the degradation (Gaussian blur σ, then area downsampling,
as in the paper's SR setup). Trained by ``training/train_sr.py``.

New kinds register a builder in ``_BUILDERS``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("DiffIER")

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
NULL_CLASS = 10
DIGITS_IMAGE_SIZE = 24   # training/sampling resolution
DIGITS_CROP = 2          # 28×28 digits are cropped to 24×24 (0.24% of the ink lies outside)
GROUPNORM_GROUPS = 8

__all__ = ["MODELS_DIR", "NULL_CLASS", "DemoModel", "list_models", "load_demo_model", "build_digits_model",
           "digits_context", "digits_conditioning", "digits_empty_latent", "digits_decode", "digits_config_class",
           "default_sr_config", "build_sr_model", "sr_state_dict", "sr_degrade", "sr_upsample", "sr_condition_image",
           "sr_conditioning", "sr_empty_latent", "sr_decode", "image_to_unit_gray"]


@dataclass
class DemoModel:
    """A loaded demo model: the ModelPatcher plus what the demo nodes need to drive it."""

    name: str
    kind: str
    patcher: Any  # comfy.model_patcher.ModelPatcher
    config: dict[str, Any]


def list_models() -> list[str]:
    """File names of the demo models shipped in ``models/`` (sorted)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.glob("*.safetensors"))


# ----------------------------------------------------------------------------------------------
# digits


def default_digits_config() -> dict[str, Any]:
    """The network/conditioning config of the digits model (also stored in its metadata)."""
    return {
        "unet": {
            "image_size": DIGITS_IMAGE_SIZE,
            "in_channels": 1,
            "out_channels": 1,
            "model_channels": 16,
            "num_res_blocks": [1, 1, 1],
            "channel_mult": [1, 2, 2],
            "transformer_depth": [0, 0, 1],  # cross-attention at 6×6 and in the middle block only (CPU cost)
            "transformer_depth_output": [0, 0, 0, 0, 1, 1],
            "transformer_depth_middle": 1,
            "context_dim": 32,
            "num_head_channels": 16,
            "num_heads": -1,
            "use_spatial_transformer": True,
            "use_linear_in_transformer": True,
            "legacy": False,
            "use_checkpoint": False,
            "adm_in_channels": None,
            "use_temporal_resblock": False,
            "use_temporal_attention": False,
        },
        "context_tokens": 4,
        "num_classes": 10,
        "prediction": "eps",
    }


@functools.cache
def digits_config_class():
    """``(config class, model class)``; created lazily because importing comfy needs a booted ComfyUI."""
    import comfy.latent_formats
    import comfy.model_base
    import comfy.ops
    import comfy.supported_models_base

    class DigitsLatentFormat(comfy.latent_formats.LatentFormat):
        """Pixel space: one channel, no scaling."""

        latent_channels = 1
        latent_dimensions = 2
        scale_factor = 1.0

    class DigitsModel(comfy.model_base.BaseModel):
        """ComfyUI's BaseModel plus the learned class-embedding table (read by the condition node)."""

        def __init__(self, model_config, num_classes: int, tokens: int, dim: int, **kwargs):
            super().__init__(model_config, **kwargs)
            self.class_embedding = torch.nn.Parameter(torch.zeros(num_classes + 1, tokens, dim))

    class DigitsOps(comfy.ops.disable_weight_init):
        """ComfyUI's default ops with GroupNorm capped at 8 groups (its UNet hard-codes 32, which would
        force ≥ 32 channels per level; this network uses 16)."""

        class GroupNorm(comfy.ops.disable_weight_init.GroupNorm):
            def __init__(self, num_groups, num_channels, *args, **kwargs):
                super().__init__(min(num_groups, GROUPNORM_GROUPS), num_channels, *args, **kwargs)

    class DigitsConfig(comfy.supported_models_base.BASE):
        unet_config: dict[str, Any] = {}
        unet_extra_config: dict[str, Any] = {}
        latent_format = DigitsLatentFormat
        sampling_settings: dict[str, Any] = {}  # ComfyUI's discrete (SD) schedule, 1000 steps
        memory_usage_factor = 0.1
        supported_inference_dtypes = [torch.float32]
        extra = {"num_classes": 10, "tokens": 4, "dim": 32}
        custom_operations = DigitsOps

        def get_model(self, state_dict, prefix="", device=None):
            return DigitsModel(self, self.extra["num_classes"], self.extra["tokens"], self.extra["dim"],
                               model_type=self.model_type(state_dict, prefix), device=device)

    return DigitsConfig, DigitsModel


def build_digits_model(config: dict[str, Any] | None = None, state_dict: dict[str, torch.Tensor] | None = None,
                       *, dtype: torch.dtype = torch.float32):
    """The digits ``BaseModel`` (ComfyUI's UNet inside), with ``state_dict`` loaded if given.

    ``state_dict`` keys: ``diffusion_model.*`` (the UNet) and ``class_embedding``. Without one the
    weights are freshly initialised for training (ComfyUI's ops skip PyTorch's init).
    """
    import comfy.model_management as mm

    config = config or default_digits_config()
    config_cls, _ = digits_config_class()
    model_config = config_cls(config["unet"])
    model_config.extra = {"num_classes": config["num_classes"], "tokens": config["context_tokens"],
                          "dim": config["unet"]["context_dim"]}
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({}, "", device=None)
    if state_dict is None:
        _init_weights(model)
    else:
        unet_sd = {k: v for k, v in state_dict.items() if k.startswith("diffusion_model.")}
        model.load_model_weights(unet_sd, "diffusion_model.")
        with torch.no_grad():
            model.class_embedding.copy_(state_dict["class_embedding"])
    return model.to(mm.unet_offload_device())


def _init_weights(model: torch.nn.Module) -> None:
    """PyTorch's default init (ComfyUI's ``disable_weight_init`` ops leave weights uninitialised)."""
    for m in model.modules():
        for base in (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm):
            if isinstance(m, base):
                base.reset_parameters(m)
                break
    # ComfyUI zero-initialises the UNet's output conv; keep that (a standard diffusion init).
    out = model.diffusion_model.out[-1]
    torch.nn.init.zeros_(out.weight)
    torch.nn.init.zeros_(out.bias)
    with torch.no_grad():
        model.class_embedding.normal_(0.0, 1.0)


def digits_state_dict(model) -> dict[str, torch.Tensor]:
    """What the safetensors file stores: ``diffusion_model.*`` and ``class_embedding``."""
    sd = {f"diffusion_model.{k}": v.detach().contiguous() for k, v in model.diffusion_model.state_dict().items()}
    sd["class_embedding"] = model.class_embedding.detach().contiguous()
    return sd


def digits_context(model, labels: torch.Tensor) -> torch.Tensor:
    """Cross-attention context ``[B, tokens, dim]`` for class ids (``NULL_CLASS`` = unconditional)."""
    return model.class_embedding[labels.long()]


def digits_conditioning(model, label: int | list[int], batch: int = 1) -> list:
    """CONDITIONING for one class id (``NULL_CLASS`` for the negative/unconditional), or for one class id
    per sample when ``label`` is a list (then ``batch`` is ignored)."""
    if isinstance(label, (list, tuple)):
        labels = torch.tensor([int(v) for v in label], dtype=torch.long)
    else:
        labels = torch.full((batch,), int(label), dtype=torch.long)
    with torch.no_grad():
        context = digits_context(model, labels).detach().clone().float()
    return [[context, {}]]


def digits_empty_latent(batch: int) -> dict:
    return {"samples": torch.zeros((batch, 1, DIGITS_IMAGE_SIZE, DIGITS_IMAGE_SIZE))}


def digits_to_unit(samples: torch.Tensor) -> torch.Tensor:
    """``[B, 1, 24, 24]`` in [-1, 1] → ``[B, 28, 28]`` in [0, 1] (the classifier's input; the 2-pixel
    border that training cropped away is restored as background)."""
    x = ((samples[:, 0].float() + 1.0) / 2.0).clamp(0.0, 1.0)
    return torch.nn.functional.pad(x, (DIGITS_CROP,) * 4)


def digits_decode(samples: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """LATENT samples → ComfyUI IMAGE ``[B, 28·scale, 28·scale, 3]`` in [0, 1] (nearest upscale)."""
    x = digits_to_unit(samples)
    if scale > 1:
        x = x.repeat_interleave(scale, dim=-1).repeat_interleave(scale, dim=-2)
    return x.unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()


# ----------------------------------------------------------------------------------------------
# super-resolution (kind "sr")


def default_sr_config(hr_size: int, scale: int, *, model_channels: int = 32, blur_sigma: float = 1.0,
                      dataset: str = "") -> dict[str, Any]:
    """Network/degradation config of an SR demo model (also stored in its metadata)."""
    if hr_size % scale:
        raise ValueError(f"hr_size {hr_size} is not a multiple of scale {scale}")
    return {
        "unet": {
            "image_size": hr_size,
            "in_channels": 2,          # noisy image + concat condition (the upsampled LR image)
            "out_channels": 1,
            "model_channels": model_channels,
            "num_res_blocks": [1, 1, 1],
            "channel_mult": [1, 2, 2],
            "transformer_depth": [0, 0, 0],
            "transformer_depth_output": [0, 0, 0, 0, 0, 0],
            "transformer_depth_middle": -1,
            "context_dim": None,
            "num_head_channels": 16,
            "num_heads": -1,
            "use_spatial_transformer": False,
            "legacy": False,
            "use_checkpoint": False,
            "adm_in_channels": None,
            "use_temporal_resblock": False,
            "use_temporal_attention": False,
        },
        "hr_size": hr_size,
        "lr_size": hr_size // scale,
        "scale": scale,
        "blur_sigma": blur_sigma,
        "channels": 1,
        "upsample": "bicubic",
        "dataset": dataset,
        "prediction": "eps",
    }


@functools.cache
def sr_config_class():
    """``(config class, model class)`` of the SR kind (lazily: importing comfy needs a booted ComfyUI)."""
    import comfy.model_base
    import comfy.supported_models_base

    digits_cfg, _ = digits_config_class()

    class SRModel(comfy.model_base.BaseModel):
        """ComfyUI's BaseModel with one concat input: the CONDITIONING's ``concat_latent_image``."""

        def __init__(self, model_config, **kwargs):
            super().__init__(model_config, **kwargs)
            self.concat_keys = ("concat_image",)

    class SRConfig(comfy.supported_models_base.BASE):
        unet_config: dict[str, Any] = {}
        unet_extra_config: dict[str, Any] = {}
        latent_format = digits_cfg.latent_format      # pixel space, one channel, no scaling
        sampling_settings: dict[str, Any] = {}        # ComfyUI's discrete (SD) schedule, 1000 steps
        memory_usage_factor = 0.1
        supported_inference_dtypes = [torch.float32]
        custom_operations = digits_cfg.custom_operations

        def get_model(self, state_dict, prefix="", device=None):
            return SRModel(self, model_type=self.model_type(state_dict, prefix), device=device)

    return SRConfig, SRModel


def build_sr_model(config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None,
                   *, dtype: torch.dtype = torch.float32):
    """The SR ``BaseModel``; ``state_dict`` holds ``diffusion_model.*`` (fresh init for training if None)."""
    import comfy.model_management as mm

    config_cls, _ = sr_config_class()
    model_config = config_cls(config["unet"])
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({}, "", device=None)
    if state_dict is None:
        for m in model.modules():
            for base in (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm):
                if isinstance(m, base):
                    base.reset_parameters(m)
                    break
        out = model.diffusion_model.out[-1]
        torch.nn.init.zeros_(out.weight)
        torch.nn.init.zeros_(out.bias)
    else:
        model.load_model_weights({k: v for k, v in state_dict.items() if k.startswith("diffusion_model.")},
                                 "diffusion_model.")
    return model.to(mm.unet_offload_device())


def sr_state_dict(model) -> dict[str, torch.Tensor]:
    return {f"diffusion_model.{k}": v.detach().contiguous() for k, v in model.diffusion_model.state_dict().items()}


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def sr_degrade(hr: torch.Tensor, scale: int, blur_sigma: float) -> torch.Tensor:
    """HR ``[B, C, H, W]`` → LR ``[B, C, H/scale, W/scale]``: separable Gaussian blur (reflect padding),
    then area (box) downsampling. The paper's SR degradation (blur then downsample)."""
    x = hr.float()
    if blur_sigma > 0:
        k = _gaussian_kernel(blur_sigma).to(x.device)
        r = k.numel() // 2
        c = x.shape[1]
        x = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
        x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        x = torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return torch.nn.functional.avg_pool2d(x, scale)


def sr_upsample(lr: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic upsampling of ``[B, C, h, w]`` to ``size × size`` (the model's condition; also the
    bicubic baseline of the benchmark)."""
    return torch.nn.functional.interpolate(lr.float(), size=(size, size), mode="bicubic", align_corners=False)


def image_to_unit_gray(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE ``[B, H, W, C]`` in [0, 1] → ``[B, 1, H, W]`` luminance in [0, 1] (ITU-R 601)."""
    x = image.float()
    if x.shape[-1] >= 3:
        x = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    else:
        x = x[..., 0]
    return x.unsqueeze(1).clamp(0.0, 1.0)


def sr_condition_image(lr_unit: torch.Tensor, config: dict[str, Any]) -> torch.Tensor:
    """LR ``[B, 1, h, w]`` in [0, 1] → the concat condition ``[B, 1, H, H]`` in [-1, 1] (bicubic to HR size).
    An input that is not ``lr_size`` is first resized (area) to it, so any image can be fed."""
    lr = lr_unit.float()
    if lr.shape[-2:] != (config["lr_size"], config["lr_size"]):
        lr = torch.nn.functional.interpolate(lr, size=(config["lr_size"],) * 2, mode="area")
    return sr_upsample(lr * 2.0 - 1.0, config["hr_size"])


def sr_conditioning(cond_image: torch.Tensor) -> tuple[list, list]:
    """``(positive, negative)`` CONDITIONING: positive carries the condition image as
    ``concat_latent_image``, negative carries zeros (the null condition the model was trained with).
    The cross-attention slot holds a placeholder (this UNet has no attention)."""
    placeholder = torch.zeros((1, 1, 1))
    cond = cond_image.detach().float().clone()
    return ([[placeholder, {"concat_latent_image": cond}]],
            [[placeholder.clone(), {"concat_latent_image": torch.zeros_like(cond)}]])


def sr_empty_latent(batch: int, config: dict[str, Any]) -> dict:
    return {"samples": torch.zeros((batch, 1, config["hr_size"], config["hr_size"]))}


def sr_decode(samples: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` in [-1, 1] → ComfyUI IMAGE ``[B, H, W, 3]`` in [0, 1] (grey)."""
    x = ((samples[:, 0].float() + 1.0) / 2.0).clamp(0.0, 1.0)
    return x.unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()


# ----------------------------------------------------------------------------------------------
# loading


def _load_digits(name: str, sd: dict, config: dict) -> DemoModel:
    import comfy.model_management as mm
    import comfy.model_patcher

    model = build_digits_model(config, sd)
    model.train(False)  # inference mode for the nn.Module
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    return DemoModel(name, "digits", patcher, config)


def _load_sr(name: str, sd: dict, config: dict) -> DemoModel:
    import comfy.model_management as mm
    import comfy.model_patcher

    model = build_sr_model(config, sd)
    model.train(False)  # inference mode for the nn.Module
    model.diffier_demo_config = config   # read by the SR demo nodes (shared by every clone of the patcher)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    return DemoModel(name, "sr", patcher, config)


_BUILDERS = {"digits": _load_digits, "sr": _load_sr}


def read_demo_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """``(state_dict, config, kind)`` of a demo safetensors file (``comfy.utils.load_torch_file``)."""
    import comfy.utils

    if path.suffix != ".safetensors":
        raise ValueError(f"demo models must be .safetensors files, got {path.name}")
    sd, metadata = comfy.utils.load_torch_file(str(path), safe_load=True, return_metadata=True)
    metadata = metadata or {}
    kind = metadata.get("diffier_demo.kind")
    if kind not in _BUILDERS:
        raise ValueError(f"{path.name}: unknown demo model kind {kind!r} (metadata 'diffier_demo.kind'); "
                         f"known: {sorted(_BUILDERS)}")
    return sd, json.loads(metadata["diffier_demo.config"]), kind


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> DemoModel:
    p = Path(path)
    sd, config, kind = read_demo_file(p)
    log.info("DiffIER demo: loading %s (%s)", p.name, kind)
    return _BUILDERS[kind](p.name, sd, config)


def load_demo_model(name: str) -> DemoModel:
    """Load ``models/<name>`` (cached while the file is unchanged)."""
    if name not in list_models():
        raise FileNotFoundError(f"no demo model {name!r} in {MODELS_DIR} (available: {list_models()})")
    path = MODELS_DIR / name
    return _load_cached(str(path), path.stat().st_mtime)
