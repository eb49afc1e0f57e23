"""Tooling that makes the demo's shipped weights and scores them (never imported by the pack):

    .venv/bin/python -m training.train_digits     # demo/weights/digits_diffusion.safetensors + the digits classifier
    .venv/bin/python -m training.train_sr --task digits|photos|demo-input

``data`` holds the datasets the demo models are trained and scored on and the digits classifier the benchmarks
score with (``data/digits_classifier.safetensors``); ``loop`` the one training loop both commands share. The
commands run from the repository root, boot ComfyUI in-process (``scripts.comfy_inprocess``) and build the models
with the pack's own ``demo.models``, as ComfyUI loaded the pack. The tests and the benchmarks load this folder by
its path.
"""
