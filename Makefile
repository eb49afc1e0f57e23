# ComfyUI-DiffIER developer tasks.  Everything runs from the repo-local virtualenv (.venv).
PYTHON_BOOTSTRAP ?= python3.11
VENV        := .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip install --disable-pip-version-check
# Two install levels: `make serve` needs only torch + ComfyUI's requirements (requirements-serve.txt);
# `make test` adds the test tools and benchmark stacks (requirements-test.txt). Each stamp is redone
# only when its requirements file changes; installing more never uninstalls anything.
SERVE_STAMP := $(VENV)/.stamp-serve
TEST_STAMP  := $(VENV)/.stamp-test
PORT        ?= 8188
PYTEST_ARGS ?=
# `make test COMFYUI_PATH=/path/to/ComfyUI` runs the integration subset that works on any ComfyUI checkout
# (in-process sampling, every sampler x grad mode, the adapter's touch points) against that checkout;
# see docs/COMPATIBILITY.md. Without COMFYUI_PATH, the whole suite on ComfyUI 0.3.75.
COMPAT_TESTS ?= tests/test_comfy_adapter.py tests/test_samplers_grad_modes.py tests/test_nodes.py
# The real-browser tests (tests/test_workflows_browser.py) drive a system Chromium.
CHROMIUM_APT := apt-get install -y --no-install-recommends chromium
CHROMIUM_CANDIDATES ?= /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome

.PHONY: venv venv-serve runtime serve test test-fast lint clean workflows-ui chromium fresh-test

venv: $(TEST_STAMP)

venv-serve: $(SERVE_STAMP)

$(PY):
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)

$(SERVE_STAMP): requirements-serve.txt requirements.txt | $(PY)
	$(PIP) -r requirements-serve.txt
	touch $@

$(TEST_STAMP): $(SERVE_STAMP) requirements-test.txt
	$(PIP) -r requirements-test.txt
	touch $@

# Nothing to do when /usr/bin/chromium (or another browser workflows/tools/frontend.py finds) exists or
# DIFFIER_CHROMIUM names one; as root, installs Debian's chromium; otherwise says what to run.
chromium:
	@if [ -n "$$DIFFIER_CHROMIUM" ]; then \
	    [ -f "$$DIFFIER_CHROMIUM" ] || { echo "DIFFIER_CHROMIUM=$$DIFFIER_CHROMIUM is not a file: point it to a Chromium binary" >&2; exit 1; }; \
	elif for c in $(CHROMIUM_CANDIDATES); do [ -f "$$c" ] && break; done || command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Chromium for the browser tests: apt-get update && $(CHROMIUM_APT)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(CHROMIUM_APT) -qq; \
	else \
	    echo "make test needs Chromium for tests/test_workflows_browser.py: run 'sudo apt-get update && sudo $(CHROMIUM_APT)' (or set DIFFIER_CHROMIUM=/path/to/chromium), then make test again" >&2; \
	    exit 1; \
	fi

# Provision ComfyUI 0.3.75 (cached in .cache/, or use $$COMFYUI_PATH) with this pack linked in.
runtime: $(SERVE_STAMP)
	$(PY) -m scripts.comfyui_runtime

# Headless ComfyUI on 127.0.0.1:$(PORT) with the pack loaded.
serve: runtime
	$(PY) -m scripts.comfyui_runtime --serve --port $(PORT)

test: chromium venv runtime
	$(PY) -m pytest -q $(if $(COMFYUI_PATH),$(COMPAT_TESTS),tests) $(PYTEST_ARGS)

# The tests that need no ComfyUI (pure math, torch only, the tools' logic): nothing provisioned, nothing of ComfyUI
# imported (tests/conftest.py --without-comfyui; tests marked `integration` are left out).
test-fast: venv
	$(PY) -m pytest -q --without-comfyui tests $(PYTEST_ARGS)

# A new user's `make test`: clone the committed HEAD into a temporary folder and run `make test` there
# with nothing reused (its own .venv and .cache, no pip cache); prints the pytest summary and the time.
fresh-test:
	@scripts/fresh_test.sh

# Regenerate workflows/api/*.json and, through the real frontend in headless Chromium, workflows/*.json.
workflows-ui: chromium venv runtime
	$(PY) workflows/tools/make_api_workflows.py
	$(PY) -m workflows.tools.make_ui_workflows

# ruff on everything; mypy (strict, settings in pyproject.toml) on the product code, which it checks through a link
# that gives the pack one fixed package name.
lint: venv
	$(PY) -m ruff check .
	mkdir -p .cache/mypy && ln -sfn ../.. .cache/mypy/comfyui_diffier
	$(PY) -m mypy

clean:
	rm -rf .cache .pytest_cache .ruff_cache tests/artifacts
