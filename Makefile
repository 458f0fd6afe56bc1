# The two commands of the README: `make dev` (the bot on embedded defaults) and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
FAUST  := $(BIN)/faust

.PHONY: dev test lint stop status install wajs

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "wabot needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed | wajs
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed

## wajs: fetch the pinned WA-JS bundle (pipeline/wajs/node_modules, not committed) with npm.
wajs:
	cd pipeline/wajs && npm install --no-audit --no-fund

## dev: start the embedded broker (Tansu) and a worker on it; Ctrl-C stops the worker.
dev: $(VENV)/.installed
	$(FAUST) -A pipeline broker start --kind embedded
	$(FAUST) -A pipeline worker

## stop: stop the brokers this project started.
stop:
	-$(FAUST) -A pipeline broker stop --kind embedded
	-$(FAUST) -A pipeline broker stop --kind kafka

status:
	-$(FAUST) -A pipeline broker status --kind embedded
	-$(FAUST) -A pipeline broker status --kind kafka

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## test: lint, type checks, then every test (unit, integration on Apache Kafka and Tansu).
test: lint
	$(BIN)/pytest $(PYTEST_ARGS)
