"""Drive the real ComfyUI frontend (the version ComfyUI's requirements.txt pins) in headless Chromium.

Used by ``make_ui_workflows.py`` (API JSON -> what the frontend saves) and by the browser tests.
Needs Python ``playwright`` and a system Chromium (Debian: ``apt-get install chromium``); Playwright's
own browser download is never used.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-dev-shm-usage"]

# Installed once per page: records every "missing node types" report the app makes.
_HOOKS = """() => {
  window.__diffier = {missing: [], runs: [], errors: []};
  const app = window.app;
  const orig = app.showMissingNodesError.bind(app);
  app.showMissingNodesError = (types) => { window.__diffier.missing.push(types); return orig(types); };
  app.api.addEventListener('execution_success', (e) => window.__diffier.runs.push(e.detail));
  app.api.addEventListener('execution_error', (e) => window.__diffier.errors.push(e.detail));
}"""


def chromium_path() -> str:
    env = os.environ.get("DIFFIER_CHROMIUM")
    for cand in ([env] if env else []) + list(CHROMIUM_CANDIDATES):
        if cand and Path(cand).is_file():
            return cand
    found = shutil.which("chromium")
    if found:
        return found
    raise FileNotFoundError("no Chromium found (apt-get install chromium, or set DIFFIER_CHROMIUM)")


@contextlib.contextmanager
def browser_page(url: str, timeout_ms: int = 120_000, viewport=(1600, 1000)) -> Iterator[Any]:
    """A page with the ComfyUI app at ``url`` loaded, its first-run dialogs dismissed and hooks installed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.set_default_timeout(timeout_ms)
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_function("() => window.app && window.app.graph && window.app.canvas "
                                   "&& window.LiteGraph && Object.keys(LiteGraph.registered_node_types).length > 100")
            dismiss_dialogs(page)
            page.evaluate(_HOOKS)
            yield page
        finally:
            browser.close()


def dismiss_dialogs(page, rounds: int = 5) -> None:
    """Close the Templates dialog the first load opens (and any other modal) with Escape."""
    for _ in range(rounds):
        page.wait_for_timeout(500)
        dialogs = page.locator(".p-dialog")
        if dialogs.count() == 0:
            return
        close = page.locator(".p-dialog button[aria-label='Close'], .p-dialog .p-dialog-close-button, "
                             ".p-dialog button:has(.pi-times)")
        if close.count():
            close.first.click()
        else:
            page.keyboard.press("Escape")
    if page.locator(".p-dialog").count():
        raise RuntimeError(f"a dialog stays open: {page.locator('.p-dialog').first.inner_text()[:500]}")


def load_api_json(page, prompt: dict, name: str) -> None:
    page.evaluate("([p, n]) => window.app.loadApiJson(p, n)", [prompt, name])
    page.wait_for_function("(n) => window.app.graph.nodes.length === n", arg=len(prompt))


def wait_for_image_previews(page, timeout_ms: int = 60_000) -> None:
    """Wait until every Load Image node shows its image (``node.imgs`` loaded), so the node's saved size includes
    the preview whatever the page's speed."""
    page.wait_for_function("""() => window.app.graph.nodes.filter(n => n.type === 'LoadImage').every(
      n => n.imgs?.length && n.imgs.every(img => img.complete && img.naturalWidth > 0))""", timeout=timeout_ms)
    page.wait_for_timeout(300)


def load_file(page, path: Path, expected_nodes: int) -> None:
    """Open a workflow file as the Workflow > Open menu does (the app's hidden file input)."""
    page.set_input_files("#comfy-file-input", str(path))
    page.wait_for_function("(n) => window.app.graph.nodes.length === n", arg=expected_nodes)
    page.wait_for_timeout(300)


def fix_seeds(page) -> None:
    """Set every seed's "control after generate" to fixed, so the shipped workflows reproduce."""
    page.evaluate("""() => {
      for (const node of window.app.graph.nodes)
        for (const w of node.widgets ?? [])
          if (w.name === 'control_after_generate') w.value = 'fixed';
    }""")


def add_note(page, title: str, text: str, size=(460, 300), gap: int = 60) -> None:
    """Add a Note node (UI only: the API format has none) with ``title`` and ``text``, right of the graph's top."""
    page.evaluate("""([title, text, size, gap]) => {
      const graph = window.app.graph;
      let x1 = -Infinity, y0 = Infinity;
      for (const n of graph.nodes) { x1 = Math.max(x1, n.pos[0] + n.size[0]); y0 = Math.min(y0, n.pos[1]); }
      const note = LiteGraph.createNode('Note');
      note.title = title;
      note.widgets[0].value = text;
      graph.add(note);
      note.pos = [x1 + gap, y0];
      note.size = size;
      graph.setDirtyCanvas(true, true);
    }""", [title, text, list(size), gap])


def graph_to_prompt(page) -> dict:
    """The API prompt the frontend makes of the open graph (what its Run button sends): ``app.graphToPrompt()``."""
    return page.evaluate("async () => JSON.parse(JSON.stringify((await window.app.graphToPrompt()).output))")


def serialize(page) -> dict:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.app.graph.serialize()))")


def missing_reports(page) -> list:
    return page.evaluate("() => window.__diffier.missing")


def set_widgets(page, node_id: int | str, **values) -> None:
    page.evaluate("""([id, values]) => {
      const node = window.app.graph.getNodeById(id);
      for (const [name, value] of Object.entries(values)) {
        const w = node.widgets.find((w) => w.name === name);
        if (!w) throw new Error(`node ${id} has no widget ${name}`);
        w.value = value; w.callback?.(value);
      }
      window.app.graph.setDirtyCanvas(true, true);
    }""", [int(node_id), values])


def graph_summary(page) -> dict:
    """Node ids -> type, and the links as (origin id, origin slot, target id, target slot, type)."""
    return page.evaluate("""() => {
      const g = window.app.graph;
      const nodes = Object.fromEntries(g.nodes.map((n) => [String(n.id), n.type]));
      const links = [];
      for (const l of (g.links instanceof Map ? g.links.values() : Object.values(g.links ?? {})))
        if (l) links.push([l.origin_id, l.origin_slot, l.target_id, l.target_slot, l.type]);
      return {nodes, links};
    }""")


def dump(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def fit_view(page, margin: int = 40, top: int = 140, left: int = 90) -> None:
    """Zoom and pan the canvas so the whole graph is visible (for screenshots)."""
    page.evaluate("""([margin, top, left]) => {
      const app = window.app, nodes = app.graph.nodes;
      if (!nodes.length) return;
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const n of nodes) {
        x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
        x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
      }
      const el = app.canvas.canvas, w = el.clientWidth, h = el.clientHeight;
      const scale = Math.min(1, (w - left - margin) / (x1 - x0), (h - top - margin) / (y1 - y0));
      app.canvas.ds.scale = scale;
      app.canvas.ds.offset = [left / scale - x0, top / scale - y0];
      app.canvas.setDirty(true, true);
    }""", [margin, top, left])
    page.wait_for_timeout(300)


def queue_from_page(page, timeout_ms: int = 600_000) -> dict:
    """Click the Run (queue) button and wait for the run to finish; returns the execution_success detail."""
    before = page.evaluate("() => window.__diffier.runs.length")
    button = page.locator("[data-testid='queue-button']").first
    button.locator("button").first.click() if button.locator("button").count() else button.click()
    page.wait_for_function("(n) => window.__diffier.runs.length > n || window.__diffier.errors.length > 0",
                           arg=before, timeout=timeout_ms)
    errors = page.evaluate("() => window.__diffier.errors")
    if errors:
        raise RuntimeError(f"the queued workflow failed: {json.dumps(errors)[:4000]}")
    return page.evaluate("() => window.__diffier.runs.at(-1)")
