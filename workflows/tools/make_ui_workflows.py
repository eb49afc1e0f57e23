"""Regenerate the UI-format workflows (``workflows/*.json``) from the API files with the real frontend.

Each ``workflows/api/<name>.json`` is loaded into the ComfyUI frontend that ComfyUI 0.3.75 pins
(comfyui-frontend-package 1.32.9) with ``app.loadApiJson``, seeds are set to "fixed", and what
``app.graph.serialize()`` returns -- exactly what the frontend saves -- is written to ``workflows/<name>.json``.

The server needs the checkpoints under the workflows' file names (so the frontend keeps the combo
values): it uses the random-weight test checkpoints (``scripts/checkpoints.py``; built if missing).

    .venv/bin/python -m workflows.tools.make_ui_workflows      # or: make workflows-ui
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from scripts.checkpoints import ensure_checkpoints
from scripts.comfy_server import ComfyServer

from . import frontend

TOOLS = Path(__file__).resolve().parent
WORKFLOWS = TOOLS.parent
REPO_ROOT = WORKFLOWS.parent
log = logging.getLogger("diffier.make_ui_workflows")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    api_files = sorted((WORKFLOWS / "api").glob("*.json"))
    with tempfile.TemporaryDirectory(prefix="diffier-ui-") as tmp:
        input_dir = Path(tmp) / "input"
        shutil.copytree(WORKFLOWS / "input", input_dir)
        with ComfyServer(models_dir=ensure_checkpoints().parent, input_dir=input_dir) as server:
            with frontend.browser_page(server.url) as page:
                for api_file in api_files:
                    prompt = json.loads(api_file.read_text())
                    frontend.load_api_json(page, prompt, api_file.stem)
                    frontend.fix_seeds(page)
                    if frontend.missing_reports(page):
                        raise RuntimeError(f"{api_file.name}: missing nodes {frontend.missing_reports(page)}")
                    out = WORKFLOWS / api_file.name
                    frontend.dump(frontend.serialize(page), out)
                    log.info("wrote %s (%d nodes)", out.relative_to(REPO_ROOT), len(prompt))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
