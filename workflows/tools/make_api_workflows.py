"""Write the API-format example workflows (``workflows/api/*.json``) and the bundled SR input image.

The API files are the source of truth; ``make_ui_workflows.py`` loads each one into the real ComfyUI
frontend and saves what the frontend serialises as the UI-format files (``workflows/*.json``).

    python workflows/tools/make_api_workflows.py            # rewrite the API files
    python workflows/tools/make_api_workflows.py --image    # also re-make workflows/input/diffier_sr_input.png
                                                            # (needs scikit-image, not a pack requirement)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parent.parent
API_DIR = WORKFLOWS / "api"
INPUT_DIR = WORKFLOWS / "input"

SD21 = "v2-1_768-ema-pruned.safetensors"
X4 = "x4-upscaler-ema.safetensors"
SDXL = "sd_xl_base_1.0.safetensors"
FLUX_DEV = "flux1-dev.safetensors"
FLUX_T5 = "t5xxl_fp16.safetensors"
FLUX_CLIP_L = "clip_l.safetensors"
FLUX_VAE = "ae.safetensors"
FLUX_GUIDANCE = 3.5  # FluxGuidance's default, the value of ComfyUI's Flux dev examples
PROMPT = "A puppy is eating a cheeseburger on the table"  # the paper's Fig. 3
NEGATIVE = "blurry, low quality, deformed"
SR_INPUT = "diffier_sr_input.png"
SR_PROMPT = "a photo of a tabby cat, sharp focus, highly detailed fur"
SEED = 42
DIFFIER = {"mode": "consistency", "eta": 0.05, "threshold": 0.001, "max_iters": 4, "start_percent": 0.0,
           "end_percent": 1.0, "inner_guidance": "cond"}
RESCALE_MULTIPLIER = 0.7  # RescaleCFG's default, the value benchmarked
SWEEP_CFGS = (3.0, 7.5, 15.0, 30.0)
SWEEP_SPACING = 8
SWEEP_ROWS = ("plain KSampler", "KSampler (DiffIER)")


# Flux dev samples at cfg 1, where ComfyUI skips the unconditional pass: KSampler (DiffIER)'s at_cfg_1 for it. The one
# place that sets it; the Flux workflow's sampler and its note (FLUX_NOTE) read it from here.
FLUX_AT_CFG_1 = "correct"


def node(class_type: str, title: str, **inputs) -> dict:
    return {"inputs": inputs, "class_type": class_type, "_meta": {"title": title}}


def sampler_inputs(model, positive, negative, latent, steps, cfg) -> dict:
    return {"seed": SEED, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "normal",
            "positive": positive, "negative": negative, "latent_image": latent, "denoise": 1.0, "model": model}


def _checkpoint_front(prompt: dict, title: str, ckpt_name: str, size: int) -> None:
    """Nodes 1-4: checkpoint loader, positive and negative prompt, empty latent of ``size``×``size``."""
    prompt["1"] = node("CheckpointLoaderSimple", title, ckpt_name=ckpt_name)
    prompt["2"] = node("CLIPTextEncode", "Positive prompt", text=PROMPT, clip=["1", 1])
    prompt["3"] = node("CLIPTextEncode", "Negative prompt", text=NEGATIVE, clip=["1", 1])
    prompt["4"] = node("EmptyLatentImage", f"Empty Latent Image ({size}×{size})", width=size, height=size,
                       batch_size=1)


def _sd21_front(prompt: dict) -> None:
    _checkpoint_front(prompt, "Load Checkpoint (SD 2.1 768-v)", SD21, 768)


def _ksampler_diffier_back(prompt: dict, steps: int, cfg: float, filename_prefix: str, **sampler) -> None:
    """Nodes 5-8 after ``_checkpoint_front``: KSampler (DiffIER) (``sampler`` overrides its sampler inputs), decode,
    save, and Preview as Text of ``diffier_info``."""
    inputs = {**sampler_inputs(["1", 0], ["2", 0], ["3", 0], ["4", 0], steps, cfg), **sampler}
    prompt["5"] = node("KSamplerDiffIER", "KSampler (DiffIER)", **inputs, **DIFFIER)
    prompt["6"] = node("VAEDecode", "VAE Decode", samples=["5", 0], vae=["1", 2])
    prompt["7"] = node("SaveImage", "Save Image", filename_prefix=filename_prefix, images=["6", 0])
    prompt["8"] = node("PreviewAny", "DiffIER per-step info", source=["5", 1])


def sd21_txt2img_ksampler_diffier() -> dict:
    p: dict = {}
    _sd21_front(p)
    _ksampler_diffier_back(p, 30, 7.5, "DiffIER/sd21_txt2img")
    return p


def sd21_txt2img_guider() -> dict:
    p: dict = {}
    _sd21_front(p)
    p["9"] = node("DiffIERGuider", "DiffIER Guider (model patch)", model=["1", 0], **DIFFIER)
    p["5"] = node("KSampler", "KSampler", **sampler_inputs(["9", 0], ["2", 0], ["3", 0], ["4", 0], 30, 7.5))
    p["6"] = node("VAEDecode", "VAE Decode", samples=["5", 0], vae=["1", 2])
    p["7"] = node("SaveImage", "Save Image", filename_prefix="DiffIER/sd21_txt2img_guider", images=["6", 0])
    return dict(sorted(p.items(), key=lambda kv: int(kv[0])))


def sd21_txt2img_rescalecfg_diffier() -> dict:
    """RescaleCFG, then DiffIER: a free built-in chained with DiffIER (docs/evidence/tuned.md measures the chains)."""
    p: dict = {}
    _sd21_front(p)
    p["11"] = node("RescaleCFG", "RescaleCFG (first)", model=["1", 0], multiplier=RESCALE_MULTIPLIER)
    p["9"] = node("DiffIERGuider", "DiffIER Guider (after RescaleCFG)", model=["11", 0], **DIFFIER)
    p["5"] = node("KSampler", "KSampler", **sampler_inputs(["9", 0], ["2", 0], ["3", 0], ["4", 0], 30, 7.5))
    p["6"] = node("VAEDecode", "VAE Decode", samples=["5", 0], vae=["1", 2])
    p["7"] = node("SaveImage", "Save Image", filename_prefix="DiffIER/sd21_txt2img_rescalecfg_diffier",
                  images=["6", 0])
    return dict(sorted(p.items(), key=lambda kv: int(kv[0])))


def sd_x4_upscale() -> dict:
    p: dict = {}
    p["1"] = node("CheckpointLoaderSimple", "Load Checkpoint (SD x4 upscaler)", ckpt_name=X4)
    p["2"] = node("CLIPTextEncode", "Positive prompt", text=SR_PROMPT, clip=["1", 1])
    p["3"] = node("CLIPTextEncode", "Negative prompt", text=NEGATIVE, clip=["1", 1])
    p["4"] = node("LoadImage", "Load low-resolution image", image=SR_INPUT)
    p["10"] = node("SD_4XUpscale_Conditioning", "SD 4x Upscale Conditioning", images=["4", 0], positive=["2", 0],
                   negative=["3", 0], scale_ratio=4.0, noise_augmentation=0.1)
    p["5"] = node("KSamplerDiffIER", "KSampler (DiffIER)",
                  **sampler_inputs(["1", 0], ["10", 0], ["10", 1], ["10", 2], 20, 7.0), **DIFFIER)
    p["6"] = node("VAEDecode", "VAE Decode", samples=["5", 0], vae=["1", 2])
    p["7"] = node("SaveImage", "Save Image", filename_prefix="DiffIER/sd_x4_upscale", images=["6", 0])
    p["8"] = node("PreviewAny", "DiffIER per-step info", source=["5", 1])
    return dict(sorted(p.items(), key=lambda kv: int(kv[0])))


def sdxl_txt2img_ksampler_diffier() -> dict:
    """SDXL base text-to-image at 1024×1024 with KSampler (DiffIER): dpmpp_2m / karras, 30 steps, CFG 7."""
    p: dict = {}
    _checkpoint_front(p, "Load Checkpoint (SDXL base 1.0)", SDXL, 1024)
    _ksampler_diffier_back(p, 30, 7.0, "DiffIER/sdxl_txt2img", sampler_name="dpmpp_2m", scheduler="karras")
    return p


def flux_dev_txt2img_ksampler_diffier() -> dict:
    """Flux dev text-to-image as ComfyUI's Flux examples build it (FluxGuidance 3.5, cfg 1), with KSampler (DiffIER)."""
    p: dict = {}
    p["1"] = node("UNETLoader", "Load Diffusion Model (Flux dev)", unet_name=FLUX_DEV, weight_dtype="default")
    p["2"] = node("DualCLIPLoader", "DualCLIPLoader (T5-XXL + CLIP-L)", clip_name1=FLUX_T5, clip_name2=FLUX_CLIP_L,
                  type="flux", device="default")
    p["3"] = node("VAELoader", "Load VAE (Flux)", vae_name=FLUX_VAE)
    p["4"] = node("CLIPTextEncode", "Prompt", text=PROMPT, clip=["2", 0])
    p["5"] = node("FluxGuidance", "FluxGuidance (distilled guidance)", guidance=FLUX_GUIDANCE, conditioning=["4", 0])
    p["6"] = node("ConditioningZeroOut", "Negative (not evaluated at cfg 1)", conditioning=["4", 0])
    p["7"] = node("EmptySD3LatentImage", "Empty Latent (1024×1024, 16 channels)", width=1024, height=1024,
                  batch_size=1)
    inputs = sampler_inputs(["1", 0], ["5", 0], ["6", 0], ["7", 0], 20, 1.0)
    inputs.update(scheduler="simple")
    p["8"] = node("KSamplerDiffIER", "KSampler (DiffIER), cfg 1", **inputs, **DIFFIER, at_cfg_1=FLUX_AT_CFG_1)
    p["9"] = node("VAEDecode", "VAE Decode", samples=["8", 0], vae=["3", 0])
    p["10"] = node("SaveImage", "Save Image", filename_prefix="DiffIER/flux_dev_txt2img", images=["9", 0])
    p["11"] = node("PreviewAny", "DiffIER per-step info", source=["8", 1])
    return p


FLUX_NOTE = (
    "Flux dev is guidance-distilled: it takes the guidance strength as an input (FluxGuidance, "
    f"{FLUX_GUIDANCE:g} here) instead of running classifier-free guidance. So the sampler's cfg is 1, and at "
    "cfg 1 ComfyUI skips the unconditional pass: the negative (ConditioningZeroOut) is never evaluated, and a "
    "cfg above 1 would double the cost and change the look.\n\n"
    "DiffIER corrects the guided prediction of every step. With at_cfg_1 = skip (the node's default) it would do "
    "nothing at cfg 1: the sampler would sample exactly like a plain KSampler and its summary would say so. "
    f"at_cfg_1 = {FLUX_AT_CFG_1} runs DiffIER's consistency correction at cfg 1: the conditional prediction is the "
    "guided one, and the inner loop re-evaluates the conditional branch (up to max_iters extra evaluations per "
    "step). Whether this helps Flux dev is not measured yet: set at_cfg_1 to skip to compare."
)
#: Note nodes the UI files get (UI only: the API format has no notes): {workflow: [(title, text), ...]}
UI_NOTES = {"flux_dev_txt2img_ksampler_diffier": [("Why cfg 1, FluxGuidance and at_cfg_1", FLUX_NOTE)]}


def guidance_sweep() -> dict:
    """Same seed at every CFG in SWEEP_CFGS: plain KSampler in the top row, KSampler (DiffIER) below, labelled."""
    p: dict = {}
    _sd21_front(p)
    p["4"]["inputs"].update(width=768, height=768)
    next_id = 10
    rows: dict[str, list[str]] = {"KSampler": [], "KSamplerDiffIER": []}
    for row, class_type in enumerate(rows):
        label = "plain" if class_type == "KSampler" else "DiffIER"
        for col, cfg in enumerate(SWEEP_CFGS):
            sid, did = str(next_id), str(next_id + 1)
            next_id += 2
            extra = DIFFIER if class_type == "KSamplerDiffIER" else {}
            p[sid] = node(class_type, f"[row {row + 1}, col {col + 1}] {label} CFG {cfg:g}",
                          **sampler_inputs(["1", 0], ["2", 0], ["3", 0], ["4", 0], 25, cfg), **extra)
            p[did] = node("VAEDecode", f"Decode: {label} CFG {cfg:g}", samples=[sid, 0], vae=["1", 2])
            rows[class_type].append(did)
    row_out = []
    for class_type, decoded in rows.items():
        label = "plain" if class_type == "KSampler" else "DiffIER"
        left = [decoded[0], 0]
        for col, right in enumerate(decoded[1:], start=2):
            sid = str(next_id)
            next_id += 1
            p[sid] = node("ImageStitch", f"Row {label}: + col {col}", image1=left, direction="right",
                          match_image_size=True, spacing_width=SWEEP_SPACING, spacing_color="white",
                          image2=[right, 0])
            left = [sid, 0]
        row_out.append(left)
    grid = str(next_id)
    p[grid] = node("ImageStitch", "Grid: plain row above DiffIER row", image1=row_out[0], direction="down",
                   match_image_size=True, spacing_width=SWEEP_SPACING, spacing_color="black", image2=row_out[1])
    labelled = str(next_id + 1)
    p[labelled] = node("DiffIERLabelGrid", "Label grid (rows: sampler, columns: CFG)", image=[grid, 0],
                       columns="\n".join(f"CFG {c:g}" for c in SWEEP_CFGS), rows="\n".join(SWEEP_ROWS),
                       spacing=SWEEP_SPACING, font_size=0)
    cfgs = "-".join(f"{c:g}" for c in SWEEP_CFGS)
    p[str(next_id + 2)] = node("SaveImage", f"Save grid (rows: plain, DiffIER; columns: CFG {cfgs})",
                               filename_prefix=f"DiffIER/guidance_sweep_rows-plain-diffier_cfg-{cfgs}",
                               images=[labelled, 0])
    return p


WORKFLOW_BUILDERS = {
    "sd21_txt2img_ksampler_diffier": sd21_txt2img_ksampler_diffier,
    "sd21_txt2img_guider": sd21_txt2img_guider,
    "sd21_txt2img_rescalecfg_diffier": sd21_txt2img_rescalecfg_diffier,
    "sd_x4_upscale": sd_x4_upscale,
    "guidance_sweep": guidance_sweep,
    "sdxl_txt2img_ksampler_diffier": sdxl_txt2img_ksampler_diffier,
    "flux_dev_txt2img_ksampler_diffier": flux_dev_txt2img_ksampler_diffier,
}


def make_sr_input(path: Path, size: int = 128) -> None:
    """A 128×128 low-resolution photo: scikit-image's ``chelsea`` (the cat), centre-cropped and downscaled."""
    from PIL import Image
    from skimage import data

    img = data.chelsea()  # (300, 451, 3) uint8
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = Image.fromarray(img[top:top + s, left:left + s])
    crop.resize((size, size), Image.Resampling.LANCZOS).save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", action="store_true", help="also re-make the bundled SR input image")
    args = ap.parse_args()
    API_DIR.mkdir(parents=True, exist_ok=True)
    for name, build in WORKFLOW_BUILDERS.items():
        (API_DIR / f"{name}.json").write_text(json.dumps(build(), indent=2) + "\n")
    if args.image:
        INPUT_DIR.mkdir(parents=True, exist_ok=True)
        make_sr_input(INPUT_DIR / SR_INPUT)


if __name__ == "__main__":
    main()
