"""Run an API workflow through ComfyUI's real ``execution.PromptExecutor`` in this process, with the outputs of its
loader nodes replaced by tiny models (``tiny_models.make_pipeline``); every other node is ComfyUI's or the pack's own.

For workflows whose full-size models a 2-core CI machine cannot build or sample (SDXL, Flux dev): each loader node
(``CheckpointLoaderSimple``, ``UNETLoader``, ``DualCLIPLoader``, ``VAELoader``) runs as a stand-in, a subclass of
ComfyUI's own loader class with its inputs, outputs and validation, that accepts only the model files the caller
names and returns the tiny pipeline's MODEL / CLIP / VAE instead of reading them. Validation
(``execution.validate_prompt``), execution, caching and the saved files are ComfyUI's.

Needs the in-process ComfyUI of ``conftest.py`` (the ``comfy_nodes`` and ``comfy_loop`` fixtures).
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["LOADERS", "run_with_tiny_loaders", "saved_image_path"]

#: loader class -> (its model-file inputs, the TinyPipeline fields it returns, in its output order)
LOADERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "CheckpointLoaderSimple": (("ckpt_name",), ("model", "clip", "vae")),
    "UNETLoader": (("unet_name",), ("model",)),
    "DualCLIPLoader": (("clip_name1", "clip_name2"), ("clip",)),
    "VAELoader": (("vae_name",), ("vae",)),
}


def _stand_in(real: type, class_type: str, pipeline, files: dict[str, str]) -> type:
    """``real`` (a V1 loader class) accepting only ``files`` and returning ``pipeline``'s parts."""
    file_inputs, fields = LOADERS[class_type]

    class StandIn(real):
        FUNCTION = "load_tiny"

        @classmethod
        def INPUT_TYPES(cls) -> dict:  # noqa: N802 - ComfyUI's name
            spec = copy.deepcopy(real.INPUT_TYPES())
            for name in file_inputs:
                spec["required"][name] = ([files[name]], *spec["required"][name][1:])
            return spec

        def load_tiny(self, **inputs) -> tuple:
            return tuple(getattr(pipeline, field) for field in fields)

    StandIn.__name__ = StandIn.__qualname__ = f"Tiny{class_type}"
    return StandIn


@contextlib.contextmanager
def _stand_ins(comfy_nodes, classes: dict[str, type]) -> Iterator[None]:
    """ComfyUI's node registry with ``classes`` in place of the loaders of the same names, restored afterwards."""
    saved = dict(comfy_nodes.NODE_CLASS_MAPPINGS)
    try:
        comfy_nodes.NODE_CLASS_MAPPINGS.update(classes)
        yield
    finally:
        comfy_nodes.NODE_CLASS_MAPPINGS.clear()
        comfy_nodes.NODE_CLASS_MAPPINGS.update(saved)


def run_with_tiny_loaders(comfy_nodes, comfy_loop, prompt: dict, pipeline, files: dict[str, str],
                          output_dir: Path) -> dict:
    """Validate and execute ``prompt`` as ComfyUI's server does, on a worker thread as its prompt worker does (so a
    caller inside another event loop, Playwright's, can use it); return the history ``outputs`` (per node UI output).

    Args:
        prompt: an API-format workflow.
        pipeline: a ``tiny_models.TinyPipeline``; each loader node of ``prompt`` returns its parts.
        files: the model file each loader input must name (``{"ckpt_name": "sd_xl_base_1.0.safetensors"}``); any
            other name fails validation as a missing file does on a server.
        output_dir: where SaveImage writes.
    """
    import folder_paths

    used = {v["class_type"] for v in prompt.values()} & set(LOADERS)
    classes = {c: _stand_in(comfy_nodes.NODE_CLASS_MAPPINGS[c], c, pipeline, files) for c in used}
    old_output = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(output_dir))
    try:
        with _stand_ins(comfy_nodes, classes), ThreadPoolExecutor(1, thread_name_prefix="prompt_worker") as worker:
            return worker.submit(_validate_and_execute, comfy_loop, prompt).result()
    finally:
        folder_paths.set_output_directory(old_output)


def _validate_and_execute(loop, prompt: dict) -> dict:
    import execution
    import server

    prompt_id = str(uuid.uuid4())
    valid = loop.run_until_complete(execution.validate_prompt(prompt_id, copy.deepcopy(prompt), None))
    if not valid[0]:
        raise AssertionError(f"the prompt fails validation: {valid[1]} {valid[3]}")
    executor = execution.PromptExecutor(server.PromptServer.instance, cache_args={"lru": 0, "ram": 0})
    loop.run_until_complete(executor.execute_async(copy.deepcopy(prompt), prompt_id, {}, valid[2]))
    if not executor.success:
        raise AssertionError(f"the prompt failed: {executor.status_messages}")
    return executor.history_result["outputs"]


def saved_image_path(output_dir: Path, image: dict) -> Path:
    """Path of a SaveImage record (``{"filename", "subfolder", "type": "output"}``) under ``output_dir``."""
    return output_dir / image.get("subfolder", "") / image["filename"]
