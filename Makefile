# make test  - set up everything (venv with Python 3.13, pip, npm Azurite), then lint, type-check and test
# make demo  - same set-up, then the product's CLI against the Azure twin, telling the seed's story
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AZURITE := node_modules/.bin/azurite-blob
PYTEST_ARGS ?=

.PHONY: test demo lint typecheck pytest bench clean setup

test: setup lint typecheck pytest

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
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) -m tests.demo

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
