"""Benchmarks of ComfyUI-DiffIER: each runs through a real in-process ComfyUI (``python -m benchmarks.X``)."""
