# Every target installs what it needs: a .venv and, where a test needs one, Debian packages.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
APT_PKGS := docker-registry hey wrk skopeo
SHELL   := /bin/bash

.PHONY: all venv apt lint typecheck unit chart-test test demo bench clean

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the benchmarks use. apt-get needs root (CI and dev machines run as root).
apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

lint: venv
	$(BIN)/ruff check swapper tests benchmarks
	$(BIN)/ruff format --check swapper tests benchmarks
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy swapper

unit: venv
	$(BIN)/pytest -q --ignore=tests/chart

# The Helm chart: lint, render with tests/chart/values/*, validate every object against the
# Kubernetes OpenAPI schemas, assert its safety properties (Helm from the helm-python-sdk wheel).
chart-test: venv
	$(BIN)/pytest -q tests/chart

test: apt lint typecheck unit chart-test

demo: venv apt
	$(BIN)/python tests/demo.py

bench: venv apt
	@dpkg -s valgrind >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind)
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.instructions
	$(BIN)/python -m benchmarks.copy
	$(BIN)/python -m benchmarks.ecr_calls

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
