"""Full-size, random-weight checkpoints under the shipped workflows' file names, built with ComfyUI's own classes (the
real-server workflow tests run the workflows on them; ``workflows/tools/make_ui_workflows.py`` serves them to the
frontend).

Every file has the real architecture and the exact name the shipped workflows use, so
``CheckpointLoaderSimple`` detects it exactly as it detects the real download:

``v2-1_768-ema-pruned.safetensors``
    SD 2.1 768-v: UNet (``comfy.supported_models.SD20``, v-prediction), OpenCLIP-H text encoder
    (``comfy.text_encoders.sd2_clip``) and ComfyUI's ``AutoencoderKL``.
``v2-1_512-ema-pruned.safetensors``
    The same network as an ε-prediction model (SD 2.1 base). ComfyUI tells the two apart by the standard
    deviation of ``output_blocks.11.1.transformer_blocks.0.norm1.bias`` (> 0.09: v-prediction), so this
    variant is the 768 file with only that tensor rescaled (no second full build).
``x4-upscaler-ema.safetensors``
    SD ×4 upscaler (``comfy.supported_models.SD_X4Upscaler``, 7 input channels, class-label noise level),
    OpenCLIP-H and the ×4 VAE (``ch_mult`` [1, 2, 4]).

Weights are seeded random values (matrices ~ N(0, 1/fan_in), norm scales ~ 1, biases ~ N(0, 0.02)),
stored as float16 to halve the files; ComfyUI's ``comfy.sd.save_checkpoint`` writes them. Each file is
built in a subprocess (the SD 2.1 build peaks at several GB; the memory goes back with the process),
under a file lock, and cached in ``$DIFFIER_CACHE/test-models/checkpoints`` (default
``<repo>/.cache/test-models/checkpoints``). After saving, the builder loads the file back with
``comfy.sd.load_checkpoint_guess_config`` and checks the detected model class and prediction type.

Usage::

    from scripts.checkpoints import ensure_checkpoints
    folder = ensure_checkpoints()          # builds what is missing, returns the checkpoints folder

    python -m scripts.checkpoints          # build all (same as above)
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from . import comfy_inprocess, comfyui_runtime
from .sd21_unet import SD21_UNET, VPRED_PROBE_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("diffier.checkpoints")

SD21_V = "v2-1_768-ema-pruned.safetensors"
SD21_EPS = "v2-1_512-ema-pruned.safetensors"
X4 = "x4-upscaler-ema.safetensors"
ALL = (SD21_V, SD21_EPS, X4)
#: bump to rebuild cached files after a change of the recipe
RECIPE_VERSION = 1
#: the probe tensor of the SD 2.1 768-v UNet (``scripts/sd21_unet.py``, shared with the benchmarks)
VPRED_KEY = "model.diffusion_model." + VPRED_PROBE_KEY

# stablediffusion's x4-upscaling.yaml: attention_resolutions [2, 4, 8], channel_mult [1, 2, 2, 4]
X4_UNET = {
    "use_checkpoint": False, "image_size": 128, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 7, "model_channels": 256, "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [0, 0, 1, 1, 1, 1, 1, 1], "channel_mult": [1, 2, 2, 4], "transformer_depth_middle": 1,
    "use_linear_in_transformer": True, "context_dim": 1024,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_temporal_attention": False, "use_temporal_resblock": False,
}
VAE_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}

#: expected (model class name, prediction type) after ComfyUI loads the file back
EXPECTED = {SD21_V: ("SD20", "V_PREDICTION"), SD21_EPS: ("SD20", "EPS"), X4: ("SD_X4Upscaler", "V_PREDICTION")}


def cache_dir() -> Path:
    env = os.environ.get("DIFFIER_CACHE")
    root = Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache"
    return root / "test-models" / "checkpoints"


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".built.json")


def _is_built(path: Path) -> bool:
    try:
        return json.loads(_stamp(path).read_text()).get("recipe") == RECIPE_VERSION and path.is_file()
    except (OSError, ValueError):
        return False


def ensure_checkpoints(names: tuple[str, ...] = ALL, timeout: float = 1200.0) -> Path:
    """Build the missing checkpoints (each in a subprocess, under a lock); return their folder."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with comfyui_runtime.file_lock(folder / ".build.lock"):
        for name in names:
            path = folder / name
            if _is_built(path):
                continue
            if name == SD21_EPS and not _is_built(folder / SD21_V):
                _build_in_subprocess(SD21_V, folder / SD21_V, timeout)
            _build_in_subprocess(name, path, timeout)
    return folder


def _build_in_subprocess(name: str, path: Path, timeout: float) -> None:
    start = time.monotonic()
    log.info("building %s (full size, random weights) ...", name)
    subprocess.run([sys.executable, "-m", "scripts.checkpoints", "--build", name, str(path)], check=True,
                   timeout=timeout, cwd=str(REPO_ROOT))
    elapsed = time.monotonic() - start
    _stamp(path).write_text(json.dumps({"recipe": RECIPE_VERSION, "seconds": round(elapsed, 1),
                                        "bytes": path.stat().st_size}))
    log.info("built %s in %.1f s", name, elapsed)


# ---------------------------------------------------------------------------------------------------
# the builder (runs in its own process)


def _randomize(module, seed: int, overrides: dict | None = None) -> None:
    """Seeded random values, in place, for every floating tensor of ``module`` (params and buffers)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    overrides = overrides or {}
    with torch.no_grad():
        for key, t in sorted(module.state_dict(keep_vars=True).items()):
            if not torch.is_floating_point(t):
                continue
            name = key.rsplit(".", 1)[-1]
            shape = tuple(t.shape)
            if key in overrides:
                t.copy_(overrides[key] * torch.randn(shape, generator=g))
            elif len(shape) >= 2 and name == "weight":
                t.copy_(torch.randn(shape, generator=g) / math.sqrt(max(1, math.prod(shape[1:]))))
            elif len(shape) == 1 and name in ("weight", "scale", "gamma"):
                t.copy_(1.0 + 0.02 * torch.randn(shape, generator=g))
            elif "position_embedding" in key or "positional_embedding" in key:
                t.copy_(0.01 * torch.randn(shape, generator=g))
            else:
                t.copy_(0.02 * torch.randn(shape, generator=g))


def _bootstrap_comfy():
    comfy_inprocess.bootstrap()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)


def _build_full(name: str, path: Path) -> None:
    import comfy.model_detection
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.sd
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL

    x4 = name == X4
    unet_config = dict(X4_UNET if x4 else SD21_UNET)
    model_config = comfy.model_detection.model_config_from_unet_config(unet_config)
    model_config.set_inference_dtype(torch.float32, None)
    # SD20.model_type() reads the prediction type off this tensor's spread (std > 0.09: v-prediction).
    bias_key = VPRED_KEY.removeprefix("model.diffusion_model.")
    vpred_probe = {bias_key: torch.randn(8)}
    model = model_config.get_model(vpred_probe, "")
    unet = model.diffusion_model
    _randomize(unet, seed=1, overrides=None if x4 else {bias_key: 0.5})
    unet.half()
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())

    clip = comfy.sd.CLIP(model_config.clip_target(), model_options={"dtype": torch.float32})
    _randomize(clip.cond_stage_model, seed=2)
    clip.cond_stage_model.half()

    ddconfig = dict(VAE_DDCONFIG, ch_mult=[1, 2, 4] if x4 else [1, 2, 4, 4])
    first_stage = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    _randomize(first_stage, seed=3)
    vae = comfy.sd.VAE(sd={k: v.half() for k, v in first_stage.state_dict().items()})
    del first_stage

    tmp = path.with_name(".partial-" + path.name)
    comfy.sd.save_checkpoint(str(tmp), patcher, clip=clip, vae=vae,
                             metadata={"diffier_test": "random weights, not a real model"})
    del patcher, model, unet, clip, vae
    _verify(name, tmp)
    os.replace(tmp, path)


def _derive_eps(path: Path) -> None:
    """SD 2.1 ε variant: the v-prediction file with the probe tensor rescaled to std 0.02."""
    import safetensors.torch

    sd = safetensors.torch.load_file(str(path.with_name(SD21_V)))
    t = sd[VPRED_KEY].float()
    sd[VPRED_KEY] = (0.02 * (t - t.mean()) / t.std(unbiased=False)).to(sd[VPRED_KEY].dtype)
    sd.pop("v_pred", None)
    tmp = path.with_name(".partial-" + path.name)
    safetensors.torch.save_file(sd, str(tmp), metadata={"diffier_test": "random weights, not a real model"})
    del sd
    _verify(SD21_EPS, tmp)
    os.replace(tmp, path)


def _verify(name: str, path: Path) -> None:
    import comfy.sd

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    cls_name, pred = EXPECTED[name]
    got = (type(model.model.model_config).__name__, model.model.model_type.name)
    if got != (cls_name, pred) or clip is None or vae is None:
        raise RuntimeError(f"{name}: ComfyUI loads it back as {got}, clip={clip is not None}, "
                           f"vae={vae is not None}; expected {(cls_name, pred)} with clip and vae")
    ratio = vae.downscale_ratio
    if ratio != (4 if name == X4 else 8):
        raise RuntimeError(f"{name}: VAE downscale ratio {ratio}")
    log.info("verified %s: %s %s, VAE /%d", name, cls_name, pred, ratio)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["--build"]:
        name, path = argv[1], Path(argv[2])
        _bootstrap_comfy()
        if name == SD21_EPS:
            _derive_eps(path)
        else:
            _build_full(name, path)
        return 0
    sys.stdout.write(f"{ensure_checkpoints()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
