# `make run` and `make test` each do their own set-up: a .venv is created when missing and the
# pinned environment of requirements.lock installed into it, hashes checked (again whenever the
# lock or pyproject.toml changes). `make lock` regenerates the lock from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# GPU=1 installs requirements-gpu.lock instead: TensorFlow with its CUDA libraries in place of
# tensorflow-cpu (Linux x86_64), every other pin the same. Start from a new venv (`make clean`).
GPU ?=
LOCK := $(if $(GPU),requirements-gpu.lock,requirements.lock)
STAMP := $(VENV)/.installed$(if $(GPU),-gpu)
# The locks: every package pinned with its hashes, resolved for CPython 3.11+ on every platform.
UV := uv==0.13.9
LOCK_ARGS := --extra dev --extra server --extra cluster --extra notebook --universal --python-version 3.11 --generate-hashes
GPU_LOCK_ARGS := $(LOCK_ARGS) --extra gpu --override tools/gpu-overrides.txt
# Stage commands call `python` and `dvc`; they must be the venv's. The recipes below name the
# venv's tools by path as well: macOS's make 3.81 runs a simple command from its own PATH, not
# this one.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test test-fast durations bench activation-cost lint format ui notebook clean lock

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'pip==26.3'
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/dvc repro

# Three workers on two cores, a test file each at a time: the end-to-end tests spend part of
# their time waiting (servers starting, an outage's retry window, DVC's bookkeeping), which a
# third worker can fill. Slowest files first (tests/durations.json): pytest-xdist would otherwise
# start the files with the most tests first, and the one-test end-to-end files last.
test: $(STAMP)
	$(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder

# The unit tier: no training, no server, no stage process; two workers keep it under a minute.
test-fast: $(STAMP)
	$(BIN)/pytest -n 2 tests/unit

# Rewrites tests/durations.json, the per-file times `make test` orders its files by.
durations: $(STAMP)
	$(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder --record-durations

# The tutorial's training path against ours, alternating, on the archive `make run` downloaded
# (or ARCHIVE=/path/to/cifar-10-python.tar.gz). Takes a few minutes; not part of `make test`.
ARCHIVE ?= data/raw/cifar-10-python.tar.gz
bench: $(STAMP)
	$(BIN)/python tools/bench.py --archive $(ARCHIVE)

# Is ReLU cheaper to compute than sigmoid? Each activation alone on the network's shapes, and
# the whole training step, sigmoid and ReLU in alternating pairs. A couple of minutes; run it on
# an idle machine, as a busy one makes the times noisy. Not part of `make test`.
activation-cost: $(STAMP)
	$(BIN)/python tools/activation_cost.py --output reports/studies/claims/activation-cost.json

lint: $(STAMP)
	$(BIN)/ruff check pipeline tools tests notebooks
	$(BIN)/ruff format --check pipeline tools tests notebooks

format: $(STAMP)
	$(BIN)/ruff format pipeline tools tests notebooks
	$(BIN)/ruff check --fix pipeline tools tests notebooks

# The MLflow UI on this repository's store, on 127.0.0.1 only; prints the link to the charts.
ui: $(STAMP)
	$(BIN)/python -m pipeline.ui

# JupyterLab (on localhost) with the notebook that reads your runs back from MLflow.
notebook: $(STAMP)
	$(BIN)/jupyter lab notebooks/explore_runs.ipynb

lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet '$(UV)'
	$(BIN)/uv pip compile pyproject.toml $(LOCK_ARGS) --quiet -o requirements.lock
	@# The main lock's pins as the GPU lock's starting point, so the two differ only where they must.
	cp requirements.lock requirements-gpu.lock
	$(BIN)/uv pip compile pyproject.toml $(GPU_LOCK_ARGS) --quiet -o requirements-gpu.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
