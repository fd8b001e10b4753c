# Vivarium: build, demo, tests. Every target installs what it needs itself.
SHELL := /bin/bash

PYTHON := $(shell scripts/find-python.sh)
ifeq ($(PYTHON),)
$(error no embeddable Python >= 3.13 found; see README "Prerequisites")
endif
PYLIBDIR := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')

# LINK=static, the default when that Python installed its libpythonX.Y.a, puts
# the interpreter inside bin/caddy: its own calls then skip the PLT and the
# __tls_get_addr lookups of a shared library, which made pure-Python requests
# about 12% faster here (bench/README.md). --export-dynamic lets extension
# modules find the C API in the executable, as in Python's own static `python`.
# The whole archive goes in because extension modules may call functions
# bin/caddy itself never does. It is given to the final link only (GOFLAGS):
# CGO_LDFLAGS is repeated for every cgo package, and the archive would be too.
# LINK=shared links libpython.so with an rpath, so no LD_LIBRARY_PATH is needed.
export CGO_ENABLED := 1
# Go's build cache does not notice edits to the runtime/ files that
# plugin/runtime.c includes; their checksum among the flags, which are part of
# the cache key, does.
RUNTIME_SUM := $(shell cat runtime/*.c runtime/*.h | cksum | cut -d' ' -f1)
export CGO_CFLAGS := $(shell $(PYTHON)-config --includes) -O2 -g -DVV_RUNTIME_SUM=$(RUNTIME_SUM)
PYARCHIVE := $(shell $(PYTHON) -c 'import os, sysconfig as s; a = os.path.join(s.get_config_var("LIBPL"), s.get_config_var("LIBRARY")); print(a if os.path.isfile(a) and " " not in a else "")')
LINK ?= $(if $(PYARCHIVE),static,shared)
ifeq ($(LINK),static)
ifeq ($(PYARCHIVE),)
$(error LINK=static: $(PYTHON) installed no libpythonX.Y.a; use LINK=shared)
endif
PYSYSLIBS := $(shell $(PYTHON) -c 'import sysconfig as s; print(",".join(f for v in ("LIBS", "SYSLIBS", "MODLIBS") for f in (s.get_config_var(v) or "").split() if f.startswith("-l")))')
export CGO_LDFLAGS := -ldl -lm
export GOFLAGS := $(GOFLAGS) -ldflags=-extldflags=-Wl,--whole-archive,$(PYARCHIVE),--no-whole-archive,--export-dynamic,$(PYSYSLIBS)
else
export CGO_LDFLAGS := $(shell $(PYTHON)-config --embed --ldflags) -Wl,-rpath,$(PYLIBDIR)
endif
export PYTHON

GO_SOURCES := $(shell find plugin runtime pyadapters cmd -type f) go.mod go.sum
TEST_VENV := .venv-test

.PHONY: build run test test-go test-py bench clean FORCE

build: bin/caddy

# Rewritten only when the link flags change, so that changing them rebuilds.
bin/.flags: FORCE
	@mkdir -p bin; flags='$(CGO_CFLAGS) $(CGO_LDFLAGS) $(GOFLAGS)'; \
	[ "$$(cat $@ 2>/dev/null)" = "$$flags" ] || echo "$$flags" > $@

bin/caddy: $(GO_SOURCES) bin/.flags
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
