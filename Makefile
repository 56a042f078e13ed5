# Two commands for a new user: `make demo` (set up + run the main job) and `make test`.
# Everything goes into a local virtual environment; both are idempotent and fast the second time.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build by default (a wheel on this machine's disk); GPU users: make setup TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
export XCOS_XAI_DATA ?= $(abspath ../shared/data)

.PHONY: setup demo test lint clean-venv

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

lint: setup
	$(PY) -m ruff check .

test: setup lint
	$(PY) -m pytest -q --durations=10 -p no:cacheprovider --doctest-modules tests xcos_xai

clean-venv:
	rm -rf $(VENV)
