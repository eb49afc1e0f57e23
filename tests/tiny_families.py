"""Tiny random-weight models of every model family ComfyUI 0.3.75 lists (all of ``comfy.supported_models.models``).

The family matrix of ``tests/tiny_models.py``: each family is one class of ``comfy.supported_models.models``
(the family's name is that class's name), subclassed only to shrink the network, and built with the same
steps as ``tiny_models`` (``set_inference_dtype``, ``get_model``, ``load_model_weights`` with seeded random
weights including the layers real models zero-initialise, a real ``ModelPatcher``). What differs between
families is which ``comfy.model_base`` class wraps the network, its ``model_sampling`` (noise convention,
σ schedule) and which conditioning keys its ``extra_conds`` reads; those are the real ones. The
conditioning carries the keys the family's own text encoder or conditioning node puts there (pooled output,
size conditioning, attention masks, second text streams, concat latents, ...), with random values of the
family's shapes. Flux-style distilled guidance is set on the positive prompt by the real ``FluxGuidance``
node in the tests (``Family.positive_node``).

Usage::

    fam = FAMILIES["SDXL"]
    tm = make_family("SDXL", seed=0)          # a tiny_models.TinyModel
    pos, neg = tm.make_cond(1, seed=1), tm.make_cond(1, seed=0)
    latent = make_latent(tm, fam.latent_rows)

Requires the ComfyUI bootstrap done by ``conftest.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from tiny_models import (
    _UNET,
    SD3_DIT,
    STABLE_AUDIO_DIT,
    WAN21_DIT,
    TinyModel,
    _finish,
    _random_state_dict,
    stable_audio_checkpoint,
)

#: Extras builder: ``(generator, batch) -> dict`` of conditioning keys besides the context tensor.
Extras = Callable[[torch.Generator, int], dict]


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family: how to build its tiny network and its conditioning.

    Args:
        name: the ``comfy.supported_models`` class name (the test id).
        unet_config: the tiny network's config (the real class's ``unet_extra_config`` is applied on top,
            unless ``unet_extra_config`` replaces it).
        latent_shape: one latent sample, without the batch dimension.
        context: ``(tokens, dim)`` of the cross-attention context, the CONDITIONING tensor.
        extras: the other conditioning keys, see ``Extras`` (None: none).
        unet_extra_config: replaces the real class's ``unet_extra_config`` when the latter fixes full-size
            values (head counts, class counts); None keeps it.
        attrs: other class attributes the tiny subclass overrides (``noise_aug_config``, ``model_type``).
        checkpoint_sd: ``seed -> dict`` of non-network checkpoint entries ``get_model`` reads.
        latent_rows: latent rows of one sample: the number of frames for families whose batch is the video's
            frames (SVD: every row of the batch is a frame, temporal layers mix them).
        positive_node: ``(node id, inputs)`` of a conditioning node the tests apply to the positive prompt
            (``FluxGuidance`` for the families with a guidance embedding).
        latent_extra: other LATENT keys (an image-to-video family's ``noise_mask``).
        diffier: DiffIER inputs the family needs (over the tests' defaults).
        cfg_1: why the family cannot sample at cfg = 1 in ComfyUI at all (None: it can).
    """

    name: str
    unet_config: dict
    latent_shape: tuple[int, ...]
    context: tuple[int, int]
    extras: Extras | None = None
    unet_extra_config: dict | None = None
    attrs: dict = dataclasses.field(default_factory=dict)
    checkpoint_sd: Callable[[int], dict] | None = None
    latent_rows: int = 1
    positive_node: tuple[str, dict] | None = None
    latent_extra: Callable[[], dict] | None = None
    diffier: dict = dataclasses.field(default_factory=dict)
    cfg_1: str | None = None

    @property
    def batch_is_frames(self) -> bool:
        """The batch dimension holds the frames of one video: batch samples are not independent."""
        return self.latent_rows > 1


def make_family(name: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> TinyModel:
    """Build a fresh tiny model of family ``name`` (a key of ``FAMILIES``) on the CPU."""
    import comfy.supported_models as sm

    fam = FAMILIES[name]
    base = getattr(sm, fam.name)
    attrs = {"unet_config": fam.unet_config, **fam.attrs}
    if fam.unet_extra_config is not None:
        attrs["unet_extra_config"] = fam.unet_extra_config
    cfg_cls = type(f"Tiny{fam.name}", (base,), attrs)
    checkpoint_sd = fam.checkpoint_sd(seed) if fam.checkpoint_sd is not None else None
    with torch.no_grad():  # as ComfyUI's executor builds models (get_model copies checkpoint tensors in place)
        patcher = _finish(cfg_cls(cfg_cls.unet_config), seed, checkpoint_sd=checkpoint_sd, dtype=dtype)
    tokens, dim = fam.context
    return TinyModel(fam.name, patcher, fam.latent_shape, _prediction(patcher.model), context_dim=dim,
                     context_tokens=tokens, seed=seed, extras=fam.extras)


def _prediction(model) -> str:
    """The model's prediction type as ``tiny_models`` names them (from its ``model_sampling`` classes)."""
    import comfy.model_sampling as ms

    sampling = model.model_sampling
    for cls, name in ((ms.CONST, "flow"), (ms.COSMOS_RFLOW, "flow_cosmos"), (ms.IMG_TO_IMG, "x0"),
                      (ms.EDM, "edm"), (ms.V_PREDICTION, "v"), (ms.EPS, "eps")):
        if isinstance(sampling, cls):
            return name
    return type(sampling).__name__


# --------------------------------------------------------------------------------------------
# conditioning pieces (shapes and keys as the families' text encoders and conditioning nodes make them)


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=g)


def _pooled(dim: int) -> Extras:
    return lambda g, b: {"pooled_output": _randn(g, b, dim)}


def _no_pooled(g: torch.Generator, b: int) -> dict:
    """Text encoders without a pooled output still put the key there (as None)."""
    return {"pooled_output": None}


def _mask(b: int, tokens: int, valid: int | None = None) -> torch.Tensor:
    """A text encoder's attention mask: the first ``valid`` tokens of every row are real, the rest padding."""
    valid = tokens if valid is None else valid
    mask = torch.zeros((b, tokens), dtype=torch.long)  # sd1_clip's dtype
    mask[:, :valid] = 1
    return mask


def _merge(*parts: Extras) -> Extras:
    def extras(g: torch.Generator, b: int) -> dict:
        out: dict = {}
        for part in parts:
            out.update(part(g, b))
        return out
    return extras


def _const(**values) -> Extras:
    return lambda g, b: dict(values)


def _concat_latent(*shape: int) -> Extras:
    """An image-to-X family's ``concat_latent_image`` (the VAE-encoded input image, one per sample)."""
    return lambda g, b: {"concat_latent_image": _randn(g, b, *shape)}


# --------------------------------------------------------------------------------------------
# networks


_CTX = (7, 32)  # tokens, dim of a tiny text context
_VIDEO = (16, 3, 8, 8)  # channels, frames, height, width of a tiny video latent

#: tiny_models' SD-style UNet (2 levels, 1 res block each, cross-attention on level 1 and the middle), with
#: linear projections in its transformers (SD2/SDXL style; SD1.x families switch them off)
_SD_UNET = {**_UNET, "out_channels": 4, "use_linear_in_transformer": True}
_HEADS = {"num_heads": -1, "num_head_channels": 8}
_SD2_HEADS = {**_HEADS, "attn_precision": torch.float32}  # SD2.x-based classes compute attention in float32


def _unet(**overrides) -> dict:
    return {**_SD_UNET, **overrides}


def _adm(dim: int) -> dict:
    """A UNet with a vector (ADM) input ``y`` of ``dim`` features."""
    return {"num_classes": "sequential", "adm_in_channels": dim}


_SDXL_POOLED = 32
#: CLIPTextEncodeSDXL's size conditioning (each value goes through a 256-d Timestep embedder: 6 × 256)
_SDXL_SIZE = _const(width=64, height=64, crop_w=0, crop_h=0, target_width=64, target_height=64)
_SDXL_EXTRAS = _merge(_pooled(_SDXL_POOLED), _SDXL_SIZE)
_SDXL_Y = _SDXL_POOLED + 6 * 256
#: SDXL-family UNets: 2 levels, the first without attention (as SDXL's first level), depth 1 or 2 below it
_SDXL_UNET = _unet(**_adm(_SDXL_Y), transformer_depth=[0, 1], transformer_depth_output=[0, 0, 1, 1])


def _sdxl_variant(depth: int, middle: int) -> dict:
    """SSD-1B / Vega / KOALA: the SDXL UNet with fewer transformer blocks (``middle``: depth of the middle block's
    transformer; -1 a middle block without one, -2 no middle block), each tiny one a different shape."""
    return {**_SDXL_UNET, "transformer_depth": [0, depth], "transformer_depth_output": [0, 0, depth, depth],
            "transformer_depth_middle": middle}


def _svd_unet(adm: int) -> dict:
    """SVD / SV3D video UNet: temporal res blocks and temporal attention, 4 latent + 4 concat channels."""
    return _unet(**_adm(adm), in_channels=8, transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1],
                 use_temporal_resblock=True, use_temporal_attention=True, extra_ff_mix_layer=True,
                 use_spatial_context=True, merge_strategy="learned_with_images", merge_factor=0.0,
                 video_kernel_size=[3, 1, 1], disable_temporal_crossattention=False)


_SVD_FRAMES = 2


def _svd_extras(g: torch.Generator, b: int) -> dict:
    """SVD_img2vid_Conditioning: motion bucket, fps, augmentation and the encoded start image."""
    return {"motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0,
            "concat_latent_image": _randn(g, b, 4, 8, 8)}


def _sv3d_extras(g: torch.Generator, b: int) -> dict:
    """SV3D_Conditioning: the encoded image and one elevation/azimuth per frame."""
    azimuths = [360.0 * i / _SVD_FRAMES for i in range(_SVD_FRAMES)]
    return {"concat_latent_image": _randn(g, b, 4, 8, 8), "elevation": [10.0] * _SVD_FRAMES, "azimuth": azimuths}


def _zero123_extras(g: torch.Generator, b: int) -> dict:
    """StableZero123_Conditioning: the encoded image (its context is CLIP-vision embedding ++ camera, 772-d)."""
    return {"concat_latent_image": _randn(g, b, 4, 8, 8)}


def _zero123_sd(seed: int) -> dict:
    """Stable Zero123's checkpoint projection of the 772-d image+camera embedding to the UNet's 768-d context."""
    proj = torch.nn.Linear(772, 768)
    return {f"cc_projection.{k}": v for k, v in _random_state_dict(proj, seed + 17).items()}


def _unclip(dim: int) -> dict:
    """unCLIP: noise augmentor of the CLIP-vision embedding (``dim``), ADM input = embedding ++ noise level."""
    return {"noise_aug_config": {"noise_schedule_config": {"timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"},
                                 "timestep_dim": dim},
            "model_type": lambda self, state_dict, prefix="": _model_type("V_PREDICTION")}


def _model_type(name: str):
    from comfy.model_base import ModelType

    return ModelType[name]


def _unclip_extras(dim: int) -> Extras:
    """unCLIPConditioning's ``unclip_conditioning`` entry: a CLIP-vision output (image embeds) per prompt."""
    def extras(g: torch.Generator, b: int) -> dict:
        import comfy.clip_vision

        out = comfy.clip_vision.Output()
        out["image_embeds"] = _randn(g, 1, dim)
        return {"unclip_conditioning": [{"clip_vision_output": out, "strength": 1.0, "noise_augmentation": 0.1}]}
    return extras


#: PixArt's position embedding needs (H + W) / 2 >= 33 latent pixels (its base size rounds to 0 below)
_PIXART_LATENT = (4, 40, 40)


def _pixart(image_model: str, micro_condition: bool) -> dict:
    return {"image_model": image_model, "input_size": 8, "patch_size": 2, "in_channels": 4, "hidden_size": 96,
            "depth": 2, "num_heads": 2, "caption_channels": 32, "model_max_length": 7, "pe_interpolation": 1,
            "micro_condition": micro_condition}


_HYDIT_TOKENS, _HYDIT_T5_TOKENS = 7, 9


def _hydit(image_model: str, size_cond: bool) -> dict:
    """HunyuanDiT: CLIP-BERT (``text_len`` tokens) and mT5 (``text_len_t5``) streams; v1.0/1.1 add size/style."""
    return {"image_model": image_model, "input_size": 8, "patch_size": 2, "in_channels": 4, "hidden_size": 64,
            "depth": 2, "num_heads": 2, "text_states_dim": 32, "text_states_dim_t5": 48, "text_len": _HYDIT_TOKENS,
            "text_len_t5": _HYDIT_T5_TOKENS, "size_cond": size_cond, "use_style_cond": size_cond,
            "attn_precision": torch.float32}


def _hydit_extras(g: torch.Generator, b: int) -> dict:
    """HunyuanDiT's text encoder: CLIP-BERT mask, the mT5 stream and its mask (tokens after 5 are padding)."""
    return {"pooled_output": None, "attention_mask": _mask(b, _HYDIT_TOKENS, 5),
            "conditioning_mt5xl": _randn(g, b, _HYDIT_T5_TOKENS, 48),
            "attention_mask_mt5xl": _mask(b, _HYDIT_T5_TOKENS, 6), "width": 64, "height": 64}


def _t5_mask(g: torch.Generator, b: int) -> dict:
    """A T5 encoder run with attention masks (Chroma, Mochi, LTXV, Cosmos): 5 real tokens, 2 of padding."""
    return {"attention_mask": _mask(b, _CTX[0], 5)}


_FLUX_DIT = {
    "image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 32, "context_in_dim": 32,
    "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
    "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 2, "qkv_bias": True, "guidance_embed": True,
}
_FLUX_GUIDANCE = ("FluxGuidance", {"guidance": 3.5})
_CHROMA_DIT = {
    "image_model": "chroma", "in_channels": 64, "out_channels": 64, "context_in_dim": 32, "hidden_size": 64,
    "mlp_ratio": 2.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1, "axes_dim": [8, 12, 12],
    "theta": 10000, "patch_size": 2, "qkv_bias": True, "in_dim": 64, "out_dim": 64, "hidden_dim": 64,
    "n_layers": 1,
}
_HV_DIT = {
    "image_model": "hunyuan_video", "in_channels": 16, "out_channels": 16, "vec_in_dim": 32, "context_in_dim": 32,
    "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
    "axes_dim": [8, 12, 12], "theta": 256, "patch_size": [1, 2, 2], "qkv_bias": True, "guidance_embed": True,
    "byt5": False, "meanflow": False, "use_cond_type_embedding": False, "vision_in_dim": None,
}
_HV_GUIDANCE = ("FluxGuidance", {"guidance": 6.0})


def _byt5(g: torch.Generator, b: int) -> dict:
    """HunyuanImage 2.1 / HunyuanVideo 1.5's ByT5 glyph stream (``conditioning_byt5small``)."""
    return {"conditioning_byt5small": _randn(g, b, 5, 1472)}


def _first_frame(channels: int) -> Extras:
    """HunyuanImageToVideo (v1 concat): the encoded start frame and a mask that keeps it."""
    def extras(g: torch.Generator, b: int) -> dict:
        mask = torch.ones((b, 1, _VIDEO[1], _VIDEO[2], _VIDEO[3]))
        mask[:, :, :1] = 0.0
        return {"concat_latent_image": _randn(g, b, channels, 1, _VIDEO[2], _VIDEO[3]), "concat_mask": mask}
    return extras


def _wan_start_image(g: torch.Generator, b: int) -> dict:
    """WanImageToVideo: the encoded start frame padded to the video, and the mask that keeps frame 0."""
    image = torch.zeros((b, 16) + _VIDEO[1:])
    image[:, :, :1] = _randn(g, b, 16, 1, _VIDEO[2], _VIDEO[3])
    mask = torch.ones((b, 1) + _VIDEO[1:])
    mask[:, :, :1] = 0.0
    return {"concat_latent_image": image, "concat_mask": mask}


def _clip_vision_hidden(g: torch.Generator, b: int) -> dict:
    """A CLIP-vision output (its penultimate hidden states, 1280-d as Wan's image embedder expects)."""
    import comfy.clip_vision

    out = comfy.clip_vision.Output()
    out["penultimate_hidden_states"] = _randn(g, 1, 5, 1280)
    return {"clip_vision_output": out}


def _camera(g: torch.Generator, b: int) -> dict:
    """WanCameraImageToVideo's ``camera_conditions``: Plücker embeddings, 6 × 4 channels per latent frame, pixels."""
    return {"camera_conditions": _randn(g, b, 6 * 4, _VIDEO[1], 8 * _VIDEO[2], 8 * _VIDEO[3])}


def _first_frame_kept() -> dict:
    """Cosmos image-to-video latents: a noise mask that keeps the (encoded) first frame."""
    mask = torch.ones((1, 1) + _VIDEO[1:])
    mask[:, :, :1] = 0.0
    return {"noise_mask": mask}


def _cosmos(in_channels: int) -> dict:
    return {"image_model": "cosmos", "max_img_h": 16, "max_img_w": 16, "max_frames": 8, "in_channels": in_channels,
            "out_channels": 16, "patch_spatial": 2, "patch_temporal": 1, "model_channels": 64, "num_blocks": 2,
            "num_heads": 2, "crossattn_emb_channels": 32, "block_config": "FA-CA-MLP", "concat_padding_mask": True,
            "pos_emb_cls": "rope3d", "pos_emb_learnable": False, "pos_emb_interpolation": "crop",
            "block_x_format": "THWBD", "affline_emb_norm": True, "use_adaln_lora": True, "adaln_lora_dim": 16,
            "extra_per_block_abs_pos_emb": True, "extra_per_block_abs_pos_emb_type": "learnable"}


def _cosmos_predict2(in_channels: int) -> dict:
    return {"image_model": "cosmos_predict2", "max_img_h": 16, "max_img_w": 16, "max_frames": 8,
            "in_channels": in_channels, "out_channels": 16, "patch_spatial": 2, "patch_temporal": 1,
            "model_channels": 64, "num_blocks": 2, "num_heads": 2, "crossattn_emb_channels": 32,
            "concat_padding_mask": True, "pos_emb_cls": "rope3d", "pos_emb_learnable": True,
            "pos_emb_interpolation": "crop", "min_fps": 1, "max_fps": 30, "use_adaln_lora": True,
            "adaln_lora_dim": 16, "extra_per_block_abs_pos_emb": False, "rope_enable_fps_modulation": False}


def _s2v_extras(g: torch.Generator, b: int) -> dict:
    """WanSoundImageToVideo: wav2vec features of all 25 layers per video frame, and the (empty) control video."""
    import comfy.latent_formats

    frames = 4 * _VIDEO[1]
    return {"audio_embed": _randn(g, b, 25, 32, frames),
            "control_video": comfy.latent_formats.Wan21().process_out(torch.zeros((b,) + _VIDEO))}


def _humo_extras(g: torch.Generator, b: int) -> dict:
    """WanHuMoImageToVideo with audio: whisper feature windows (one per latent frame, 8 × 5 × 1280) and the zero
    reference latent (its audio-less branch pads one window too many in 0.3.75, a shape the model rejects)."""
    return {"audio_embed": _randn(g, b, _VIDEO[1], 8, 5, 1280),
            "reference_latents": [torch.zeros((b, 16, 1) + _VIDEO[2:])]}


def _full_mask(g: torch.Generator, b: int) -> dict:
    """An LLM text encoder's mask for one unpadded prompt (all ones; the model reads its token count)."""
    return {"attention_mask": _mask(b, _CTX[0])}


def _lyrics(g: torch.Generator, b: int) -> dict:
    """ACE-Step's lyrics tokens (``conditioning_lyrics``, token ids of its lyrics tokenizer)."""
    return {"conditioning_lyrics": torch.randint(0, 64, (b, 6), generator=g)}


def _lumina(**overrides) -> dict:
    return {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 64, "n_layers": 2,
            "n_refiner_layers": 1, "n_heads": 2, "n_kv_heads": 1, "multiple_of": 16, "ffn_dim_multiplier": 4.0,
            "norm_eps": 1e-5, "qk_norm": True, "cap_feat_dim": 32, "axes_dims": [8, 12, 12],
            "axes_lens": [64, 64, 64], "rope_theta": 10000.0, **overrides}


def _hy3d() -> dict:
    return {"image_model": "hunyuan3d2", "in_channels": 64, "context_in_dim": 32, "hidden_size": 64,
            "mlp_ratio": 2.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1, "qkv_bias": True,
            "guidance_embed": False}


def _wan(**overrides) -> dict:
    return {**WAN21_DIT, **overrides}


def _hv(**overrides) -> dict:
    return {**_HV_DIT, **overrides}


# --------------------------------------------------------------------------------------------
# the families


def _families() -> list[Family]:
    return [
        # -- SD-style UNets ---------------------------------------------------------------------
        Family("SD15", _unet(use_linear_in_transformer=False), (4, 8, 8), _CTX, unet_extra_config=_HEADS),
        Family("SD20", _unet(), (4, 8, 8), _CTX, unet_extra_config=_SD2_HEADS,
               attrs={"model_type": lambda self, state_dict, prefix="": _model_type("V_PREDICTION")}),
        Family("SD21UnclipL", _unet(**_adm(64)), (4, 8, 8), _CTX, extras=_unclip_extras(32),
               unet_extra_config=_SD2_HEADS, attrs=_unclip(32)),
        Family("SD21UnclipH", _unet(**_adm(96)), (4, 8, 8), _CTX, extras=_unclip_extras(48),
               unet_extra_config=_SD2_HEADS, attrs=_unclip(48)),
        Family("SD15_instructpix2pix", _unet(in_channels=8, use_linear_in_transformer=False), (4, 8, 8), _CTX,
               extras=_concat_latent(4, 8, 8), unet_extra_config=_HEADS),
        Family("Stable_Zero123", _unet(in_channels=8, context_dim=768, use_linear_in_transformer=False), (4, 8, 8),
               (1, 772), extras=_zero123_extras, unet_extra_config=_HEADS, checkpoint_sd=_zero123_sd),
        Family("LotusD", _unet(**_adm(4), context_dim=1024), (4, 8, 8), (7, 1024),
               unet_extra_config={**_SD2_HEADS, "num_classes": "sequential"}),
        Family("SD_X4Upscaler", _unet(in_channels=7), (4, 8, 8), _CTX,
               extras=lambda g, b: {"concat_image": _randn(g, b, 3, 8, 8), "noise_augmentation": 0.2},
               unet_extra_config={**_HEADS, "num_classes": 1000, "disable_self_attentions": [True, False]}),
        Family("SDXL", _SDXL_UNET, (4, 8, 8), _CTX, extras=_SDXL_EXTRAS, unet_extra_config=_HEADS),
        Family("SSD1B", _sdxl_variant(2, 1), (4, 8, 8), _CTX, extras=_SDXL_EXTRAS, unet_extra_config=_HEADS),
        Family("Segmind_Vega", _sdxl_variant(1, -1), (4, 8, 8), _CTX, extras=_SDXL_EXTRAS, unet_extra_config=_HEADS),
        Family("KOALA_700M", _sdxl_variant(2, -2), (4, 8, 8), _CTX, extras=_SDXL_EXTRAS, unet_extra_config=_HEADS),
        Family("KOALA_1B", _sdxl_variant(1, -2), (4, 8, 8), _CTX, extras=_SDXL_EXTRAS, unet_extra_config=_HEADS),
        Family("SDXLRefiner", _unet(**_adm(_SDXL_POOLED + 5 * 256), transformer_depth=[0, 1],
                                    transformer_depth_output=[0, 0, 1, 1]), (4, 8, 8), _CTX,
               extras=_merge(_pooled(_SDXL_POOLED), _const(width=64, height=64, crop_w=0, crop_h=0,
                                                           aesthetic_score=6.0)),
               unet_extra_config=_HEADS),
        Family("SDXL_instructpix2pix", {**_SDXL_UNET, "in_channels": 8}, (4, 8, 8), _CTX,
               extras=_merge(_SDXL_EXTRAS, _concat_latent(4, 8, 8)), unet_extra_config=_HEADS),
        Family("SVD_img2vid", _svd_unet(3 * 256), (4, 8, 8), (1, 32), extras=_svd_extras, unet_extra_config=_SD2_HEADS,
               latent_rows=_SVD_FRAMES),
        Family("SV3D_u", _svd_unet(256), (4, 8, 8), (1, 32), extras=_sv3d_extras, unet_extra_config=_SD2_HEADS,
               latent_rows=_SVD_FRAMES),
        Family("SV3D_p", _svd_unet(256 + 2 * 512), (4, 8, 8), (1, 32), extras=_sv3d_extras,
               unet_extra_config=_SD2_HEADS, latent_rows=_SVD_FRAMES),
        # -- Stable Cascade ----------------------------------------------------------------------
        Family("Stable_Cascade_C", {
            "stable_cascade_stage": "c", "c_in": 16, "c_out": 16, "c_r": 16, "c_cond": 32, "c_hidden": [32, 32],
            "nhead": [2, 2], "blocks": [[1, 1], [1, 1]], "block_repeat": [[1, 1], [1, 1]],
            "level_config": ["CTA", "CTA"], "c_clip_text": 32, "c_clip_text_pooled": 32, "c_clip_img": 768,
            "c_clip_seq": 2,
        }, (16, 6, 6), _CTX, extras=_pooled(32)),
        Family("Stable_Cascade_B", {
            "stable_cascade_stage": "b", "c_in": 4, "c_out": 4, "c_r": 16, "patch_size": 2, "c_cond": 32,
            "c_hidden": [16, 32], "nhead": [-1, 2], "blocks": [[1, 1], [1, 1]], "block_repeat": [[1, 1], [1, 1]],
            "level_config": ["CT", "CTA"], "c_clip": 32, "c_clip_seq": 2, "c_effnet": 16, "c_pixels": 3,
            "dropout": [0, 0],
        }, (4, 16, 16), _CTX,
            extras=lambda g, b: {"pooled_output": _randn(g, b, 1, 32), "stable_cascade_prior": _randn(g, b, 16, 6, 6)}),
        # -- image DiTs ----------------------------------------------------------------------------
        Family("SD3", SD3_DIT, (16, 8, 8), _CTX, extras=_pooled(32)),
        Family("AuraFlow", {
            "in_channels": 4, "out_channels": 4, "patch_size": 2, "dim": 64, "n_layers": 2, "n_double_layers": 1,
            "n_heads": 2, "global_conddim": 64, "cond_seq_dim": 32, "max_seq": 16,
        }, (4, 8, 8), _CTX, extras=_no_pooled),
        Family("PixArtAlpha", _pixart("pixart_alpha", micro_condition=True), _PIXART_LATENT, (7, 32),
               extras=_merge(_no_pooled, _const(width=320, height=320))),
        Family("PixArtSigma", _pixart("pixart_sigma", micro_condition=False), _PIXART_LATENT, (7, 32),
               extras=_no_pooled),
        Family("HunyuanDiT", _hydit("hydit", size_cond=False), (4, 8, 8), (_HYDIT_TOKENS, 32),
               extras=_hydit_extras),
        Family("HunyuanDiT1", _hydit("hydit1", size_cond=True), (4, 8, 8), (_HYDIT_TOKENS, 32),
               extras=_hydit_extras, unet_extra_config={}),
        Family("Flux", _FLUX_DIT, (16, 8, 8), _CTX, extras=_pooled(32), positive_node=_FLUX_GUIDANCE),
        Family("FluxSchnell", {**_FLUX_DIT, "guidance_embed": False}, (16, 8, 8), _CTX, extras=_pooled(32)),
        Family("FluxInpaint", {**_FLUX_DIT, "in_channels": 96}, (16, 8, 8), _CTX,
               extras=_merge(_pooled(32), _concat_latent(16, 8, 8),
                             lambda g, b: {"concat_mask": (_randn(g, b, 1, 64, 64) > 0).float()}),
               positive_node=_FLUX_GUIDANCE),
        Family("Flux2", {
            "image_model": "flux2", "in_channels": 128, "out_channels": 128, "vec_in_dim": None, "context_in_dim": 32,
            "hidden_size": 64, "mlp_ratio": 3.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
            "axes_dim": [8, 8, 8, 8], "theta": 2000, "patch_size": 1, "qkv_bias": False, "guidance_embed": True,
            "global_modulation": True, "mlp_silu_act": True, "ops_bias": False, "default_ref_method": "index",
            "ref_index_scale": 10.0,
        }, (128, 4, 4), _CTX, extras=_no_pooled, positive_node=_FLUX_GUIDANCE),
        Family("Chroma", _CHROMA_DIT, (16, 8, 8), _CTX, extras=_merge(_no_pooled, _t5_mask)),
        Family("ChromaRadiance", {
            **_CHROMA_DIT, "image_model": "chroma_radiance", "in_channels": 3, "out_channels": 3, "patch_size": 16,
            "nerf_hidden_size": 16, "nerf_mlp_ratio": 2, "nerf_depth": 1, "nerf_max_freqs": 4, "nerf_tile_size": 0,
            "nerf_final_head_type": "conv", "nerf_embedder_dtype": torch.float32,
        }, (3, 32, 32), _CTX, extras=_merge(_no_pooled, _t5_mask)),
        # -- video DiTs ----------------------------------------------------------------------------
        Family("GenmoMochi", {
            "image_model": "mochi_preview", "patch_size": 2, "in_channels": 12, "hidden_size_x": 64,
            "hidden_size_y": 32, "depth": 2, "num_heads": 2, "mlp_ratio_x": 1536 * 8 / 64, "mlp_ratio_y": 2.0,
            "learn_sigma": False, "qk_norm": True, "qkv_bias": False, "out_bias": True, "attn_drop": 0.0,
            "patch_embed_bias": True, "posenc_preserve_area": True, "timestep_mlp_bias": True,
            "attend_to_padding": False, "timestep_scale": 1000.0, "use_t5": True, "t5_feat_dim": 32,
            "t5_token_length": _CTX[0], "rope_theta": 10000.0,
        }, (12, 2, 8, 8), _CTX, extras=_merge(_no_pooled, _t5_mask)),
        Family("LTXV", {
            "image_model": "ltxv", "in_channels": 128, "cross_attention_dim": 64, "attention_head_dim": 32,
            "num_attention_heads": 2, "caption_channels": 32, "num_layers": 2,
        }, (128, 2, 4, 4), _CTX, extras=_merge(_no_pooled, _t5_mask, _const(frame_rate=25))),
        Family("HunyuanVideo", _hv(), _VIDEO, _CTX, extras=_pooled(32),
               positive_node=_HV_GUIDANCE),
        Family("HunyuanVideoI2V", _hv(in_channels=33), _VIDEO, _CTX,
               extras=_merge(_pooled(32), _first_frame(16)), positive_node=_HV_GUIDANCE),
        Family("HunyuanVideoSkyreelsI2V", _hv(in_channels=32), _VIDEO, _CTX,
               extras=_merge(_pooled(32), _first_frame(16)), positive_node=_HV_GUIDANCE),
        Family("HunyuanImage21", _hv(in_channels=64, out_channels=64, vec_in_dim=None, patch_size=[1, 1],
                                     axes_dim=[16, 16], byt5=True, guidance_embed=False), (64, 4, 4), _CTX,
               extras=_merge(_no_pooled, _byt5)),
        Family("HunyuanImage21Refiner", _hv(in_channels=128, out_channels=64, vec_in_dim=None,
                                            patch_size=[1, 1, 1], guidance_embed=True, meanflow=True),
               (32, 1, 4, 4), _CTX, extras=_merge(_no_pooled, _concat_latent(32, 1, 4, 4),
                                                   _const(noise_augmentation=0.0))),
        Family("HunyuanVideo15", _hv(in_channels=65, out_channels=32, vec_in_dim=None, byt5=True,
                                     guidance_embed=False, use_cond_type_embedding=True, vision_in_dim=48),
               (32, 2, 8, 8), _CTX, extras=_merge(_no_pooled, _byt5)),
        Family("HunyuanVideo15_SR_Distilled", _hv(in_channels=98, out_channels=32, vec_in_dim=None, byt5=True,
                                                  guidance_embed=False, meanflow=True, use_cond_type_embedding=True,
                                                  vision_in_dim=48),
               (32, 2, 8, 8), _CTX, extras=_merge(_no_pooled, _byt5, _concat_latent(66, 2, 8, 8))),
        Family("CosmosT2V", _cosmos(16), _VIDEO, _CTX, extras=_merge(_no_pooled, _t5_mask, _const(frame_rate=24))),
        Family("CosmosI2V", _cosmos(17), _VIDEO, _CTX, extras=_merge(_no_pooled, _t5_mask, _const(frame_rate=24)),
               latent_extra=_first_frame_kept),
        Family("CosmosT2IPredict2", _cosmos_predict2(16), (16, 1, 8, 8), _CTX, extras=_no_pooled),
        Family("CosmosI2VPredict2", _cosmos_predict2(17), _VIDEO, _CTX,
               extras=_merge(_no_pooled, _const(frame_rate=16)), latent_extra=_first_frame_kept),
        Family("WAN21_T2V", _wan(), _VIDEO, _CTX, extras=_no_pooled),
        Family("WAN22_T2V", _wan(in_dim=48, out_dim=48), (48, 2, 4, 4), _CTX, extras=_no_pooled),
        Family("WAN21_I2V", _wan(model_type="i2v", in_dim=36), _VIDEO, _CTX,
               extras=_merge(_no_pooled, _wan_start_image, _clip_vision_hidden)),
        Family("WAN21_FunControl2V", _wan(model_type="i2v", in_dim=48), _VIDEO, _CTX,
               extras=_merge(_no_pooled, _concat_latent(32, 3, 8, 8), _clip_vision_hidden)),
        Family("WAN21_Camera", _wan(model_type="camera", in_dim=32), _VIDEO, _CTX,
               extras=_merge(_no_pooled, _concat_latent(16, 3, 8, 8), _clip_vision_hidden,
                             _camera)),
        Family("WAN22_Camera", _wan(model_type="camera_2.2", in_dim=36), _VIDEO, _CTX,
               extras=_merge(_no_pooled, _wan_start_image,
                             _camera)),
        Family("WAN21_Vace", _wan(model_type="vace", vace_layers=1, vace_in_dim=96), _VIDEO, _CTX,
               extras=_no_pooled),
        Family("WAN22_S2V", _wan(model_type="s2v", audio_dim=32, num_audio_token=4, enable_adain=True,
                                 cond_dim=16, audio_inject_layers=[0, 1], adain_mode="attn_norm",
                                 framepack_drop_mode="padd"), _VIDEO, _CTX,
               extras=_merge(_no_pooled, _s2v_extras)),
        Family("WAN21_HuMo", _wan(model_type="humo", in_dim=36, audio_token_num=16), _VIDEO, _CTX,
               extras=_merge(_no_pooled, _humo_extras)),
        Family("WAN22_Animate", _wan(model_type="animate", in_dim=36, motion_encoder_dim=512), _VIDEO, _CTX,
               extras=_merge(_no_pooled, _wan_start_image, _clip_vision_hidden,
                             lambda g, b: {"pose_video_latent": _randn(g, b, 16, _VIDEO[1] - 1, 8, 8)})),
        # -- other DiTs ------------------------------------------------------------------------------
        Family("Lumina2", _lumina(), (16, 8, 8), _CTX, extras=_merge(_no_pooled, _full_mask)),
        # Z-Image's modulation takes a 256-d time embedding: dim >= 256
        Family("ZImage", _lumina(dim=256, n_kv_heads=2, axes_dims=[32, 48, 48], z_image_modulation=True,
                                 time_scale=1000.0, pad_tokens_multiple=8, ffn_dim_multiplier=8.0 / 3.0),
               (16, 8, 8), _CTX,
               extras=_merge(_no_pooled, _full_mask)),
        Family("HiDream", {
            "image_model": "hidream", "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 1,
            "num_single_layers": 1, "attention_head_dim": 32, "num_attention_heads": 2, "caption_channels": [32, 32],
            "text_emb_dim": 32, "num_routed_experts": 2, "num_activated_experts": 1, "axes_dims_rope": [16, 8, 8],
            "max_resolution": [16, 16], "llama_layers": [0, 1],
        }, (16, 8, 8), _CTX, extras=_merge(_pooled(32), lambda g, b: {"conditioning_llama3": _randn(g, b, 2, 5, 32)})),
        Family("Omnigen2", {
            "image_model": "omnigen2", "patch_size": 2, "in_channels": 16, "out_channels": None, "hidden_size": 64,
            "num_layers": 2, "num_refiner_layers": 1, "num_attention_heads": 2, "num_kv_heads": 1,
            "multiple_of": 16, "ffn_dim_multiplier": None, "norm_eps": 1e-5, "axes_dim_rope": [8, 12, 12],
            "axes_lens": [64, 64, 64], "text_feat_dim": 32, "timestep_scale": 1000.0,
        }, (16, 8, 8), _CTX, extras=_merge(_no_pooled, _full_mask)),
        Family("QwenImage", {
            "image_model": "qwen_image", "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 2,
            "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": 32,
            "axes_dims_rope": [8, 12, 12],
        }, (16, 8, 8), _CTX, extras=_no_pooled),
        Family("Hunyuan3Dv2", _hy3d(), (64, 16), _CTX),
        Family("Hunyuan3Dv2mini", _hy3d(), (64, 16), _CTX),
        # Its network splits every batch into an (uncond, cond) pair: it runs only where both branches are
        # evaluated together (cfg > 1; DiffIER's adapter evaluates both for it). ComfyUI itself fails at cfg = 1.
        Family("Hunyuan3Dv2_1", {
            "image_model": "hunyuan3d2_1", "in_channels": 64, "hidden_size": 64, "context_dim": 32, "depth": 2,
            "num_heads": 2, "qk_norm": True, "qkv_bias": False, "num_moe_layers": 1, "guidance_cond_proj_dim": None,
            "num_experts": 2, "moe_top_k": 1, "mlp_ratio": 2.0,
        }, (64, 16), _CTX,
            cfg_1="its network unpacks every batch as an (uncond, cond) pair; ComfyUI's own KSampler fails at cfg = 1"),
        # -- audio ---------------------------------------------------------------------------------------
        Family("StableAudio", STABLE_AUDIO_DIT, (64, 32), (7, 768), extras=_const(seconds_start=0.0, seconds_total=1.0),
               checkpoint_sd=stable_audio_checkpoint),
        Family("ACEStep", {
            "audio_model": "ace", "in_channels": 8, "num_layers": 1, "inner_dim": 64, "attention_head_dim": 32,
            "num_attention_heads": 2, "mlp_ratio": 2.0, "out_channels": 8, "max_position": 256,
            "rope_theta": 1000000.0, "speaker_embedding_dim": 512, "text_embedding_dim": 32,
            "ssl_encoder_depths": [1, 1], "ssl_names": ["mert", "m-hubert"], "ssl_latent_dims": [32, 32],
            "lyric_encoder_vocab_size": 64, "lyric_hidden_size": 1024, "patch_size": [16, 1], "max_height": 16,
            "max_width": 256,
        }, (8, 16, 16), _CTX, extras=_merge(_no_pooled, _lyrics)),
    ]


#: Every family by name (grouped by architecture: SD-style UNets, Stable Cascade, image, video and other DiTs, audio).
FAMILIES: dict[str, Family] = {fam.name: fam for fam in _families()}
