"""Decides how bin/caddy links the Python that runs this script, and prints one
part of that decision: `mode` (static or shared), `why` (why not static),
`cgo` (CGO_LDFLAGS) or `ext` (flags for the final link only).

Static, the default where it can work, puts libpython inside bin/caddy: its own
calls then skip the PLT and the __tls_get_addr lookups of a shared library. It
can work when the Python installed its libpythonX.Y.a and every symbol that
archive leaves to others is one we can supply. Where it cannot, the shared
libpython is linked with an rpath, and LINK_WHY says why.

Usage: python scripts/link-flags.py mode|why|cgo|ext [static|shared]
(the second word: the LINK asked for, if any)
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig


def var(name: str) -> str:
    return str(sysconfig.get_config_var(name) or "")


def archive() -> str:
    """The static libpython, preferring a PIC build of it (Debian ships one)."""
    base = os.path.join(var("LIBPL"), var("LIBRARY"))
    for path in (base[: -len(".a")] + "-pic.a", base):
        if path.endswith(".a") and os.path.isfile(path) and " " not in path:
            return path
    return ""


def undefined_hacl(path: str) -> bool:
    """True when the archive calls HACL* code it does not hold: 3.14 builds the
    hash modules against separate libHacl_*.a archives that `make install`
    does not install, so a Python whose hash modules are built in (Debian's)
    cannot be linked statically from its installed files."""
    try:
        out = subprocess.run(["nm", "-A", path], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    undefined, defined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and "_Py_LibHacl_" in parts[-1]:
            (undefined if parts[-2] == "U" else defined).add(parts[-1])
    return bool(undefined - defined)


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
    if asked == "shared":
        why = "LINK=shared asked for"
    elif not path:
        why = f"Python {version} installed no static libpython{version}.a"
    elif undefined_hacl(path):
        why = (
            f"{os.path.basename(path)} needs the HACL* hash archives, which this Python "
            "did not install (Debian builds its hash modules into libpython)"
        )
    if why and asked == "static":
        sys.exit(f"LINK=static is not possible: {why}; use LINK=shared")
    if why:
        libdir = var("LIBDIR")
        ldflags = [f"-L{libdir}", f"-lpython{version}{var('ABIFLAGS')}", *var("LIBS").split(), *var("SYSLIBS").split()]
        return {"mode": "shared", "why": why, "cgo": " ".join(ldflags) + f" -Wl,-rpath,{libdir}", "ext": ""}
    # The whole archive goes in because extension modules may call functions
    # bin/caddy itself never does, and --export-dynamic lets them find the C
    # API in the executable, as in Python's own static `python`. -no-pie
    # because an archive built without -fPIC cannot go into a PIE.
    pie = [] if path.endswith("-pic.a") else ["-no-pie"]
    flags = ["-Wl,--whole-archive," + path + ",--no-whole-archive,--export-dynamic"] + pie + libs()
    return {"mode": "static", "why": "", "cgo": "-ldl -lm", "ext": " ".join(flags)}


def main() -> None:
    field = sys.argv[1]
    print(decide(sys.argv[2] if len(sys.argv) > 2 else "")[field])


if __name__ == "__main__":
    main()
