"""Training commands of the demo models (run from the repository root; they boot ComfyUI in-process):

    .venv/bin/python -m demo.training.train_digits     # demo/weights/digits_diffusion.safetensors + the classifier
    .venv/bin/python -m demo.training.train_sr --task digits|photos|demo-input

Both train through :func:`demo.training.loop.train_eps`. Never needed by the tests or the nodes: the weights ship.
"""
