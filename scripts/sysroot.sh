#!/usr/bin/env bash
# A Debian sid root with CPython 3.14 and 3.15, for machines whose own Debian has
# neither (Debian 12 and 13 ship 3.11 and 3.13; sid's binary packages carry
# 3.14 and 3.15 with headers, shared and static libpython).
#
#   scripts/sysroot.sh ensure        create or update the root (about a minute)
#   scripts/sysroot.sh run CMD...    run CMD inside it, in this directory
#   scripts/sysroot.sh path          print where the root is
#
# `run` enters a private mount namespace, so nothing stays mounted after CMD
# ends: the repository, the Go toolchain, Go's and pip's caches and /tmp are
# bound in at the paths they have outside, so that paths printed inside mean
# the same outside. The Makefile calls `run` by itself when this machine has
# no Python >= 3.14 of its own.
#
# Environment:
#   VIVARIUM_SYSROOT  where the root lives (default /var/lib/vivarium/debian-sid,
#                     or debian-sid-bare)
#   VIVARIUM_SYSROOT_BARE=1  a second root where the wheel is tried: python3.14
#                     and python3.15 with their venv module and nothing more (no
#                     headers, no compiler, no libpython3.X.so: Debian's
#                     python3.X is built with the interpreter in its executable)
#   VIVARIUM_MIRROR   the Debian mirror (default http://deb.debian.org/debian)
# Needs root (debootstrap, chroot, mount), and debootstrap, which it installs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SYSROOT=${VIVARIUM_SYSROOT:-/var/lib/vivarium/debian-sid}
MIRROR=${VIVARIUM_MIRROR:-http://deb.debian.org/debian}
# What the build, the tests, the demo and the benchmarks use inside the root.
PACKAGES=(
	python3.14-dev python3.14-venv python3.15-dev python3.15-venv
	gcc libc6-dev make git ca-certificates procps curl
	libexpat1-dev zlib1g-dev libzstd-dev libssl-dev libffi-dev
	# tests/test_browser.py: headless Chromium driven through its WebDriver.
	chromium chromium-driver
	# make bench: wrk (HTTP/1.1) and h2load (HTTP/2).
	wrk nghttp2-client
)
if [ "${VIVARIUM_SYSROOT_BARE:-}" = 1 ]; then
	SYSROOT=${VIVARIUM_SYSROOT:-/var/lib/vivarium/debian-sid-bare}
	PACKAGES=(python3.14-venv python3.15-venv ca-certificates procps)
fi

log() { printf 'sysroot: %s\n' "$*" >&2; }
die() { printf 'sysroot: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mount); or install Python 3.14 with its headers and libpython and run make with PYTHON=/path/to/python3.14"

# apt inside the root. A mirror snapshot may serve a Release file past its
# Valid-Until date; its signatures are still checked.
in_root_apt() {
	chroot "$SYSROOT" env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
		apt-get -o Acquire::Check-Valid-Until=false -o Dpkg::Use-Pty=0 "$@"
}

# missing: prints the packages of PACKAGES the root lacks.
missing() {
	local pkg
	for pkg in "${PACKAGES[@]}"; do
		# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
		chroot "$SYSROOT" dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' ||
			echo "$pkg"
	done
}

ensure() {
	mkdir -p "$(dirname "$SYSROOT")"
	# Held while the root is made or changed, not while commands run in it.
	exec 9>"$SYSROOT.lock"
	flock 9
	make_root
	exec 9>&-
}

make_root() {
	# Several checkouts may share the root, each wanting its own list: install
	# what is missing, never remove.
	if [ -x "$SYSROOT/usr/bin/dpkg-query" ] && [ -z "$(missing)" ]; then
		return 0
	fi
	if [ ! -x "$SYSROOT/usr/bin/apt-get" ]; then
		command -v debootstrap >/dev/null || {
			log "installing debootstrap"
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
				{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
		}
		log "debootstrap sid into $SYSROOT"
		rm -rf "$SYSROOT.new"
		debootstrap --variant=minbase sid "$SYSROOT.new" "$MIRROR" >"$SYSROOT.debootstrap.log" 2>&1 ||
			die "debootstrap failed; see $SYSROOT.debootstrap.log"
		rm -rf "$SYSROOT"
		mv "$SYSROOT.new" "$SYSROOT"
	fi
	cp /etc/resolv.conf "$SYSROOT/etc/resolv.conf"
	log "installing ${PACKAGES[*]}"
	in_root_apt update -qq >/dev/null 2>&1 || in_root_apt update
	in_root_apt install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$SYSROOT.apt.log" 2>&1 ||
		die "apt-get install in the sysroot failed; see $SYSROOT.apt.log"
}

run() {
	ensure
	local goroot
	goroot=$(go env GOROOT 2>/dev/null || true)
	[ -n "$goroot" ] || die "no Go on PATH (Go 1.26 builds Vivarium; its toolchain is bound into the sysroot)"
	mkdir -p "$HOME/.cache" "$HOME/go"
	# A git worktree keeps its repository elsewhere; Go's VCS stamping reads it.
	local gitdir
	gitdir=$(git -C "$ROOT" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
	case $gitdir in "$ROOT"/* | "") gitdir=$ROOT ;; esac
	cp /etc/resolv.conf "$SYSROOT/etc/resolv.conf"
	local keep=(PATH="$goroot/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		HOME="$HOME" LANG=C.UTF-8 TERM="${TERM:-dumb}" VIVARIUM_IN_SYSROOT=1)
	local name
	for name in $(compgen -e); do
		case $name in
			CI | GO* | LINK | TESTS | BENCH_ARGS | PYTEST_ADDOPTS | VIVARIUM_* | PIP_* | *_proxy | *_PROXY | \
				SSL_CERT_* | REQUESTS_CA_BUNDLE | CURL_CA_BUNDLE) keep+=("$name=${!name}") ;;
		esac
	done
	# The mounts live in a namespace of their own and go with it.
	exec unshare --mount --propagation private -- "$0" _enter "$goroot" "$gitdir" "${#keep[@]}" "${keep[@]}" "$@"
}

# enter GOROOT GITDIR N ENV(N)... CMD...: in the new mount namespace, binds
# what the commands need and runs CMD in the root with exactly ENV.
enter() {
	local goroot=$1 gitdir=$2 nkeep=$3
	shift 3
	local env=("${@:1:nkeep}")
	shift "$nkeep"
	mount -t proc proc "$SYSROOT/proc"
	# The host's CA bundle: the registries may be reached through a proxy it trusts.
	local src
	for src in /dev /sys /tmp /etc/ssl/certs /usr/local/share/ca-certificates "$ROOT" "$goroot" \
		"$HOME/.cache" "$HOME/go" "$HOME/.config/go" "$gitdir"; do
		[ -e "$src" ] || continue
		mkdir -p "$SYSROOT$src"
		mount --rbind "$src" "$SYSROOT$src"
	done
	# shellcheck disable=SC2016 # $0 and $@ are the inner shell's
	exec chroot "$SYSROOT" /usr/bin/env -i "${env[@]}" /bin/bash -c 'cd "$0" && exec "$@"' "$PWD" "$@"
}

case ${1:-} in
	ensure) ensure ;;
	path) echo "$SYSROOT" ;;
	_enter)
		shift
		enter "$@"
		;;
	run)
		shift
		[ $# -gt 0 ] || die "run what? scripts/sysroot.sh run CMD..."
		run "$@"
		;;
	*) die "usage: scripts/sysroot.sh ensure | run CMD... | path" ;;
esac
