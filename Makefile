# graphrec: the README's commands. Everything runs from the project's own virtual environment (.venv).
#   make install      create .venv with uv and install graphrec (editable) with the dev extras
#   make test         install, check the layering (lint-imports), then run unit + integration tests (a throwaway Neo4j is started and stopped)
#   make demo         install, start Neo4j, load MovieLens, fit + publish the default live model, show explained recommendations
#   make neo4j-start / neo4j-stop / neo4j-status
#   make clean        remove caches and build outputs (keeps .venv; `make distclean` removes it too)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV     := .venv
PY       := $(VENV)/bin/python
GRAPHREC := $(VENV)/bin/graphrec
STAMP    := $(VENV)/.graphrec-installed
# The interpreter the venv is built from: python3.11 when there is one, else python3.
PYTHON   ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
PYTEST_ARGS ?=
# Extra arguments for `graphrec demo` (e.g. DEMO_ARGS="--serve" keeps the API running; DEMO_ARGS="--trainer fuse"
# trains the fused LightGCN + text model instead, for DEMO_EPOCHS epochs).
DEMO_EPOCHS ?= 20
DEMO_ARGS ?=
export UV_PYTHON_DOWNLOADS := never

.PHONY: help install lint test test-unit test-gpu test-integration demo neo4j-start neo4j-stop neo4j-status clean distclean

help:
	@sed -n '2,7p' Makefile | sed 's/^#//'

install: $(STAMP)

$(STAMP): pyproject.toml
	@UV="$$(command -v uv || true)"; \
	if [ -z "$$UV" ] && [ -x "$$HOME/.local/bin/uv" ]; then UV="$$HOME/.local/bin/uv"; fi; \
	if [ -z "$$UV" ]; then \
	  echo "uv not found: installing it with pip"; \
	  $(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --quiet uv; \
	  UV="$$(command -v uv || echo "$$HOME/.local/bin/uv")"; \
	fi; \
	if [ ! -x "$(PY)" ]; then "$$UV" venv --python "$(PYTHON)" $(VENV); fi; \
	"$$UV" pip install --python $(PY) -e '.[dev]'
	@touch $(STAMP)

test: install lint
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS) tests/unit tests/integration

# Layering (import-linter contracts in pyproject.toml): api on top, graph and gnn independent,
# loaders below both, graphrec at the bottom; only graph imports neo4j.
lint: install
	$(VENV)/bin/lint-imports

test-unit: install
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS) tests/unit

# GPU tests (a CUDA machine): the same training / evaluation code path on the device.
test-gpu: install
	$(PY) -m pytest -m gpu $(PYTEST_ARGS) tests/unit

test-integration: install
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS) tests/integration

# The demo's steps live in one place: `graphrec demo` (api/cli/demo_cmd.py).
demo: install
	$(GRAPHREC) demo --epochs $(DEMO_EPOCHS) $(DEMO_ARGS)

neo4j-start: install
	$(GRAPHREC) neo4j start

neo4j-stop: install
	$(GRAPHREC) neo4j stop

neo4j-status: install
	$(GRAPHREC) neo4j status

clean:
	rm -rf build dist .pytest_cache out *.egg-info $(STAMP)
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
