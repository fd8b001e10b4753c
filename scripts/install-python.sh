#!/usr/bin/env bash
# Fallback for machines without an embeddable Python >= 3.13: builds CPython 3.13
# from Debian's source package (trixie) into $PREFIX with a shared libpython.
# About 4 minutes on 2 cores. Needs root for apt-get.
set -euo pipefail
PREFIX=${PREFIX:-/opt/python3.13}
if [ -x "$PREFIX/bin/python3.13" ]; then
	echo "$PREFIX/bin/python3.13"
	exit 0
fi
list=/etc/apt/sources.list.d/vivarium-trixie-src.list
[ -f "$list" ] || echo 'deb-src http://deb.debian.org/debian trixie main' > "$list"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential libssl-dev libsqlite3-dev \
	zlib1g-dev libffi-dev libbz2-dev liblzma-dev libreadline-dev >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get source --download-only python3.13 >/dev/null
tar xf python3.13_*.orig.tar.*
cd Python-3.13.*/
./configure --enable-shared --prefix="$PREFIX" LDFLAGS="-Wl,-rpath,$PREFIX/lib" >/dev/null
make -j"$(nproc)" >/dev/null
make install >/dev/null
echo "$PREFIX/bin/python3.13"
