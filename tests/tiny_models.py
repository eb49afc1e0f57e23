"""Tiny random-weight diffusion models built with ComfyUI's own classes.

Each model goes through the same steps ``comfy.sd.load_diffusion_model_state_dict`` takes for
a real checkpoint: a ``comfy.supported_models`` config (subclassed only to shrink the network),
``set_inference_dtype``, ``model_config.get_model(state_dict)``, ``load_model_weights`` and a
``comfy.model_patcher.ModelPatcher`` with ComfyUI's load/offload devices.  Weights are random
(seeded), including the layers real models zero-initialise, so predictions are non-trivial.

Requires the ComfyUI bootstrap done by ``conftest.py`` (ComfyUI on ``sys.path``, args parsed).

Usage::

    tm = make_model("eps", seed=0)
    cond = tm.make_cond(batch=1, seed=1)          # CONDITIONING: [[tensor, {...}]]
    latent = make_latent(tm, batch=1)             # {"samples": zeros((1,) + tm.latent_shape)}
    run_node("KSampler", model=tm.patcher, positive=cond, negative=tm.make_cond(1, 2), ...)

Kinds: ``eps``, ``v`` (SD1.x/SD2.x UNet), ``flow`` (SD3 MMDiT), ``video`` (Wan 2.1, 5-D latent),
``audio`` (Stable Audio 1 DiT, 3-D latent). ``tests/tiny_families.py`` builds every model family of
``comfy.supported_models`` the same way.

Tiny pipelines (``make_pipeline``): what a workflow's loader nodes return (MODEL, CLIP, VAE) for
``sdxl`` (SDXL UNet with its size/crop ADM conditioning, CLIP-L + CLIP-G, 4-channel VAE) and ``flux_dev``
(Flux transformer with the guidance embedding, CLIP-L + T5, 16-channel VAE). The text encoders are ComfyUI's own
``SDXLClipModel`` / ``flux_clip`` with their tokenizers in ``comfy.sd.CLIP``, made tiny through ComfyUI's
per-encoder config overrides (``model_options["<name>_model_config"]``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import torch

KINDS = ("eps", "v", "flow", "video", "audio")

# Tiny SD-style UNet: 2 levels, 1 res block each, cross-attention on the first level and middle.
_UNET = {
    "use_checkpoint": False,
    "image_size": 32,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 32,
    "num_res_blocks": [1, 1],
    "transformer_depth": [1, 0],
    "transformer_depth_output": [0, 0, 1, 1],
    "channel_mult": [1, 2],
    "transformer_depth_middle": 1,
    "context_dim": 32,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}
_CONTEXT_TOKENS = 7
_TE_WIDTH = 16  # hidden size of every tiny text encoder
_TINY_CLIP = {"hidden_size": _TE_WIDTH, "intermediate_size": 2 * _TE_WIDTH, "num_attention_heads": 2,
              "num_hidden_layers": 3}  # SDXL reads layer -2
_TINY_T5 = {"d_model": _TE_WIDTH, "d_ff": 2 * _TE_WIDTH, "d_kv": 8, "num_heads": 2, "num_layers": 2}
# Tiny AutoencoderKL: /8 like the real VAEs (4 levels), 32 channels (ComfyUI's GroupNorm has 32 groups)
_TINY_VAE = {"double_z": True, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32, "ch_mult": [1, 1, 1, 1],
             "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}

# Tiny SD3 MMDiT (hidden = 64 * depth, heads = depth).
SD3_DIT = {
    "in_channels": 16, "patch_size": 2, "depth": 2, "adm_in_channels": 32,
    "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 32, "out_features": 128}},
    "pos_embed_max_size": 8, "num_patches": 64, "pos_embed_scaling_factor": None,
}
# Tiny Wan 2.1 text-to-video DiT.
WAN21_DIT = {
    "image_model": "wan2.1", "model_type": "t2v", "patch_size": (1, 2, 2), "in_dim": 16, "out_dim": 16, "dim": 64,
    "ffn_dim": 128, "freq_dim": 64, "text_dim": 32, "num_heads": 2, "num_layers": 2, "eps": 1e-6,
}
# Tiny Stable Audio 1 DiT. Cross-attention needs kv heads (768 // head_dim) <= query heads (embed_dim // head_dim),
# else dit.Attention repeat_interleaves by 0 and silently ignores the prompt; 768 is fixed by StableAudio1's
# seconds embedders.
STABLE_AUDIO_DIT = {
    "audio_model": "dit1.0", "io_channels": 64, "embed_dim": 768, "depth": 1, "num_heads": 12, "cond_token_dim": 768,
    "global_cond_dim": 1536, "project_cond_tokens": False, "transformer_type": "continuous_transformer",
}


@dataclasses.dataclass
class TinyModel:
    kind: str
    patcher: object  # comfy.model_patcher.ModelPatcher
    latent_shape: tuple[int, ...]  # without the batch dimension
    prediction: str  # "eps" | "v" | "flow" (CONST) | "v_continuous"
    context_dim: int
    context_tokens: int
    pooled_dim: int | None = None
    seed: int = 0
    #: other conditioning keys, ``(generator, batch) -> dict`` (tests/tiny_families.py's families)
    extras: Callable[[torch.Generator, int], dict] | None = None

    @property
    def model(self):
        """The ``comfy.model_base.BaseModel`` subclass instance."""
        return self.patcher.model

    def make_cond(self, batch: int = 1, seed: int = 0) -> list:
        """CONDITIONING with a random context (distinct per ``seed``: a different "prompt")."""
        g = torch.Generator().manual_seed(10_000 + seed)
        context = torch.randn((batch, self.context_tokens, self.context_dim), generator=g)
        extra = {}
        if self.pooled_dim is not None:
            extra["pooled_output"] = torch.randn((batch, self.pooled_dim), generator=g)
        if self.extras is not None:
            extra.update(self.extras(g, batch))
        return [[context, extra]]


def make_latent(tm: TinyModel, batch: int = 1, **extra) -> dict:
    """LATENT dict of zeros of shape ``(batch,) + tm.latent_shape`` (extra keys are added)."""
    return {"samples": torch.zeros((batch,) + tuple(tm.latent_shape)), **extra}


def make_model(kind: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> TinyModel:
    """Build a fresh tiny model of ``kind`` (see ``KINDS``) with seeded random weights on the CPU.

    ``dtype`` is the weights' (inference) dtype, as ComfyUI's ``set_inference_dtype`` sets it.
    """
    try:
        builder = _BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown tiny model kind {kind!r}; expected one of {KINDS}") from None
    return builder(seed, dtype)


# --------------------------------------------------------------------------------------------
# construction helpers


def _random_state_dict(module: torch.nn.Module, seed: int) -> dict:
    """Random values for every floating tensor in ``module.state_dict()`` (params and buffers).

    Matrices/kernels ~ N(0, 1/fan_in); 1-D ``weight``/``scale``/``gamma`` (norms) ~ 1 + N(0, 0.02);
    everything else (biases, embeddings, modulation tables) ~ N(0, 0.02).
    """
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, ref in module.state_dict().items():
        if not torch.is_floating_point(ref):
            continue
        name = key.rsplit(".", 1)[-1]
        shape = tuple(ref.shape)
        if len(shape) >= 2 and name == "weight":
            fan_in = max(1, math.prod(shape[1:]))
            value = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        elif len(shape) == 1 and name in ("weight", "scale", "gamma"):
            value = 1.0 + 0.02 * torch.randn(shape, generator=g)
        else:
            value = 0.02 * torch.randn(shape, generator=g)
        sd[key] = value.to(ref.dtype)
    return sd


def stable_audio_checkpoint(seed: int) -> dict:
    """The checkpoint entries StableAudio.get_model() reads besides the DiT: its seconds_start/total embedders."""
    from comfy.ldm.audio.embedders import NumberConditioner

    sd = {}
    for i, name in enumerate(("seconds_start", "seconds_total")):
        emb_sd = _random_state_dict(NumberConditioner(768, min_val=0, max_val=512), seed + 7919 * (i + 1))
        sd.update({f"conditioner.conditioners.{name}.{k}": v for k, v in emb_sd.items()})
    return sd


def _finish(model_config, seed: int, checkpoint_sd: dict | None = None, dtype: torch.dtype = torch.float32):
    """comfy.sd.load_diffusion_model_state_dict's steps, for CPU/float32 and a known config.

    ``checkpoint_sd`` holds non-UNet checkpoint entries that ``get_model`` reads (Stable Audio).
    """
    import comfy.model_management as mm
    import comfy.model_patcher

    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model(checkpoint_sd or {}, "")
    model = model.to(mm.unet_offload_device())
    model.load_model_weights(_random_state_dict(model.diffusion_model, seed), "")
    model.eval()
    return comfy.model_patcher.ModelPatcher(
        model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device()
    )


@functools.cache
def _configs():
    """Config classes are created lazily: importing comfy needs the conftest bootstrap first."""
    import comfy.supported_models as sm
    from comfy.model_base import ModelType

    class TinySD15(sm.SD15):
        unet_config = dict(_UNET)
        unet_extra_config = {"num_heads": -1, "num_head_channels": 8}

    class TinySD2V(sm.SD20):
        unet_config = {**_UNET, "use_linear_in_transformer": True}
        unet_extra_config = {"num_heads": -1, "num_head_channels": 8, "attn_precision": torch.float32}

        def model_type(self, state_dict, prefix=""):
            return ModelType.V_PREDICTION

    class TinySD3(sm.SD3):
        unet_config = SD3_DIT
        sampling_settings = {"shift": 3.0}

    class TinyWan21(sm.WAN21_T2V):
        unet_config = WAN21_DIT

    class TinyStableAudio(sm.StableAudio):
        unet_config = STABLE_AUDIO_DIT

    class TinySDXL(sm.SDXL):
        unet_config = {
            **_UNET,
            "use_linear_in_transformer": True,
            "num_classes": "sequential",
            "adm_in_channels": _TE_WIDTH + 6 * 256,  # pooled CLIP-G + 6 size/crop embeddings (model_base.SDXL)
            "transformer_depth": [0, 1],  # SDXL-like: no attention on the first level
            "transformer_depth_output": [0, 0, 1, 1],
            "context_dim": 2 * _TE_WIDTH,  # CLIP-L and CLIP-G hidden states side by side
        }
        unet_extra_config = {"num_heads": -1, "num_head_channels": 8}

    class TinyFluxDev(sm.Flux):
        unet_config = {
            "image_model": "flux", "in_channels": 16, "out_channels": 16, "patch_size": 2,
            "vec_in_dim": _TE_WIDTH, "context_in_dim": _TE_WIDTH, "hidden_size": 32, "mlp_ratio": 2.0,
            "num_heads": 2, "depth": 1, "depth_single_blocks": 1, "axes_dim": [4, 6, 6],  # sum = hidden / heads
            "theta": 10000, "qkv_bias": True, "guidance_embed": True,
        }

    return {"eps": TinySD15, "v": TinySD2V, "flow": TinySD3, "video": TinyWan21, "audio": TinyStableAudio,
            "sdxl": TinySDXL, "flux_dev": TinyFluxDev}


def _build_unet(kind: str, seed: int, dtype: torch.dtype) -> TinyModel:
    cfg_cls = _configs()[kind]
    patcher = _finish(cfg_cls(cfg_cls.unet_config), seed, dtype=dtype)
    return TinyModel(kind, patcher, (4, 8, 8), kind, context_dim=32, context_tokens=_CONTEXT_TOKENS,
                     seed=seed)


def _build_flow(seed: int, dtype: torch.dtype) -> TinyModel:
    cfg_cls = _configs()["flow"]
    patcher = _finish(cfg_cls(cfg_cls.unet_config), seed, dtype=dtype)
    return TinyModel("flow", patcher, (16, 8, 8), "flow", context_dim=32, context_tokens=_CONTEXT_TOKENS,
                     pooled_dim=32, seed=seed)


def _build_video(seed: int, dtype: torch.dtype) -> TinyModel:
    cfg_cls = _configs()["video"]
    patcher = _finish(cfg_cls(cfg_cls.unet_config), seed, dtype=dtype)
    return TinyModel("video", patcher, (16, 3, 8, 8), "flow", context_dim=32, context_tokens=_CONTEXT_TOKENS,
                     seed=seed)


def _build_audio(seed: int, dtype: torch.dtype) -> TinyModel:
    cfg_cls = _configs()["audio"]
    patcher = _finish(cfg_cls(cfg_cls.unet_config), seed, checkpoint_sd=stable_audio_checkpoint(seed), dtype=dtype)
    return TinyModel("audio", patcher, (64, 32), "v_continuous", context_dim=768,
                     context_tokens=_CONTEXT_TOKENS, seed=seed)


@dataclasses.dataclass
class TinyPipeline:
    """What a workflow's loaders return: ``model`` (MODEL), ``clip`` (CLIP), ``vae`` (VAE)."""

    family: str
    model: object  # comfy.model_patcher.ModelPatcher
    clip: object  # comfy.sd.CLIP
    vae: object  # comfy.sd.VAE


PIPELINES = ("sdxl", "flux_dev")


def make_pipeline(family: str, seed: int = 0) -> TinyPipeline:
    """A tiny ``sdxl`` or ``flux_dev`` pipeline (see the module docstring) with seeded random weights, on the CPU."""
    if family not in PIPELINES:
        raise ValueError(f"unknown tiny pipeline {family!r}; expected one of {PIPELINES}")
    cfg_cls = _configs()[family]
    model = _finish(cfg_cls(cfg_cls.unet_config), seed)
    clip = _tiny_sdxl_clip(cfg_cls, seed + 1) if family == "sdxl" else _tiny_flux_clip(seed + 1)
    vae = _tiny_vae(z_channels=4 if family == "sdxl" else 16, seed=seed + 2)
    return TinyPipeline(family, model, clip, vae)


def _on_meta(module_factory) -> torch.nn.Module:
    """The module ``module_factory()`` builds, on the ``meta`` device (names and shapes only)."""
    with torch.device("meta"):
        return module_factory()


def _tiny_sdxl_clip(cfg_cls, seed: int):
    """SDXL's CLIP-L + CLIP-G (``SDXLClipModel``, ``SDXLTokenizer``) made tiny, loaded as a checkpoint's CLIP is."""
    import comfy.sd

    options = {"clip_l_model_config": dict(_TINY_CLIP), "clip_g_model_config": dict(_TINY_CLIP),
               "dtype": torch.float32}
    clip = comfy.sd.CLIP(cfg_cls(cfg_cls.unet_config).clip_target(), model_options=options)
    clip.load_sd(_random_state_dict(clip.cond_stage_model, seed), full_model=True)
    return clip


def _tiny_flux_clip(seed: int):
    """Flux's CLIP-L + T5 (``flux_clip``, ``FluxTokenizer``) made tiny and loaded file by file, as DualCLIPLoader
    (type flux) loads its two files."""
    import comfy.sd
    import comfy.supported_models_base
    import comfy.text_encoders.flux

    options = {"clip_l_model_config": dict(_TINY_CLIP), "t5xxl_model_config": dict(_TINY_T5), "dtype": torch.float32}
    target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.flux.FluxTokenizer,
                                                    comfy.text_encoders.flux.flux_clip())
    clip = comfy.sd.CLIP(target, model_options=options)
    for part, file_seed in ((clip.cond_stage_model.t5xxl, seed), (clip.cond_stage_model.clip_l, seed + 1)):
        missing, _ = clip.load_sd(_random_state_dict(part.transformer, file_seed))
        if missing:
            raise RuntimeError(f"tiny Flux text encoder: missing {missing}")
    return clip


def _tiny_vae(z_channels: int, seed: int):
    """ComfyUI's VAE around a tiny ``AutoencoderKL`` with ``z_channels`` latent channels."""
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    params = {"ddconfig": dict(_TINY_VAE, z_channels=z_channels), "embed_dim": z_channels}
    shapes = _on_meta(lambda: AutoencoderKL(**params))
    return comfy.sd.VAE(sd=_random_state_dict(shapes, seed), config={"params": params})


_BUILDERS: dict[str, Callable[[int, torch.dtype], TinyModel]] = {
    "eps": functools.partial(_build_unet, "eps"),
    "v": functools.partial(_build_unet, "v"),
    "flow": _build_flow,
    "video": _build_video,
    "audio": _build_audio,
}
