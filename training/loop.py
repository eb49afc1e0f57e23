"""The demo models' one training loop, shared by ``train_digits`` and ``train_sr``, and their command frame.

DDPM ε-MSE with σ drawn uniformly from the model's own ComfyUI discrete sigmas (``model_sampling.sigmas``),
``x = x₀ + σ ε`` through ``BaseModel.apply_model`` (``calculate_input``, timestep mapping,
``calculate_denoised``), so training sees exactly what ComfyUI's samplers feed the model at inference.
AdamW (no weight decay), 100 warm-up steps then a cosine schedule to 5 % of the learning rate (over the steps,
or over a time budget if that ends first), gradient norm clipped at 1, EMA of the weights with decay
``min(ema, (1 + step) / (10 + step))``. Fully seeded (:func:`seeded`); CPU float32.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

log = logging.getLogger("DiffIER.training")

WARMUP = 100
LOG_EVERY = 100
#: ``batch(size, generator) -> (x0 [B, C, H, W] in [-1, 1], apply_model keyword arguments)``
BatchFn = Callable[[int, torch.Generator], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass
class TrainResult:
    """What a run produced: the EMA weights' model and the run's record."""

    ema: torch.nn.Module
    final_loss: float
    loss_curve: list[list[float]]
    steps_done: int
    seconds: float


def seeded(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weight init) with ``seed``; the batches and noise come from the returned
    generator, seeded with ``seed + 1``."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed + 1)


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def learning_rate(base: float, step: int, progress: float) -> float:
    """Linear warm-up over :data:`WARMUP` steps, then cosine from ``base`` to 5 % of it as ``progress`` goes 0 → 1."""
    return base * min(1.0, (step + 1) / WARMUP) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_eps(model: torch.nn.Module, batch: BatchFn, g: torch.Generator, *, steps: int, batch_size: int, lr: float,
              ema: float, max_seconds: float = 0.0, name: str = "") -> TrainResult:
    """Train ``model`` (a demo ``BaseModel``) in place with the ε-loss; returns its EMA copy and the record.

    Args:
        model: the model to train (fresh or resumed).
        batch: draws a batch from ``g`` (see :data:`BatchFn`).
        g: the generator of batches, σ and noise.
        steps: the number of optimiser steps.
        batch_size: samples per step.
        lr: the peak learning rate.
        ema: the EMA decay's cap.
        max_seconds: a time budget (0: none); the schedule then anneals over whichever ends first.
        name: a prefix for the log lines.
    """
    model.train()
    ema_model = copy.deepcopy(model).eval()
    for p in ema_model.parameters():
        p.requires_grad_(False)
    sigmas = model.model_sampling.sigmas.float()
    params = trainable(model)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    t0 = time.perf_counter()
    running, losses, progress, step = None, [], 0.0, 0
    for step in range(steps):
        progress = step / steps
        if max_seconds:
            progress = max(progress, (time.perf_counter() - t0) / max_seconds)
        if progress >= 1.0:
            log.info("%s: time budget %.0f s reached at step %d", name, max_seconds, step)
            break
        step_lr = learning_rate(lr, step, progress)
        for group in opt.param_groups:
            group["lr"] = step_lr
        x0, conditioning = batch(batch_size, g)
        sigma = sigmas[torch.randint(0, sigmas.numel(), (batch_size,), generator=g)]
        eps = torch.randn(x0.shape, generator=g)
        x = x0 + sigma.view(-1, 1, 1, 1) * eps
        denoised = model.apply_model(x, sigma, **conditioning)
        eps_pred = (x - denoised) / sigma.view(-1, 1, 1, 1)
        loss = torch.nn.functional.mse_loss(eps_pred, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema_model.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1.0 - decay)
        loss_value = loss.item()
        running = loss_value if running is None else 0.98 * running + 0.02 * loss_value
        if (step + 1) % LOG_EVERY == 0 or step == 0:
            losses.append([step + 1, round(running, 5)])
            log.info("%s step %d/%d: loss %.4f (ema of batch losses), lr %.2e, %.1f s", name, step + 1, steps,
                     running, step_lr, time.perf_counter() - t0)
    steps_done = step + 1 if progress < 1.0 else step
    return TrainResult(ema_model, running, losses, steps_done, time.perf_counter() - t0)


def save(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write float32 ``state_dict`` to ``path`` as safetensors; ``metadata`` values that are not strings as JSON."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().float() for k, v in state_dict.items()}, str(path),
              metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    log.info("wrote %s (%.2f MB)", path, path.stat().st_size / 1e6)


def add_common_arguments(parser: argparse.ArgumentParser, *, steps: int, batch: int, threads: int) -> None:
    """The flags both commands share (defaults as the shipped weights were trained)."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--p-uncond", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--comfyui", default=None,
                        help="the ComfyUI folder to run in (sets COMFYUI_PATH; default: $COMFYUI_PATH, else the "
                             "repository's .cache/comfyui-0.3.75, provisioned if missing)")


def command(parse: Callable[[list[str] | None], argparse.Namespace],
            run: Callable[[argparse.Namespace, ModuleType], Any], argv: list[str] | None = None) -> None:
    """A training command: parse ``argv``, set up logging, boot ComfyUI in this process with the pack loaded as
    ComfyUI loads it (``scripts.comfy_inprocess``), set torch's thread count, then ``run`` the parsed arguments with
    the pack's ``demo.models``.

    Args:
        parse: the command's argument parser.
        run: what the command does with the parsed arguments and the demo models module.
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.comfyui:
        os.environ["COMFYUI_PATH"] = str(Path(args.comfyui).resolve())
    from scripts import comfy_inprocess

    pack = comfy_inprocess.session()[3]
    torch.set_num_threads(args.threads)
    run(args, pack.demo.models)
