# Vivarium: build, demo, tests. Every target installs what it needs itself.
SHELL := /bin/bash

PYTHON := $(shell scripts/find-python.sh)
ifeq ($(PYTHON),)
$(error no embeddable Python >= 3.13 found; see README "Prerequisites")
endif
PYLIBDIR := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')

# cgo takes Python's flags from python3.X-config --embed; the rpath lets bin/caddy
# find libpython without LD_LIBRARY_PATH.
export CGO_ENABLED := 1
export CGO_CFLAGS := $(shell $(PYTHON)-config --includes) -O2 -g
export CGO_LDFLAGS := $(shell $(PYTHON)-config --embed --ldflags) -Wl,-rpath,$(PYLIBDIR)
export PYTHON

GO_SOURCES := $(shell find plugin runtime pyadapters cmd -type f) go.mod go.sum
TEST_VENV := .venv-test

.PHONY: build run test test-go test-py bench clean

build: bin/caddy

bin/caddy: $(GO_SOURCES)
	go build -o $@ ./cmd/caddy

run: build
	scripts/demo.sh serve

$(TEST_VENV)/.ok: tests/requirements.txt
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $@

test: build $(TEST_VENV)/.ok test-go test-py

test-go:
	@unformatted=$$(gofmt -l plugin cmd pyadapters *.go); [ -z "$$unformatted" ] || { echo "gofmt needed: $$unformatted"; exit 1; }
	go vet ./...
	go test ./...

test-py: build $(TEST_VENV)/.ok
	VIVARIUM_BIN=$(CURDIR)/bin/caddy $(TEST_VENV)/bin/python -m pytest -ra tests

# Vivarium beside gunicorn, uvicorn and Granian, driven by wrk; writes
# docs/benchmarks/ (results.json, README.md, charts). BENCH_ARGS=--quick for a
# short run; see bench/README.md.
bench: build
	$(PYTHON) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf bin $(TEST_VENV) tests/.venvs
