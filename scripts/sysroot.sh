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
#   VIVARIUM_SYSROOT  where the root lives (default /var/lib/vivarium/debian-sid)
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
)

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
	exec unshare --mount --propagation private -- "$BASH" -c '
		set -e
		SYSROOT=$1 ROOT=$2 GOROOT=$3 GITDIR=$4 nkeep=$5; shift 5
		bind() { [ -e "$1" ] || return 0; mkdir -p "$SYSROOT$1"; mount --rbind "$1" "$SYSROOT$1"; }
		mount -t proc proc "$SYSROOT/proc"
		bind /dev; bind /sys; bind /tmp
		# The host'"'"'s CA bundle: the registries may be reached through a proxy it trusts.
		bind /etc/ssl/certs; bind /usr/local/share/ca-certificates
		bind "$ROOT"; bind "$GOROOT"; bind "$HOME/.cache"; bind "$HOME/go"; bind "$HOME/.config/go"; bind "$GITDIR"
		env=("${@:1:nkeep}"); shift "$nkeep"
		exec chroot "$SYSROOT" /usr/bin/env -i "${env[@]}" /bin/bash -c "cd \"\$0\" && exec \"\$@\"" "$PWD" "$@"
	' _ "$SYSROOT" "$ROOT" "$goroot" "$gitdir" "${#keep[@]}" "${keep[@]}" "$@"
}

case ${1:-} in
	ensure) ensure ;;
	path) echo "$SYSROOT" ;;
	run)
		shift
		[ $# -gt 0 ] || die "run what? scripts/sysroot.sh run CMD..."
		run "$@"
		;;
	*) die "usage: scripts/sysroot.sh ensure | run CMD... | path" ;;
esac
