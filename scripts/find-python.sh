#!/usr/bin/env bash
# Prints the path of a Python >= 3.13 interpreter that can be embedded: one whose
# `pythonX.Y-config --embed` exists and whose shared library is installed.
# Honours $PYTHON when set. Exits non-zero with a hint when none is found.
set -u

usable() {
	local py=$1
	[ -x "$py" ] || return 1
	"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 13) else 1)' 2>/dev/null || return 1
	local cfg="$py-config"
	[ -x "$cfg" ] || cfg="$(dirname "$py")/$(basename "$py")-config"
	[ -x "$cfg" ] || return 1
	"$cfg" --embed --ldflags >/dev/null 2>&1 || return 1
	"$py" -c 'import sysconfig, sys; sys.exit(0 if sysconfig.get_config_var("Py_ENABLE_SHARED") else 1)' 2>/dev/null || return 1
}

if [ -n "${PYTHON:-}" ]; then
	py=$(command -v "$PYTHON" || echo "$PYTHON")
	if usable "$py"; then echo "$py"; exit 0; fi
	echo "PYTHON=$PYTHON is not an embeddable Python >= 3.13 (needs pythonX.Y-config --embed and a shared libpython)" >&2
	exit 1
fi

candidates=()
for v in 3.15 3.14 3.13; do
	p=$(command -v "python$v" 2>/dev/null) && candidates+=("$p")
done
for root in "${PYENV_ROOT:-$HOME/.pyenv}/versions" /usr/local /opt/python /opt; do
	for p in "$root"/3.1[3-9]*/bin/python3.1[3-9] "$root"/bin/python3.1[3-9] "$root"/python3.1[3-9]*/bin/python3.1[3-9]; do
		[ -e "$p" ] && candidates+=("$p")
	done
done

for p in "${candidates[@]}"; do
	if usable "$p"; then echo "$p"; exit 0; fi
done

echo "No embeddable Python >= 3.13 found. Install one with its headers and shared library" >&2
echo "(for example pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared), or set PYTHON=/path/to/python3.13." >&2
exit 1
