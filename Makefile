# Every target installs what it needs: a .venv and, where a test needs one, Debian packages.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
APT_PKGS := docker-registry hey wrk skopeo chromium prometheus containerd runc \
            containernetworking-plugins busybox-static iptables
SHELL   := /bin/bash

.PHONY: all venv apt lint typecheck unit chart-test kube-binaries supply-binaries e2e test demo bench clean image image-test release

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

unit: venv apt kube-binaries supply-binaries
	$(BIN)/pytest -q --ignore=tests/chart --ignore=tests/e2e --ignore=tests/image

# The Helm chart: lint, render with tests/chart/values/*, validate every object against the
# Kubernetes OpenAPI schemas, assert its safety properties (Helm from the helm-python-sdk wheel).
chart-test: venv apt
	$(BIN)/pytest -q tests/chart

# The real control plane for the end-to-end tests: kube-apiserver and kubectl built with Go from
# k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, each at a pinned release, once, into
# $(E2E_CACHE) (outside the work tree, keyed by version); and the kubelet of each release for the
# node tests (tests/e2e/node.py, with Debian's containerd 1.6: kubelet 1.38 drops containerd 1.6,
# so 1.37 is the newest). About 15 minutes on a fresh 2-core machine for both Kubernetes
# versions, a few more for the kubelets; nothing once cached.
E2E_CACHE ?= $(HOME)/.cache/swapper-e2e
KUBE_VERSIONS ?= $(shell $(PY) tests/e2e/binaries.py --list)
kube-binaries:
	SWAPPER_E2E_CACHE=$(E2E_CACHE) $(PY) tests/e2e/binaries.py --versions $(KUBE_VERSIONS)

# The supply-chain tools the referrer tests (tests/supply) run: cosign, oras, and a registry that
# serves the OCI 1.1 referrers API (a few lines of Go main around go-containerregistry's
# pkg/registry, generated in the cache), each built with Go at a pinned release, once, into
# $(E2E_CACHE)/supply (keyed by version). A few minutes on a fresh machine; nothing once cached.
supply-binaries:
	SWAPPER_E2E_CACHE=$(E2E_CACHE) $(PY) tests/supply/tools.py

# The end-to-end tests: the chart installed into a real API server that calls swapper serve;
# the whole suite once per Kubernetes version in KUBE_VERSIONS (newest and oldest claimed).
e2e: venv apt kube-binaries
	@set -e; for version in $(KUBE_VERSIONS); do \
	  echo "== end-to-end tests on Kubernetes $$version"; \
	  SWAPPER_E2E_CACHE=$(E2E_CACHE) SWAPPER_E2E_KUBE=$$version $(BIN)/pytest -q -rs tests/e2e; \
	done

# The container image, built from the Dockerfile with buildah (no Docker daemon; Debian's buildah
# and debootstrap are installed when missing). By default on a Debian bookworm base made with
# debootstrap once and cached in $(IMAGE_CACHE), keyed by its package list; with
# PYTHON_IMAGE=python:3.11-slim-bookworm on the public base, where it can be pulled. The tag is
# localhost/swapper:<pyproject.toml version>. See docs/image.md.
IMAGE_CACHE ?= $(HOME)/.cache/swapper-image
image:
	SWAPPER_IMAGE_CACHE=$(IMAGE_CACHE) PYTHON_IMAGE=$(PYTHON_IMAGE) $(PY) tests/image/imagebuild.py image

# The image built, inspected and run (swapper serve answering /readyz and /mutate over TLS from
# inside it), pushed and mirrored between two local registries; the chart packaged, pushed as an
# OCI artifact, rendered back and installed from it into the real API server.
image-test: venv apt kube-binaries
	SWAPPER_IMAGE_CACHE=$(IMAGE_CACHE) PYTHON_IMAGE=$(PYTHON_IMAGE) $(BIN)/pytest -q tests/image

# make release REGISTRY=registry.internal/platform: the image pushed as REGISTRY/swapper:<version>
# and the chart as oci://REGISTRY/charts/swapper (version and appVersion the same), its default
# image.repository REGISTRY/swapper. buildah and Helm use their usual credentials
# (buildah login, ~/.config/helm/registry/config.json). INSECURE=1: a plain-HTTP registry.
release: venv
	@test -n "$(REGISTRY)" || { echo "usage: make release REGISTRY=host/path [INSECURE=1]"; exit 2; }
	SWAPPER_IMAGE_CACHE=$(IMAGE_CACHE) PYTHON_IMAGE=$(PYTHON_IMAGE) \
	  $(BIN)/python tests/image/imagebuild.py release $(REGISTRY) $(if $(INSECURE),--insecure)

test: apt lint typecheck unit chart-test e2e image-test

demo: venv apt
	$(BIN)/python tests/demo.py

# The peers (crane, regctl, k8s-image-swapper, aioregistry; benchmarks/peers.py) are built once at
# pinned releases into $(SWAPPER_BENCH_CACHE), outside the work tree; GNU time gives each copy's
# peak RSS, perf profiles swapper mirror. See docs/benchmarks.md.
bench: export SWAPPER_BENCH_CACHE ?= $(HOME)/.cache/swapper-bench
bench: venv apt kube-binaries supply-binaries
	@dpkg -s valgrind >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind)
	@dpkg -s time linux-perf >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time linux-perf)
	$(PY) -m benchmarks.peers
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.instructions
	$(BIN)/python -m benchmarks.copy
	$(BIN)/python -m benchmarks.referrers
	$(BIN)/python -m benchmarks.startup
	$(BIN)/python -m benchmarks.fleet
	$(BIN)/python -m benchmarks.ecr_calls
	$(BIN)/python -m benchmarks.soak
	$(BIN)/python -m benchmarks.controller
	$(BIN)/python -m benchmarks.cleanup

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
