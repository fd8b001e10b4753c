#!/usr/bin/env bash
# make conformance: Autobahn|Testsuite's fuzzingclient (cases 1-10, 12, 13)
# against two WebSocket echoes served by bin/caddy, a raw ASGI app and a
# Starlette app. Writes docs/conformance/ (README.md, index.json) and fails
# when any case FAILED.
#
# wstest runs on Python 2.7 (the suite supports nothing newer), found with
# $CONFORMANCE_PYTHON27, pyenv, or python2.7 on PATH, in a virtualenv of its
# own under conformance/.work/. bin/caddy runs where `make` runs it: in the
# Debian sid root when this machine has no Python 3.14 (scripts/sysroot.sh),
# which shares the loopback with wstest on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/conformance/.work
OUT=${CONFORMANCE_OUT:-$ROOT/docs/conformance}
START=$(date +%s)

log() { printf 'conformance: %s\n' "$*" >&2; }
die() { printf 'conformance: error: %s\n' "$*" >&2; exit 1; }

# Where bin/caddy and its Python run.
if scripts/find-python.sh >/dev/null 2>&1; then
	IN_ROOT=()
else
	IN_ROOT=(scripts/sysroot.sh run)
fi

find_python27() {
	local candidates=()
	[ -n "${CONFORMANCE_PYTHON27:-}" ] && candidates+=("$CONFORMANCE_PYTHON27")
	if command -v pyenv >/dev/null 2>&1 || [ -d "${PYENV_ROOT:-$HOME/.pyenv}/versions" ]; then
		local root=${PYENV_ROOT:-$HOME/.pyenv}
		command -v pyenv >/dev/null 2>&1 && root=$(pyenv root)
		for p in "$root"/versions/2.7*/bin/python2.7; do [ -x "$p" ] && candidates+=("$p"); done
	fi
	command -v python2.7 >/dev/null 2>&1 && candidates+=("$(command -v python2.7)")
	for p in "${candidates[@]}"; do
		if "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

PY27=$(find_python27) || die "Autobahn|Testsuite needs Python 2.7 and none was found (tried \$CONFORMANCE_PYTHON27, pyenv's versions, python2.7 on PATH). Install one with 'pyenv install 2.7.18', or set CONFORMANCE_PYTHON27=/path/to/python2.7."
log "wstest on $PY27"

# A requirements file is installed again only when it changed.
stamp_ok() { [ -f "$2" ] && [ "$(cat "$2")" = "$(cksum <"$1")" ]; }
stamp() { cksum <"$1" >"$2"; }

mkdir -p "$WORK"
WSTEST_VENV=$WORK/wstest-venv
if ! stamp_ok conformance/wstest-requirements.txt "$WSTEST_VENV/.ok"; then
	log "making the wstest virtualenv (Python 2.7)"
	rm -rf "$WORK/virtualenv" "$WSTEST_VENV"
	"$PY27" -m pip install -q --disable-pip-version-check --no-warn-script-location \
		--target "$WORK/virtualenv" -r conformance/virtualenv-requirements.txt 2>&1 | grep -v DEPRECATION || true
	PYTHONPATH=$WORK/virtualenv "$PY27" -m virtualenv -q "$WSTEST_VENV"
	"$WSTEST_VENV/bin/pip" install -q --disable-pip-version-check -r conformance/wstest-requirements.txt 2>&1 |
		grep -v DEPRECATION || true
	"$WSTEST_VENV/bin/wstest" --help >/dev/null || die "wstest did not install; see the pip output above"
	stamp conformance/wstest-requirements.txt "$WSTEST_VENV/.ok"
fi

make build
STARLETTE_VENV=$WORK/starlette-venv
if ! stamp_ok conformance/starlette-requirements.txt "$STARLETTE_VENV/.ok"; then
	log "making the Starlette venv"
	rm -rf "$STARLETTE_VENV"
	# shellcheck disable=SC2016 # expanded by the inner shell, where the Python is
	"${IN_ROOT[@]}" bash -c 'py=$(scripts/find-python.sh) && "$py" -m venv "$1" &&
		"$1/bin/pip" install -q --disable-pip-version-check -r conformance/starlette-requirements.txt' _ "$STARLETTE_VENV"
	stamp conformance/starlette-requirements.txt "$STARLETTE_VENV/.ok"
fi

free_port() { "$WSTEST_VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RAW_PORT=$(free_port)
STARLETTE_PORT=$(free_port)
cat >"$WORK/Caddyfile" <<EOF
{
	admin off
	auto_https off
	persist_config off
}
http://127.0.0.1:$RAW_PORT {
	python {
		module_asgi "raw_echo:app"
		working_dir "$ROOT/conformance/apps"
	}
}
http://127.0.0.1:$STARLETTE_PORT {
	python {
		module_asgi "starlette_echo:app"
		working_dir "$ROOT/conformance/apps"
		venv "$STARLETTE_VENV"
	}
}
EOF

CADDY_PID=
WSTEST_PIDS=()
cleanup() {
	for pid in "${WSTEST_PIDS[@]}" $CADDY_PID; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT
# sysroot.sh execs into bin/caddy, so $! is Caddy's own pid.
XDG_DATA_HOME=$WORK/xdg XDG_CONFIG_HOME=$WORK/xdg "${IN_ROOT[@]}" bin/caddy run --config "$WORK/Caddyfile" \
	>"$WORK/caddy.log" 2>&1 &
CADDY_PID=$!
for _ in $(seq 300); do
	if "$WSTEST_VENV/bin/python" -c "import socket, sys; socket.create_connection(('127.0.0.1', $STARLETTE_PORT), 1)" 2>/dev/null; then
		break
	fi
	kill -0 "$CADDY_PID" 2>/dev/null || { tail -20 "$WORK/caddy.log" >&2; die "bin/caddy exited; its log is above"; }
	sleep 0.2
done

# One wstest per agent, at once: the compression cases (12, 13) are most of
# the time, spent compressing on both sides, and there are two cores.
rm -rf "$WORK/report"
run_agent() {
	local agent=$1 port=$2 exclude=${3:-} dir=$WORK/report/$1
	mkdir -p "$dir"
	cat >"$dir/spec.json" <<EOF
{
  "outdir": "$dir",
  "servers": [{"agent": "$agent", "url": "ws://127.0.0.1:$port/"}],
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*", "12.*", "13.*"],
  "exclude-cases": [$exclude],
  "exclude-agent-cases": {}
}
EOF
	(cd "$dir" && exec "$WSTEST_VENV/bin/wstest" -m fuzzingclient -s spec.json >wstest.log 2>&1)
}
log "running the fuzzingclient against both echoes"
run_agent vivarium-raw-asgi "$RAW_PORT" &
WSTEST_PIDS+=($!)
# CONFORMANCE_COMPRESSION=raw runs the compression cases against the raw echo
# only, halving the run: permessage-deflate is Go's, in front of any app, so the
# Starlette echo exercises the same code there (CI uses it to stay short).
case ${CONFORMANCE_COMPRESSION:-both} in
	both) starlette_exclude= ;;
	raw) starlette_exclude='"12.*", "13.*"' ;;
	*) die "CONFORMANCE_COMPRESSION is both or raw, not $CONFORMANCE_COMPRESSION" ;;
esac
run_agent vivarium-starlette "$STARLETTE_PORT" "$starlette_exclude" &
WSTEST_PIDS+=($!)
for pid in "${WSTEST_PIDS[@]}"; do
	wait "$pid" || die "wstest failed; see $WORK/report/*/wstest.log"
done
WSTEST_PIDS=()

# shellcheck disable=SC2016 # expanded by the inner shell, where the Python is
"${IN_ROOT[@]}" bash -c 'exec "$(scripts/find-python.sh)" "$@"' _ conformance/summarize.py \
	"$WORK/report" "$OUT" "$(($(date +%s) - START))"
