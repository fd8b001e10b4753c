# Vivarium: build, demo, tests. Every target installs what it needs itself.
SHELL := /bin/bash

# Autobahn|Testsuite runs on the host (Python 2.7); conformance/run.sh starts
# bin/caddy itself, in the Debian sid root where there is no Python 3.14.
.PHONY: conformance
conformance:
	conformance/run.sh

# PYTHON=... (on the command line or in the environment) picks the Python;
# scripts/find-python.sh checks it, or finds one.
FOUND_PYTHON := $(shell PYTHON='$(PYTHON)' scripts/find-python.sh 2>/dev/null)
ifeq ($(FOUND_PYTHON),)
ifneq ($(VIVARIUM_IN_SYSROOT),1)
# No Python >= 3.14 here (Debian 12 and 13 have none): every target runs in a
# Debian sid root that has 3.14 and 3.15 (scripts/sysroot.sh), made on first use.
SYSROOT_GOALS := $(filter-out conformance,$(or $(MAKECMDGOALS),build))
ifneq ($(SYSROOT_GOALS),)
.PHONY: $(SYSROOT_GOALS) _sysroot
$(SYSROOT_GOALS): _sysroot ; @:
_sysroot:
	@echo "make: no Python >= 3.14 on this machine; running 'make $(SYSROOT_GOALS)' in the Debian sid root (scripts/sysroot.sh)"
	scripts/sysroot.sh run $(MAKE) $(SYSROOT_GOALS) $(MAKEOVERRIDES)
endif
else
$(error $(shell PYTHON='$(PYTHON)' scripts/find-python.sh 2>&1 >/dev/null))
endif
else
override PYTHON := $(FOUND_PYTHON)

# One start of that Python: its full version for the log, X.Y for names.
PYRELEASE := $(shell $(PYTHON) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
PYVERSION := $(basename $(PYRELEASE))
# bin/caddy for the default Python; OUT=bin/3.15 PYTHON=python3.15 builds another beside it.
OUT ?= bin
CADDY := $(OUT)/caddy

# How libpython is linked: static where the Python installed what that needs,
# shared otherwise (scripts/link-flags.py says why); LINK=static|shared insists.
LINKING = $(shell $(PYTHON) scripts/link-flags.py $(1) $(LINK))
LINK_MODE := $(call LINKING,mode)
ifeq ($(LINK_MODE),)
$(error scripts/link-flags.py failed for $(PYTHON))
endif
LINK_WHY := $(call LINKING,why)
LINK_CGO_LDFLAGS := $(call LINKING,cgo)
LINK_EXTLDFLAGS := $(call LINKING,ext)
LINK_TAGS := $(call LINKING,tags)
comma := ,
space := $(subst ,, )
$(info make: Python $(PYRELEASE) ($(PYTHON)))
ifneq ($(LINK_WHY),)
$(info make: linking libpython$(PYVERSION) shared: $(LINK_WHY))
else
$(info make: linking libpython$(PYVERSION) statically$(if $(LINK_TAGS), with runtime/hashes.c))
endif
export CGO_ENABLED := 1
# Go's build cache does not notice edits to the runtime/ files that
# plugin/runtime.c includes; their checksum among the flags, which are part of
# the cache key, does.
RUNTIME_SUM := $(shell cat runtime/*.c runtime/*.h | cksum | cut -d' ' -f1)
export CGO_CFLAGS := $(shell $(PYTHON)-config --includes) -O2 -g -DVV_RUNTIME_SUM=$(RUNTIME_SUM)
export CGO_LDFLAGS := $(LINK_CGO_LDFLAGS)
# The archive goes to the final link only (GOFLAGS): CGO_LDFLAGS is repeated
# for every cgo package, and the archive would be too.
ifneq ($(LINK_EXTLDFLAGS),)
export GOFLAGS := $(GOFLAGS) -ldflags=-extldflags=$(subst $(space),$(comma),$(LINK_EXTLDFLAGS))
endif
ifneq ($(LINK_TAGS),)
export GOFLAGS := $(GOFLAGS) -tags=$(LINK_TAGS)
endif
export PYTHON

GO_SOURCES := $(shell find plugin runtime pyadapters cmd -type f) go.mod go.sum
TEST_VENV := .venv-test-$(PYVERSION)

.PHONY: build run test test-go test-py test-smoke bench bench-watch metrics-chart wheel test-wheel clean FORCE

build: $(CADDY)

# Rewritten only when the link flags change, so that changing them rebuilds.
$(OUT)/.flags: FORCE
	@mkdir -p $(OUT); flags='$(CGO_CFLAGS) $(CGO_LDFLAGS) $(GOFLAGS)'; \
	[ "$$(cat $@ 2>/dev/null)" = "$$flags" ] || echo "$$flags" > $@

$(CADDY): $(GO_SOURCES) $(OUT)/.flags
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

# TESTS picks what to run, as pytest takes it: TESTS=tests/test_reload.py
TESTS ?= tests
test-py: build $(TEST_VENV)/.ok
	VIVARIUM_BIN=$(CURDIR)/$(CADDY) $(TEST_VENV)/bin/python -m pytest -ra $(TESTS)

# A short run for a second Python: make test-smoke OUT=bin/3.15 PYTHON=python3.15
SMOKE_TESTS := tests/test_wsgi_environ.py tests/test_asgi_scope.py tests/test_asgi_bodies.py tests/test_websocket.py \
	tests/test_reload.py tests/test_python_check.py tests/test_metrics.py tests/test_hashes.py
test-smoke: build $(TEST_VENV)/.ok
	VIVARIUM_BIN=$(CURDIR)/$(CADDY) $(TEST_VENV)/bin/python -m pytest -ra $(SMOKE_TESTS)

# Vivarium beside gunicorn, uvicorn and Granian, driven by wrk; writes
# docs/benchmarks/ (results.json, README.md, charts). BENCH_ARGS=--quick for a
# short run; see bench/README.md.
bench: build
	$(MAKE) wheel WHEEL_PYTHONS=$(PYTHON)
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# docs/benchmarks/watch.md: save to served with `watch` on the demo, idle and
# under steady load (a few minutes); WATCH_ARGS are bench/watch.py's options.
bench-watch: build
	scripts/demo.sh setup
	$(PYTHON) bench/watch.py $(WATCH_ARGS)

# docs/metrics/load.png: one app's queue depth and busy threads as load rises
# and falls, sampled from /metrics (about a minute).
metrics-chart: build
	$(PYTHON) bench/metrics_chart.py

# pip's way in: a manylinux wheel per CPython X.Y of WHEEL_PYTHONS, into dist/
# (scripts/wheel.py; its tools come from PyPI into .venv-wheel).
WHEEL_PYTHONS ?= python3.14 python3.15
WHEEL_VENV := .venv-wheel

$(WHEEL_VENV)/.ok: python/build-requirements.txt
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install -q --disable-pip-version-check -r python/build-requirements.txt
	touch $@

wheel: $(WHEEL_VENV)/.ok
	for py in $(WHEEL_PYTHONS); do $(WHEEL_VENV)/bin/python scripts/wheel.py --python $$py || exit 1; done

# The wheel for PYTHON installed into a fresh venv, then tests/wheel and a part
# of the suite against its `vivarium` command (scripts/test-wheel.sh).
test-wheel:
	$(MAKE) wheel WHEEL_PYTHONS=$(PYTHON)
	scripts/test-wheel.sh $(PYTHON)

clean:
	rm -rf bin build dist .venv-test-* .venv-wheel tests/.venvs

endif
