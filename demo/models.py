"""The pack's embedded demo models, built from ComfyUI's own classes (no download, no pickle).

A demo model is a ``.safetensors`` file in the demo's ``weights/`` folder whose metadata names its
``diffier_demo.kind`` and carries the network config as JSON. It loads the way ComfyUI loads any
diffusion model: a ``comfy.supported_models_base.BASE`` config subclass, ``get_model``,
``load_model_weights`` and a ``comfy.model_patcher.ModelPatcher``; sampling then goes through
ComfyUI's normal samplers. The ComfyUI names used here are touch points of the pack's adapter
(``nodes/comfy_adapter.py``, feature "demo"), checked when the pack loads.

Kinds:

``digits`` — a class-conditional pixel-space ε-prediction UNet (``openaimodel.UNetModel``) on 24×24
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
as in the paper's SR setup; the arithmetic is in ``demo/degrade.py``). Trained by ``training/train_sr.py``.

Every built model carries ``diffier_demo_kind`` and ``diffier_demo_config`` (read by the demo nodes).
New kinds register a builder in ``_BUILDERS``.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..diffier_core import DiffIERParameterError
from .degrade import image_to_unit_gray, sr_condition_image, sr_degrade, sr_upsample

log = logging.getLogger("DiffIER")

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
NULL_CLASS = 10
DIGITS_IMAGE_SIZE = 24   # training/sampling resolution
DIGITS_CROP = 2          # 28×28 digits are cropped to 24×24 (0.24% of the ink lies outside)
GROUPNORM_GROUPS = 8
UNET_PREFIX = "diffusion_model."

__all__ = ["WEIGHTS_DIR", "NULL_CLASS", "DemoModel", "list_models", "load_demo_model",
           "load_demo_file", "build_digits_model", "digits_context", "digits_conditioning", "digits_empty_latent",
           "digits_decode", "digits_config_class", "default_sr_config", "build_sr_model", "sr_state_dict",
           "sr_degrade", "sr_upsample", "sr_condition_image", "sr_conditioning", "sr_empty_latent", "sr_decode",
           "image_to_unit_gray"]


@dataclass
class DemoModel:
    """A loaded demo model: the ModelPatcher plus what the demo nodes need to drive it."""

    name: str
    kind: str
    patcher: Any  # comfy.model_patcher.ModelPatcher
    config: dict[str, Any]


def list_models() -> list[str]:
    """File names of the demo models shipped in ``demo/weights/`` (sorted)."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.glob("*.safetensors"))


# ----------------------------------------------------------------------------------------------
# what both kinds share


#: a ComfyUI CONDITIONING list: ``[[cross-attention context, {extra conditioning}], ...]``
Conditioning = list[list[Any]]


@functools.cache
def _pixel_config_class() -> Any:
    """ComfyUI's BASE model config for the demo's pixel-space, one-channel, float32 ε models (created lazily:
    importing comfy needs a booted ComfyUI)."""
    import comfy.latent_formats
    import comfy.ops
    import comfy.supported_models_base

    class DigitsLatentFormat(comfy.latent_formats.LatentFormat):
        """Pixel space: one channel, no scaling."""

        latent_channels = 1
        latent_dimensions = 2
        scale_factor = 1.0

    class DigitsOps(comfy.ops.disable_weight_init):
        """ComfyUI's default ops with GroupNorm capped at 8 groups (its UNet hard-codes 32, which would
        force ≥ 32 channels per level; these networks use 16)."""

        class GroupNorm(comfy.ops.disable_weight_init.GroupNorm):
            def __init__(self, num_groups: int, num_channels: int, *args: Any, **kwargs: Any) -> None:
                super().__init__(min(num_groups, GROUPNORM_GROUPS), num_channels, *args, **kwargs)

    class PixelConfig(comfy.supported_models_base.BASE):
        unet_config: dict[str, Any] = {}
        unet_extra_config: dict[str, Any] = {}
        latent_format = DigitsLatentFormat
        sampling_settings: dict[str, Any] = {}  # ComfyUI's discrete (SD) schedule, 1000 steps
        memory_usage_factor = 0.1
        supported_inference_dtypes = [torch.float32]
        custom_operations = DigitsOps

    return PixelConfig


def _init_weights(model: Any) -> None:
    """PyTorch's default init (ComfyUI's ``disable_weight_init`` ops leave weights uninitialised).

    Args:
        model: a demo ``BaseModel``.
    """
    bases: tuple[type[Any], ...] = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)
    for m in model.modules():
        for base in bases:
            if isinstance(m, base):
                base.reset_parameters(m)
                break
    # ComfyUI zero-initialises the UNet's output conv; keep that (a standard diffusion init).
    out = model.diffusion_model.out[-1]
    torch.nn.init.zeros_(out.weight)
    torch.nn.init.zeros_(out.bias)


def _build(config_cls: type, kind: str, config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None,
           dtype: torch.dtype, extra: dict[str, Any] | None = None) -> Any:
    """A ``BaseModel`` of ``config_cls`` with the UNet weights of ``state_dict`` (fresh init if None); not moved."""
    model_config = config_cls(config["unet"])
    if extra is not None:
        model_config.extra = extra
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({}, "", device=None)
    if state_dict is None:
        _init_weights(model)
    else:
        model.load_model_weights({k: v for k, v in state_dict.items() if k.startswith(UNET_PREFIX)}, UNET_PREFIX)
    model.diffier_demo_kind = kind
    model.diffier_demo_config = config
    return model


def _offloaded(model: Any) -> Any:
    import comfy.model_management as mm

    return model.to(mm.unet_offload_device())


def unet_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The UNet's weights as the safetensors file stores them (``diffusion_model.*``)."""
    return {f"{UNET_PREFIX}{k}": v.detach().contiguous() for k, v in model.diffusion_model.state_dict().items()}


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
def digits_config_class() -> tuple[Any, Any]:
    """``(config class, model class)``; created lazily because importing comfy needs a booted ComfyUI."""
    import comfy.model_base

    class DigitsModel(comfy.model_base.BaseModel):
        """ComfyUI's BaseModel plus the learned class-embedding table (read by the condition node)."""

        def __init__(self, model_config: Any, num_classes: int, tokens: int, dim: int, **kwargs: Any) -> None:
            super().__init__(model_config, **kwargs)
            self.class_embedding = torch.nn.Parameter(torch.zeros(num_classes + 1, tokens, dim))

    pixel_config: Any = _pixel_config_class()

    class DigitsConfig(pixel_config):
        extra = {"num_classes": 10, "tokens": 4, "dim": 32}

        def get_model(self, state_dict: dict[str, torch.Tensor], prefix: str = "", device: Any = None) -> Any:
            return DigitsModel(self, self.extra["num_classes"], self.extra["tokens"], self.extra["dim"],
                               model_type=self.model_type(state_dict, prefix), device=device)

    return DigitsConfig, DigitsModel


def build_digits_model(config: dict[str, Any] | None = None, state_dict: dict[str, torch.Tensor] | None = None,
                       *, dtype: torch.dtype = torch.float32) -> Any:
    """The digits ``BaseModel`` (ComfyUI's UNet inside), with ``state_dict`` loaded if given.

    Args:
        config: the network config (default: :func:`default_digits_config`).
        state_dict: ``diffusion_model.*`` (the UNet) and ``class_embedding``; without one the weights are
            freshly initialised for training (ComfyUI's ops skip PyTorch's init).
        dtype: the inference dtype.
    """
    config = config or default_digits_config()
    extra = {"num_classes": config["num_classes"], "tokens": config["context_tokens"],
             "dim": config["unet"]["context_dim"]}
    model = _build(digits_config_class()[0], "digits", config, state_dict, dtype, extra)
    with torch.no_grad():
        if state_dict is None:
            model.class_embedding.normal_(0.0, 1.0)
        else:
            model.class_embedding.copy_(state_dict["class_embedding"])
    return _offloaded(model)


def digits_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """What the safetensors file stores: ``diffusion_model.*`` and ``class_embedding``."""
    return {**unet_state_dict(model), "class_embedding": model.class_embedding.detach().contiguous()}


def digits_context(model: Any, labels: torch.Tensor) -> torch.Tensor:
    """Cross-attention context ``[B, tokens, dim]`` for class ids (``NULL_CLASS`` = unconditional)."""
    context: torch.Tensor = model.class_embedding[labels.long()]
    return context


def digits_conditioning(model: Any, label: int | list[int], batch: int = 1) -> Conditioning:
    """CONDITIONING for one class id (``NULL_CLASS`` for the negative/unconditional), or for one class id
    per sample when ``label`` is a list (then ``batch`` is ignored).

    Args:
        model: the digits ``BaseModel``.
        label: a class id or one per sample.
        batch: how many samples for a single class id.
    """
    if isinstance(label, (list, tuple)):
        labels = torch.tensor([int(v) for v in label], dtype=torch.long)
    else:
        labels = torch.full((batch,), int(label), dtype=torch.long)
    with torch.no_grad():
        context = digits_context(model, labels).detach().clone().float()
    return [[context, {}]]


def digits_empty_latent(batch: int) -> dict[str, torch.Tensor]:
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
        raise DiffIERParameterError("hr_size", hr_size, f"a multiple of scale ({scale})")
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
def sr_config_class() -> tuple[Any, Any]:
    """``(config class, model class)`` of the SR kind (lazily: importing comfy needs a booted ComfyUI)."""
    import comfy.model_base

    class SRModel(comfy.model_base.BaseModel):
        """ComfyUI's BaseModel with one concat input: the CONDITIONING's ``concat_latent_image``."""

        def __init__(self, model_config: Any, **kwargs: Any) -> None:
            super().__init__(model_config, **kwargs)
            self.concat_keys = ("concat_image",)

    pixel_config: Any = _pixel_config_class()

    class SRConfig(pixel_config):
        def get_model(self, state_dict: dict[str, torch.Tensor], prefix: str = "", device: Any = None) -> Any:
            return SRModel(self, model_type=self.model_type(state_dict, prefix), device=device)

    return SRConfig, SRModel


def build_sr_model(config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None,
                   *, dtype: torch.dtype = torch.float32) -> Any:
    """The SR ``BaseModel``.

    Args:
        config: the network/degradation config (:func:`default_sr_config`).
        state_dict: ``diffusion_model.*`` (fresh init for training if None).
        dtype: the inference dtype.
    """
    return _offloaded(_build(sr_config_class()[0], "sr", config, state_dict, dtype))


def sr_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """What the SR safetensors file stores: ``diffusion_model.*``."""
    return unet_state_dict(model)


def sr_conditioning(cond_image: torch.Tensor) -> tuple[Conditioning, Conditioning]:
    """``(positive, negative)`` CONDITIONING: positive carries the condition image as
    ``concat_latent_image``, negative carries zeros (the null condition the model was trained with).
    The cross-attention slot holds a placeholder (this UNet has no attention)."""
    placeholder = torch.zeros((1, 1, 1))
    cond = cond_image.detach().float().clone()
    return ([[placeholder, {"concat_latent_image": cond}]],
            [[placeholder.clone(), {"concat_latent_image": torch.zeros_like(cond)}]])


def sr_empty_latent(batch: int, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {"samples": torch.zeros((batch, 1, config["hr_size"], config["hr_size"]))}


def sr_decode(samples: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` in [-1, 1] → ComfyUI IMAGE ``[B, H, W, 3]`` in [0, 1] (grey)."""
    x = ((samples[:, 0].float() + 1.0) / 2.0).clamp(0.0, 1.0)
    return x.unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()


# ----------------------------------------------------------------------------------------------
# loading

_BUILDERS = {"digits": build_digits_model, "sr": build_sr_model}


def read_demo_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """``(state_dict, config, kind)`` of a demo safetensors file (``comfy.utils.load_torch_file``)."""
    import comfy.utils

    if path.suffix != ".safetensors":
        raise DiffIERParameterError("path", path.name, "a .safetensors demo model file")
    sd, metadata = comfy.utils.load_torch_file(str(path), safe_load=True, return_metadata=True)
    metadata = metadata or {}
    kind = metadata.get("diffier_demo.kind")
    if kind not in _BUILDERS:
        raise DiffIERParameterError(f"{path.name}'s metadata 'diffier_demo.kind'", kind, f"one of {sorted(_BUILDERS)}")
    return sd, json.loads(metadata["diffier_demo.config"]), kind


def load_demo_file(path: Path) -> DemoModel:
    """A demo model file (anywhere) as a :class:`DemoModel` with a ComfyUI ModelPatcher.

    Args:
        path: a ``.safetensors`` demo model (the shipped ones are in :data:`WEIGHTS_DIR`).
    """
    import comfy.model_management as mm
    import comfy.model_patcher

    path = Path(path)
    sd, config, kind = read_demo_file(path)
    log.info("DiffIER demo: loading %s (%s)", path.name, kind)
    model = _BUILDERS[kind](config, sd)
    model.train(False)  # inference mode for the nn.Module
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    return DemoModel(path.name, kind, patcher, config)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> DemoModel:
    return load_demo_file(Path(path))


def load_demo_model(name: str) -> DemoModel:
    """Load ``demo/weights/<name>`` (cached while the file is unchanged)."""
    if name not in list_models():
        raise DiffIERParameterError("model_name", name, f"one of the demo models in {WEIGHTS_DIR}: {list_models()}")
    path = WEIGHTS_DIR / name
    return _load_cached(str(path), path.stat().st_mtime)
