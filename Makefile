# `make run` and `make test` each do their own set-up: a .venv is created when missing and the
# project installed into it (again whenever pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands call `python` and `dvc`; they must be the venv's.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test test-fast bench lint format ui clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	dvc repro

test: $(STAMP)
	pytest

test-fast: $(STAMP)
	pytest -m "not slow"

# The tutorial's training path against ours, alternating, on the archive `make run` downloaded
# (or ARCHIVE=/path/to/cifar-10-python.tar.gz). Takes a few minutes; not part of `make test`.
ARCHIVE ?= data/raw/cifar-10-python.tar.gz
bench: $(STAMP)
	python -m pipeline.bench --archive $(ARCHIVE)

lint: $(STAMP)
	ruff check pipeline tests
	ruff format --check pipeline tests

format: $(STAMP)
	ruff format pipeline tests
	ruff check --fix pipeline tests

ui: $(STAMP)
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
