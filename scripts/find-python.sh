#!/usr/bin/env bash
# Prints the path of the Python Vivarium embeds: CPython >= 3.14 whose headers
# and `pythonX.Y-config --embed` are installed. 3.14 is preferred, then 3.15.
# Honours $PYTHON when set. Exits non-zero with a hint when none is found.
#
# 3.13 is refused: 3.13.0 aborts the whole process when an own-GIL interpreter
# imports cffi-based packages (argon2-cffi, brotlicffi, gevent, charset-normalizer
# 3.4), and every 3.13 release leaks about 13 MB per interpreter on each reload;
# 3.14 fixed the leak (README, "Python versions").
set -u

# why PY: prints why PY cannot be embedded, or nothing when it can.
why() {
	local py=$1 v
	[ -x "$py" ] || { echo "$py is not executable"; return; }
	v=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) || { echo "$py does not run"; return; }
	case $v in
		3.1[4-9].* | 3.[2-9][0-9].*) ;;
		3.13.*) echo "$py is Python $v: Vivarium needs 3.14 or 3.15 (3.13.0 aborts on cffi packages in own-GIL interpreters, and 3.13 leaks about 13 MB per reload)"; return ;;
		*) echo "$py is Python $v: Vivarium needs 3.14 or 3.15 (own-GIL interpreters)"; return ;;
	esac
	local cfg="$py-config"
	[ -x "$cfg" ] || cfg="$(dirname "$py")/python${v%.*}-config"
	if ! { [ -x "$cfg" ] && "$cfg" --embed --ldflags >/dev/null 2>&1; }; then
		echo "$py has no python${v%.*}-config --embed (install its -dev package or headers)"
		return
	fi
	"$py" -c 'import sys, sysconfig; sys.exit(0 if sysconfig.get_config_var("Py_ENABLE_SHARED") or sysconfig.get_config_var("LIBRARY") else 1)' 2>/dev/null ||
		{ echo "$py has neither a shared nor a static libpython"; return; }
}

if [ -n "${PYTHON:-}" ]; then
	py=$(command -v "$PYTHON" || echo "$PYTHON")
	reason=$(why "$py")
	if [ -z "$reason" ]; then echo "$py"; exit 0; fi
	echo "PYTHON=$PYTHON cannot be embedded: $reason" >&2
	exit 1
fi

candidates=()
for v in 3.14 3.15; do
	p=$(command -v "python$v" 2>/dev/null) && candidates+=("$p")
done
for root in "${PYENV_ROOT:-$HOME/.pyenv}/versions" /usr/local /opt/python /opt; do
	for p in "$root"/3.1[4-9]*/bin/python3.1[4-9] "$root"/bin/python3.1[4-9] "$root"/python3.1[4-9]*/bin/python3.1[4-9]; do
		[ -e "$p" ] && candidates+=("$p")
	done
done

for p in "${candidates[@]}"; do
	[ -z "$(why "$p")" ] && { echo "$p"; exit 0; }
done

echo "No embeddable Python >= 3.14 found. Install CPython 3.14 with its headers (Debian/Ubuntu:" >&2
echo "python3.14-dev; pyenv: pyenv install 3.14; or the python:3.14 Docker image), or set" >&2
echo "PYTHON=/path/to/python3.14. On a machine without one, as root, make runs in a Debian sid root." >&2
exit 1
