"""Run an API prompt in-process through ComfyUI's own validation and ``execution.PromptExecutor``."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path


def execute_prompt(comfy_loop, prompt: dict, out_dir: Path):
    """The finished ``PromptExecutor`` of ``prompt`` (validated first), its outputs written to ``out_dir``.

    Args:
        comfy_loop: the event loop the nodes run on (the ``comfy_loop`` fixture).
        prompt: the API prompt (not changed).
        out_dir: ComfyUI's output folder for this run.
    """
    import execution
    import folder_paths
    import server

    prompt_id = str(uuid.uuid4())
    valid = comfy_loop.run_until_complete(execution.validate_prompt(prompt_id, copy.deepcopy(prompt), None))
    assert valid[0], valid
    old_out = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(out_dir))
    try:
        executor = execution.PromptExecutor(server.PromptServer.instance, cache_args={"lru": 0, "ram": 0})
        comfy_loop.run_until_complete(executor.execute_async(copy.deepcopy(prompt), prompt_id, {}, valid[2]))
    finally:
        folder_paths.set_output_directory(old_out)
    assert executor.success, executor.status_messages
    return executor
