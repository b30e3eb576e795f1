# Two commands on a fresh machine with Python 3.11+ and make:
#   make demo   creates .venv, installs sms-flow, drives a wave against the embedded simulator
#   make test   the same install, then ruff, mypy and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench diagram clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "sms-flow needs Python 3.11 or newer; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sms-flow run examples/wave.yaml --fresh

LINTED := sms_flow tests examples $(wildcard benchmarks)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# Strict mypy over sms_flow and tests ([tool.mypy] files), tests/typing/api.py included: the
# public API used as the README uses it, type-checked and never run.
typecheck: $(STAMP)
	$(BIN)/mypy

# Two test processes (pytest-xdist): most tests wait on subprocesses, servers and the
# network, so two share the machine's cores well; PYTEST_WORKERS=0 runs them in one.
PYTEST_WORKERS ?= 2

pytest: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

diagram: $(STAMP)
	$(BIN)/sms-flow diagram --format markdown --output statecharts/sms-source.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
