"""The benchmark testbeds ("beds" of :mod:`benchmarks.tuning`'s protocol), each sampling through a real ComfyUI.

* :mod:`.known_score` — a class-conditional GMM with exact scores (:mod:`.gmm`) as a ComfyUI model
  (:mod:`.comfy_model`), in imperfect-model error regimes;
* :mod:`.digits` — the pack's embedded MNIST digits model, scored by a held-out classifier;
* :mod:`.sr` — the pack's embedded super-resolution models (digits ×4, photo patches ×2), scored by PSNR;
* :mod:`.demo` — the pack's demo models and data, reached through the loaded pack.
"""
