# ComfyUI-DiffIER developer tasks.  Everything runs from the repo-local virtualenv (.venv).
PYTHON_BOOTSTRAP ?= python3.11
VENV        := .venv
PY          := $(VENV)/bin/python
VENV_STAMP  := $(VENV)/.stamp-requirements
TORCH_PINS  := torch==2.14.1 torchvision==0.29.1
PORT        ?= 8188
PYTEST_ARGS ?=

.PHONY: venv runtime serve test lint clean workflows-ui

venv: $(VENV_STAMP)

$(PY):
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)

$(VENV_STAMP): $(PY) requirements-test.txt requirements.txt Makefile
	$(PY) -m pip install --disable-pip-version-check $(TORCH_PINS)
	$(PY) -m pip install --disable-pip-version-check -r requirements-test.txt -r requirements.txt
	touch $@

# Provision ComfyUI 0.3.75 (cached in .cache/, or use $$COMFYUI_PATH) with this pack linked in.
runtime: venv
	$(PY) -m scripts.comfyui_runtime

# Headless ComfyUI on 127.0.0.1:$(PORT) with the pack loaded.
serve: venv runtime
	$(PY) -m scripts.comfyui_runtime --serve --port $(PORT)

test: venv runtime
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

# Regenerate workflows/api/*.json and, through the real frontend in headless Chromium, workflows/*.json.
workflows-ui: venv runtime
	$(PY) workflows/tools/make_api_workflows.py
	$(PY) workflows/tools/make_ui_workflows.py

lint: venv
	$(PY) -m ruff check .

clean:
	rm -rf .cache .pytest_cache .ruff_cache tests/artifacts
