# The two commands of the README:  make run   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test setup setup-test testbed-binaries testbed-base-image image testbed-up testbed-down bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

setup: $(BIN)/.installed
	scripts/system-packages.sh run

setup-test: $(BIN)/.installed
	scripts/system-packages.sh test

## Run the whole chain on this machine: Redis, the registry, dev and ops clusters, migrations, workers, the web server.
run: setup
	$(BIN)/python -m testbed.demo

## The testbed's Kubernetes binaries, built once per machine from the Go module proxy (minutes when cold), and its
## search engines (OpenSearch, Elasticsearch) from Maven Central's jars (Java 17 and Maven).
testbed-binaries: $(BIN)/.installed
	$(BIN)/python -m testbed.binaries build etcd kube-apiserver kube-controller-manager kube-scheduler kwok helm metrics-server
	$(BIN)/python -m testbed.search build

## The offline Python base image of the application templates (debootstrap, once per machine; about 2 min cold).
testbed-base-image: setup-test
	$(BIN)/python -m testbed.base_image build

## The portal's image from the Dockerfile, built with buildah on that base (no Docker engine, no registry):
## localhost/portal/portal:dev in the buildah store .cache/testbed/images (about a minute).
image: testbed-base-image
	$(BIN)/python -m testbed.portal_image build

## Run the whole test suite against real Redis, PostgreSQL, Kubernetes API servers and Chromium, started by the harness.
test: setup-test testbed-binaries testbed-base-image
	$(BIN)/pytest

## Named control planes (central, dev, ops) and the registry, left running; KUBECONFIGs under .cache/testbed/state.
testbed-up: setup-test testbed-binaries
	$(BIN)/python -m testbed up

testbed-down: $(BIN)/.installed
	$(BIN)/python -m testbed down

bench: setup-test testbed-binaries
	$(BIN)/python -m benchmarks.list_pages
	$(BIN)/python -m benchmarks.provisioning
	$(BIN)/python -m benchmarks.testbed
	$(BIN)/python -m benchmarks.resources
	$(BIN)/python -m benchmarks.logs

clean:
	rm -rf $(VENV) .pytest_cache
