#!/usr/bin/env bash
# Tries the wheel as a user would: a fresh venv, `pip install` of the wheel from
# dist/, then the wheel's own tests (tests/wheel) and a part of the suite with
# VIVARIUM_BIN set to that venv's `vivarium` command. Needs no Go, no compiler
# and no libpython.so; CI runs it in a root that has none of them:
#
#   VIVARIUM_SYSROOT_BARE=1 VIVARIUM_NO_LIBPYTHON=1 scripts/sysroot.sh run scripts/test-wheel.sh
#
#   scripts/test-wheel.sh [PYTHON [PYTEST ARGS...]]
#
# PYTHON (default python3.14) makes the venvs; the wheel for its X.Y must be in
# dist/ (make wheel). PYTEST ARGS replace the default selection of tests.
# VIVARIUM_NO_LIBPYTHON=1 fails when a libpythonX.Y shared library is installed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${1:-python3.14}
if [ $# -gt 0 ]; then shift; fi
# The suite's part that shows the wheel serves as bin/caddy does: the demo's
# four apps through scripts/demo.sh, interpreters and isolation modes, reloads
# and signals, python-check, the WSGI and ASGI protocols.
TESTS=(tests/wheel tests/test_demo.py tests/test_isolation.py tests/test_isolation_modes.py
	tests/test_reload.py tests/test_python_check.py tests/test_wsgi_environ.py
	tests/test_asgi_lifespan.py)
# It compiles a C extension: this machine need have no compiler nor headers.
TESTS+=(-k "not test_an_extension_that_aborts_its_interpreter_gets_a_verdict")
if [ $# -gt 0 ]; then TESTS=("$@"); fi

log() { printf 'test-wheel: %s\n' "$*" >&2; }
die() { printf 'test-wheel: error: %s\n' "$*" >&2; exit 1; }

xy=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "cannot run $PYTHON"
tag=cp${xy/./}
shopt -s nullglob
wheels=(dist/vivarium-*-"$tag"-"$tag"-manylinux_*.whl)
[ ${#wheels[@]} = 1 ] || die "want one $tag wheel in dist/, found ${#wheels[@]}: run make wheel"

found=$(find /usr /opt -name "libpython$xy*.so*" 2>/dev/null || true)
log "libpython$xy shared libraries on this machine: ${found:-none}"
if [ "${VIVARIUM_NO_LIBPYTHON:-}" = 1 ] && [ -n "$found" ]; then
	die "VIVARIUM_NO_LIBPYTHON=1, but $found exists"
fi

work=build/test-wheel/$tag
rm -rf "$work/venv"
mkdir -p "$work"
log "pip install ${wheels[0]} into $work/venv ($("$PYTHON" -VV | head -1))"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "${wheels[0]}"
"$work/venv/bin/vivarium" version

if [ ! -f "$work/runner/.ok" ] || ! cmp -s tests/requirements.txt "$work/runner/.ok"; then
	rm -rf "$work/runner"
	"$PYTHON" -m venv "$work/runner"
	"$work/runner/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
	cp tests/requirements.txt "$work/runner/.ok"
fi
VIVARIUM_BIN=$ROOT/$work/venv/bin/vivarium PYTHON=$PYTHON \
	"$work/runner/bin/python" -m pytest -ra "${TESTS[@]}"
