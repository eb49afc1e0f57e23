"""The data the demo models were trained on and are scored with (pure torch/numpy; no ComfyUI):
``digits`` (MNIST 5k split, the metrics classifier) and ``sr`` (super-resolution HR images)."""

from . import digits, sr

__all__ = ["digits", "sr"]
