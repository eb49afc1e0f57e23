"""The super-resolution demo's image arithmetic (pure torch, no ComfyUI): the degradation that makes LR images from
HR ones (Gaussian blur, then area downsampling, as in the paper's SR setup), bicubic upsampling and the conversion
of a ComfyUI IMAGE to the models' grey input. ``demo.models`` re-exports every name."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["sr_degrade", "sr_upsample", "image_to_unit_gray", "sr_condition_image"]


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def sr_degrade(hr: torch.Tensor, scale: int, blur_sigma: float) -> torch.Tensor:
    """HR ``[B, C, H, W]`` → LR ``[B, C, H/scale, W/scale]``: separable Gaussian blur (reflect padding),
    then area (box) downsampling. The paper's SR degradation (blur then downsample).

    Args:
        hr: the high-resolution images.
        scale: the downsampling factor.
        blur_sigma: the Gaussian's standard deviation in HR pixels (0: no blur).
    """
    x = hr.float()
    if blur_sigma > 0:
        k = _gaussian_kernel(blur_sigma).to(x.device)
        r = k.numel() // 2
        c = x.shape[1]
        x = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
        x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        x = torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return torch.nn.functional.avg_pool2d(x, scale)


def sr_upsample(lr: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic upsampling of ``[B, C, h, w]`` to ``size × size`` (the model's condition; also the
    bicubic baseline of the benchmark).

    Args:
        lr: the low-resolution images.
        size: the output height and width.
    """
    return torch.nn.functional.interpolate(lr.float(), size=(size, size), mode="bicubic", align_corners=False)


def image_to_unit_gray(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE ``[B, H, W, C]`` in [0, 1] → ``[B, 1, H, W]`` luminance in [0, 1] (ITU-R 601).

    Args:
        image: the IMAGE batch.
    """
    x = image.float()
    if x.shape[-1] >= 3:
        x = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    else:
        x = x[..., 0]
    return x.unsqueeze(1).clamp(0.0, 1.0)


def sr_condition_image(lr_unit: torch.Tensor, config: dict[str, Any]) -> torch.Tensor:
    """LR ``[B, 1, h, w]`` in [0, 1] → the concat condition ``[B, 1, H, H]`` in [-1, 1] (bicubic to HR size).
    An input that is not ``lr_size`` is first resized (area) to it, so any image can be fed.

    Args:
        lr_unit: the low-resolution images.
        config: the SR model's config (``lr_size``, ``hr_size``).
    """
    lr = lr_unit.float()
    if lr.shape[-2:] != (config["lr_size"], config["lr_size"]):
        lr = torch.nn.functional.interpolate(lr, size=(config["lr_size"],) * 2, mode="area")
    return sr_upsample(lr * 2.0 - 1.0, config["hr_size"])
