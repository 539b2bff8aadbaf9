# The two commands of the README:  make run   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test setup setup-test bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

setup: $(BIN)/.installed
	scripts/system-packages.sh run

setup-test: $(BIN)/.installed
	scripts/system-packages.sh test

## Run the portal with its embedded defaults: Redis (started if none runs), migrations, a worker and the web server.
run: setup
	$(BIN)/python -m testbed.demo

## Run the whole test suite against real Redis, PostgreSQL and Chromium, started by the harness.
test: setup-test
	$(BIN)/pytest

bench: setup-test
	$(BIN)/python -m benchmarks.list_pages

clean:
	rm -rf $(VENV) .pytest_cache
