"""The pack's embedded demo: tiny diffusion models shipped in ``weights/`` (built and loaded by ``models``, the SR
image arithmetic in ``degrade``) and their ComfyUI nodes (``nodes``, whose ``DEMO_NODES`` the pack registers). The
tooling that trains the weights and scores the models lives outside the pack, in the repository's ``training/``."""
