"""The benchmark testbeds ("beds" of :mod:`benchmarks.tuning`'s protocol), each sampling through a real ComfyUI.

* :mod:`.known_score` — a class-conditional GMM with exact scores (:mod:`.gmm`) as a ComfyUI model
  (:mod:`.comfy_model`), in imperfect-model error regimes;
* :mod:`.digits` — the pack's embedded MNIST digits model, scored by a held-out classifier;
* :mod:`.sr` — the pack's embedded super-resolution models (digits ×4, photo patches ×2), scored by PSNR.

The learned-model beds reach the demo models through the loaded pack (``Harness.pack.demo.models``) and their data
through the repository's ``training/`` room (imported by name, ``scripts/file_loader.py``).
"""
