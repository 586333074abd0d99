# make test  - set up everything (venv with Python 3.13, pip, npm Azurite), then lint, type-check and test
# make demo  - same set-up, then the product's CLI against the Azure twin, telling the seed's story
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AZURITE := node_modules/.bin/azurite-blob
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
PYTEST_ARGS ?=

.PHONY: test demo lint typecheck pytest bench clean setup infra-check lock scenarios chaos

test: setup lint typecheck infra-check pytest

setup: $(STAMP) $(AZURITE)

$(STAMP): requirements.txt requirements-dev.txt
	@set -e; python=$$(.ci/find-python); echo "Using $$python"; \
	  [ -x $(PY) ] || "$$python" -m venv $(VENV); \
	  $(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip; \
	  $(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(AZURITE): package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy shared function_app.py tests bench

pytest: $(STAMP) $(AZURITE)
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)  # the 15 slowest tests: where the suite's time goes

# Bicep gate: every .bicep parses (pycep-parser), checkov's policies pass offline (skips and reasons: infra/).
infra-check: $(STAMP) $(CHECKOV)
	$(PY) -m infra.gate --checkov $(CHECKOV)

# checkov has its own venv: its pinned dependencies (an older pycep-parser among them) clash with ours.
$(CHECKOV): infra/checkov-requirements.txt
	@set -e; python=$$(.ci/find-python); \
	  [ -x $(CHECKOV_VENV)/bin/python ] || "$$python" -m venv $(CHECKOV_VENV); \
	  $(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/checkov-requirements.txt
	@touch $@

# The hashed lock the deployment installs from (azd packages it as requirements.txt; infra/scripts/stage_package.py).
lock: $(STAMP)
	$(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
	  --no-emit-find-links --output-file requirements.lock requirements.txt

demo: setup
	$(PY) -m tests.demo

# The simulated year under chaos (docs/reliability.md): 365 days, 20 targets; `make test` runs 14 days of it.
CHAOS_ARGS ?= --seed 1 --days 365 --targets 20 --health-hours 24
chaos: setup
	$(PY) -m tests.chaos $(CHAOS_ARGS)

# Every benchmark in fresh processes against the twin and Azurite; writes docs/performance.md (about 12 minutes on
# 2 cores; BENCH_FLEET_SIZES, BENCH_FLEET_WORKERS, BENCH_ROUNDS, BENCH_BASELINE override). make test runs them tiny.
bench: setup
	$(PY) -m bench

scenarios: setup  # regenerate docs/scenarios/ from the CLI's real output (tests check it for drift)
	$(PY) -m tests.scenarios --write

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
