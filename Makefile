# Two entry points for a fresh machine: `make run` and `make test`.
# Each creates the virtual environments it needs and installs pinned packages: the lock files
# requirements*.txt carry a sha256 hash for every file (`make lock` writes them from the .in
# files) and every install is `pip install --require-hashes`. pip itself is not upgraded from
# the index: that would be the one download without a hash.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venv-vllm
TOOLS_VENV := .venv-tools
PY := $(VENV)/bin/python

.PHONY: run test test-fast lint format bench bench-goals venv vllm-venv tools-venv lock prereqs browsers clean

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements-dev.txt
	touch $@

# vLLM (CPU build) lives in its own venv: it pins torch/transformers/fastapi
# versions that must not constrain the web app's dependencies.
vllm-venv: $(VLLM_VENV)/.installed
# (the script also removes the CUDA-only torchvision/torchaudio the index offers, which
# would break `import transformers` next to CPU torch, and checks that vLLM imports)
$(VLLM_VENV)/.installed: requirements-vllm.txt scripts/setup_vllm_venv.sh
	PYTHON=$(PYTHON) ./scripts/setup_vllm_venv.sh $(VLLM_VENV)
	touch $@

# Linters/validators for the delivery checks (checkov, hadolint, kubernetes-validate, shellcheck).
tools-venv: $(TOOLS_VENV)/.installed
$(TOOLS_VENV)/.installed: requirements-tools.txt
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install -q --require-hashes -r requirements-tools.txt
	touch $@

# requirements*.in -> the hashed lock files requirements*.txt (uv from .venv-tools; needs the
# package index). Run after editing a .in file; commit both.
lock: tools-venv
	./scripts/lock_requirements.sh

## make run: local vLLM (embedded default) + the app; LLM_URL=... skips the local vLLM
run: venv
	@if [ -z "$$LLM_URL" ]; then $(MAKE) --no-print-directory vllm-venv; fi
	./scripts/run_local.sh

# What make test needs from the system (Chromium, kubectl): one line each on how to install
# what is missing, before any venv is built.
prereqs:
	./scripts/check_prereqs.sh

## make test: everything CI runs (unit, fakes, real vLLM, Chromium e2e, delivery checks)
test: prereqs venv vllm-venv tools-venv
	$(VENV)/bin/ruff check webapp tests bench scripts
	$(VENV)/bin/python -m pytest

test-fast: venv
	$(VENV)/bin/python -m pytest -m "not vllm and not e2e and not delivery"

lint: venv
	$(VENV)/bin/ruff check webapp tests bench scripts
	$(VENV)/bin/ruff format --check webapp tests bench scripts

format: venv
	$(VENV)/bin/ruff format webapp tests bench scripts
	$(VENV)/bin/ruff check --fix webapp tests bench scripts

## make bench: benchmarks (not part of make test)
bench: venv vllm-venv
	$(VENV)/bin/python -m bench

## make bench-goals: issue 12's chat-tier goals at --stream-interval 1 and 4, one run (~6-9 min)
bench-goals: venv
	$(VENV)/bin/python -m bench.goals --out bench/results/goals-latest.md

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(TOOLS_VENV) .run .models
