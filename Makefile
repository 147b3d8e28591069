# The README's two commands: `make run` serves, `make test` tests. Both work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip --disable-pip-version-check -q

.PHONY: run test lint typecheck unit services services-down bench demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev]'
	touch $@ $(VENV)/.installed

## run: serve on 127.0.0.1:9095 with the example configuration and local tokens in ./data/
run: $(VENV)/.installed
	$(BIN)/remediator tokens --dir data/tokens
	$(BIN)/remediator serve --config deploy/remediator.yml

## test: start the real services, then lint, type-check and run the whole suite
test: $(VENV)/.installed-dev services lint typecheck unit

services:
	bash tests/services.sh up

services-down:
	bash tests/services.sh down

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

unit: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## demo: the whole chain on loopback (leaking container -> Prometheus -> Alertmanager -> remediator); Ctrl-C stops it
demo: $(VENV)/.installed-dev services
	$(BIN)/python -m tests.e2e.demo

bench: $(VENV)/.installed-dev services
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
