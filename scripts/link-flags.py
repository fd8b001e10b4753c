"""Decides how bin/caddy links the Python that runs this script, and prints one
part of that decision: `mode` (static or shared), `why` (why not static),
`cgo` (CGO_LDFLAGS), `ext` (flags for the final link only) or `tags` (Go
build tags).

Static, the default where it can work, puts libpython inside bin/caddy: its own
calls then skip the PLT and the __tls_get_addr lookups of a shared library. It
can work when the Python installed its libpythonX.Y.a and every symbol that
archive leaves to others is one we can supply: the HACL* hash functions that
a libpython with built-in hash modules (Debian's) calls come from
runtime/hashes.c, built with the Go tag `vivarium_hashes` and linked with
libcrypto. Where it cannot, the shared libpython is linked with an rpath, and
LINK_WHY says why.

Usage: python scripts/link-flags.py mode|why|cgo|ext|tags [static|shared]
(the second word: the LINK asked for, if any)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig


def var(name: str) -> str:
    return str(sysconfig.get_config_var(name) or "")


def archive() -> str:
    """The static libpython: the one the Python's own executable is built from,
    else a PIC build of it. Debian ships both, and only the first is built with
    profile-guided optimisation (its objects have .text.hot and .text.unlikely
    sections); bin/caddy is not position-independent (-no-pie), so it needs no
    PIC."""
    base = os.path.join(var("LIBPL"), var("LIBRARY"))
    for path in (base, base[: -len(".a")] + "-pic.a"):
        if path.endswith(".a") and os.path.isfile(path) and " " not in path:
            return path
    return ""


SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runtime", "hashes.c")


def undefined_hacl(path: str) -> set[str]:
    """The HACL* functions the archive calls and does not hold: 3.14 builds
    the hash modules against separate libHacl_*.a archives that `make
    install` does not install, so a Python whose hash modules are built in
    (Debian's) leaves them to whoever links it."""
    try:
        out = subprocess.run(["nm", "-A", path], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return set()
    undefined, defined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and "_Py_LibHacl_" in parts[-1]:
            (undefined if parts[-2] == "U" else defined).add(parts[-1])
    return undefined - defined


def shim_provides() -> set[str]:
    """What runtime/hashes.c defines: every name it writes as HACL(...)."""
    try:
        with open(SHIM, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return set()
    return {"_Py_LibHacl_Hacl_Hash_" + name for name in re.findall(r"\bHACL\((\w+)\)\(", text)}


def has_openssl_headers() -> bool:
    """Whether the C compiler cgo will use finds OpenSSL's headers (libssl-dev)."""
    cc = (os.environ.get("CC") or "cc").split()
    try:
        done = subprocess.run(
            [*cc, "-E", "-x", "c", "-", "-o", os.devnull],
            input="#include <openssl/evp.h>\n",
            capture_output=True,
            text=True,
        )
    except OSError:
        return False
    return done.returncode == 0


def libs() -> list[str]:
    """The system libraries the archive needs, as sysconfig names them."""
    seen: list[str] = []
    for name in ("LIBS", "SYSLIBS", "MODLIBS"):
        for flag in var(name).split():
            if flag.startswith("-l") and flag not in seen:
                seen.append(flag)
    return seen


def decide(asked: str) -> dict[str, str]:
    version = "%d.%d" % sys.version_info[:2]
    path = archive()
    why = ""
    shim = False
    if asked == "shared":
        why = "LINK=shared asked for"
    elif not path:
        why = f"Python {version} installed no static libpython{version}.a"
    else:
        missing = undefined_hacl(path)
        lacking = sorted(missing - shim_provides())
        if lacking:
            why = (
                f"{os.path.basename(path)} calls {len(lacking)} HACL* functions that "
                f"runtime/hashes.c does not supply, such as {lacking[0]}"
            )
        elif missing and not has_openssl_headers():
            why = (
                f"{os.path.basename(path)} needs the hash functions of runtime/hashes.c, "
                "which need OpenSSL's headers (libssl-dev)"
            )
        shim = bool(missing)
    if why and asked == "static":
        sys.exit(f"LINK=static is not possible: {why}; use LINK=shared")
    if why:
        libdir = var("LIBDIR")
        ldflags = [f"-L{libdir}", f"-lpython{version}{var('ABIFLAGS')}", *var("LIBS").split(), *var("SYSLIBS").split()]
        return {"mode": "shared", "why": why, "cgo": " ".join(ldflags) + f" -Wl,-rpath,{libdir}", "ext": "", "tags": ""}
    # The whole archive goes in because extension modules may call functions
    # bin/caddy itself never does, and --export-dynamic lets them find the C
    # API in the executable, as in Python's own static `python`. -no-pie
    # always: Go's own code is not position-independent in its default
    # build mode, and Go's probe for the flag links a test program with
    # these flags, which fails on the hash functions it leaves out.
    flags = ["-Wl,--whole-archive," + path + ",--no-whole-archive,--export-dynamic", "-no-pie"] + libs()
    if shim:
        flags.append("-lcrypto")
    return {"mode": "static", "why": "", "cgo": "-ldl -lm", "ext": " ".join(flags), "tags": "vivarium_hashes" if shim else ""}


def main() -> None:
    field = sys.argv[1]
    print(decide(sys.argv[2] if len(sys.argv) > 2 else "")[field])


if __name__ == "__main__":
    main()
