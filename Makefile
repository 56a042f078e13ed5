# Two commands for a new user: `make demo` (set up + run the main job) and `make test`.
# Everything goes into a local virtual environment; both are idempotent and fast the second time.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build by default (a wheel on this machine's disk); GPU users: make setup TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
export XCOS_XAI_DATA ?= $(abspath ../shared/data)

.PHONY: setup demo test lint browser clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" -e ".[dev,notebooks]" 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip check
	$(PY) -c "import torch, captum, plotly, dlib, xcos_xai; print('environment ready: torch', torch.__version__)"
	@touch $@

demo: setup
	$(VENV)/bin/xcos-xai demo --out outputs/demo

# ruff, then the import contracts (pyproject.toml [tool.importlinter]: one-way layers).
lint: setup
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

# Debian's Chromium for tests/test_browser.py (Playwright's own browser download is not used).
# Installed here as root (CI) when missing; otherwise only said how: the test then skips on a
# developer machine and fails in CI (CI=true).
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium >/dev/null; \
	else \
	  echo "chromium is not installed, so the browser test will skip (and fail in CI):"; \
	  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium"; \
	fi

# The unit tests first (they warm the feature and chip caches), then the notebooks with nbval:
# cells marked NBVAL_CHECK_OUTPUT must reproduce their stored output.
test: setup lint browser
	$(PY) -m pytest -q --durations=10 -p no:cacheprovider --doctest-modules tests xcos_xai
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env notebooks

clean-venv:
	rm -rf $(VENV)
