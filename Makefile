# The README's two commands: `make run` serves, `make test` tests. Both work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip --disable-pip-version-check -q
# The pinned versions every install uses (regenerate with `make constraints`).
CONSTRAINTS := constraints.txt

.PHONY: run test lint typecheck unit services services-down bench demo clean constraints rules

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install -c $(CONSTRAINTS) -e '.[dev]'
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

## constraints: re-pin constraints.txt to what the dev venv holds (after changing pyproject.toml:
## `rm -rf .venv && make constraints` re-resolves from the bounds, newest versions first)
constraints: | $(BIN)/python
	$(PIP) install -e '.[dev]'
	{ sed -n '/^#/p' $(CONSTRAINTS); $(BIN)/pip freeze --exclude-editable; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

## rules: regenerate the rules, the PrometheusRule and the dashboards (tests fail on drift); for
## another job, runbook or thresholds: `remediator rules --out DIR --job-selector ... --help`
rules: $(VENV)/.installed-dev
	$(BIN)/python rules/generate.py
	$(BIN)/python deploy/kubernetes/generate.py
	$(BIN)/python grafana/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
