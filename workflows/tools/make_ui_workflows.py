"""Regenerate the UI-format workflows (``workflows/*.json``) from the API files with the real frontend.

Each ``workflows/api/<name>.json`` is loaded into the ComfyUI frontend that ComfyUI 0.3.75 pins
(comfyui-frontend-package 1.32.9) with ``app.loadApiJson``, seeds are set to "fixed", the workflow's Note nodes
(``make_api_workflows.UI_NOTES``) are added, and what ``app.graph.serialize()`` returns -- exactly what the
frontend saves -- is written to ``workflows/<name>.json``.

The server lists every model file the workflows name (so the frontend offers them in the loaders' combos):
empty placeholder files in a temporary models folder; nothing is queued, so no weights are read.

    .venv/bin/python -m workflows.tools.make_ui_workflows      # or: make workflows-ui
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from scripts.comfy_server import ComfyServer

from . import frontend
from .make_api_workflows import UI_NOTES

TOOLS = Path(__file__).resolve().parent
WORKFLOWS = TOOLS.parent
REPO_ROOT = WORKFLOWS.parent
log = logging.getLogger("diffier.make_ui_workflows")

#: loader input -> the ComfyUI model folder its file lives in
MODEL_INPUTS = {"ckpt_name": "checkpoints", "unet_name": "diffusion_models", "clip_name": "text_encoders",
                "clip_name1": "text_encoders", "clip_name2": "text_encoders", "vae_name": "vae"}


def placeholder_models(prompts: list[dict], models_dir: Path) -> None:
    """An empty file under ``models_dir/<folder>/`` for every model file the prompts' loaders name."""
    for prompt in prompts:
        for node in prompt.values():
            for name, value in node["inputs"].items():
                if name in MODEL_INPUTS and isinstance(value, str):
                    (models_dir / MODEL_INPUTS[name]).mkdir(parents=True, exist_ok=True)
                    (models_dir / MODEL_INPUTS[name] / value).touch()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    api_files = sorted((WORKFLOWS / "api").glob("*.json"))
    prompts = {api_file: json.loads(api_file.read_text()) for api_file in api_files}
    with tempfile.TemporaryDirectory(prefix="diffier-ui-") as tmp:
        input_dir, models_dir = Path(tmp) / "input", Path(tmp) / "models"
        shutil.copytree(WORKFLOWS / "input", input_dir)
        placeholder_models(list(prompts.values()), models_dir)
        with ComfyServer(models_dir=models_dir, input_dir=input_dir) as server:
            with frontend.browser_page(server.url) as page:
                for api_file, prompt in prompts.items():
                    frontend.load_api_json(page, prompt, api_file.stem)
                    frontend.fix_seeds(page)
                    frontend.wait_for_image_previews(page)
                    for title, text in UI_NOTES.get(api_file.stem, []):
                        frontend.add_note(page, title, text)
                    if frontend.missing_reports(page):
                        raise RuntimeError(f"{api_file.name}: missing nodes {frontend.missing_reports(page)}")
                    out = WORKFLOWS / api_file.name
                    frontend.dump(frontend.serialize(page), out)
                    log.info("wrote %s (%d nodes)", out.relative_to(REPO_ROOT), len(prompt))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
