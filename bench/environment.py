"""What the benchmark needs before it measures: the load tools, the venvs, a
TLS certificate, and the description of the machine and versions."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from plan import APPS, REQUIREMENTS, ROOT, VENVS, VERSIONED


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def command_output(cmd, **kw) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, **kw).stdout.strip()
    except OSError:
        return ""


def ensure_tools() -> None:
    """Installs Debian's wrk and h2load (nghttp2-client) when missing;
    scripts/sysroot.sh installs both when it makes the root."""
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("h2load", "nghttp2-client")) if not shutil.which(tool)]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"installing {' '.join(missing)} from Debian")
    if subprocess.run(sudo + ["apt-get", "install", "-y", *missing], env=env).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update"], env=env, check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", *missing], env=env, check=True)
    for tool in ("wrk", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is still not on PATH after apt-get install {' '.join(missing)}")


def private_python(python: str) -> Path:
    """A copy of the Python executable that only the benchmark's processes run:
    every venv's python points at it, so that the PSS of a measured process
    tree does not shrink because other programs on the machine map the same
    executable (the three-app memory point wants no sharer outside the tree)."""
    real = Path(shutil.which(python) or python).resolve()
    copy = VENVS / ".python" / real.name
    if not copy.exists() or copy.stat().st_size != real.stat().st_size:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, copy.with_suffix(".tmp"))
        os.replace(copy.with_suffix(".tmp"), copy)
    return copy


def private_libpython(caddy: Path) -> Path | None:
    """The directory of a copy of the libpython that bin/caddy links (when it
    links one shared), for LD_LIBRARY_PATH: as the private python, so that
    other programs running a Vivarium of their own do not share its pages."""
    found = [line.split("=>")[1].split()[0] for line in command_output(["ldd", str(caddy)]).splitlines()
             if "libpython" in line and "=>" in line]
    if not found:
        return None
    real = Path(found[0])
    copy = VENVS / ".python" / "lib" / real.name
    if not copy.exists() or copy.stat().st_size != real.resolve().stat().st_size:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real.resolve(), copy.with_suffix(".tmp"))
        os.replace(copy.with_suffix(".tmp"), copy)
    return copy.parent


def point_at_private_python(venv: Path, copy: Path) -> None:
    """The venv's bin/pythonX.Y symlink to the private copy; the venv keeps
    its pyvenv.cfg `home`, where the standard library is found."""
    link = venv / "bin" / copy.name
    if link.is_symlink() and Path(os.readlink(link)) == copy:
        return
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(copy)
    os.replace(tmp, link)


def make_venv(venv: Path, python: str, install: list[str], stamp_text: str, what: str) -> Path:
    stamp = venv / ".bench-stamp"
    if not (stamp.exists() and stamp.read_text() == stamp_text):
        log(f"creating venv {os.path.relpath(venv)} with {what}")
        subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *install],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            sys.exit(f"bench: pip install {' '.join(install)} failed:\n{pip.stdout}{pip.stderr}")
        stamp.write_text(stamp_text)
    point_at_private_python(venv, private_python(python))
    return venv


def ensure_venv(name: str, python: str) -> Path:
    """bench/.venvs/<name> from bench/requirements/<name>.txt, rebuilt when the
    requirements or the Python change (stamped by their hash)."""
    req = REQUIREMENTS / f"{name}.txt"
    digest = hashlib.sha256(req.read_bytes() + python.encode()).hexdigest()
    return make_venv(VENVS / name, python, ["-r", str(req)], digest, os.path.relpath(req))


def ensure_wheel_venv(python: str) -> Path:
    """bench/.venvs/wheel: the wheel of dist/ for this Python, pip-installed
    (make bench runs make wheel first); remade when the wheel changes."""
    tag = command_output([python, "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"])
    wheels = sorted((ROOT / "dist").glob(f"vivarium-*-{tag}-{tag}-*.whl"))
    if len(wheels) != 1:
        sys.exit(f"bench: want one {tag} wheel in dist/, found {len(wheels)}: run make wheel")
    digest = hashlib.sha256(wheels[0].read_bytes() + python.encode()).hexdigest()
    return make_venv(VENVS / "wheel", python, [str(wheels[0])], digest, wheels[0].name)


def ensure_venvs(names, python: str) -> dict[str, Path]:
    private_python(python)  # once, before the venvs made in parallel point at it
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {n: pool.submit(ensure_wheel_venv, python) if n == "wheel" else
                   pool.submit(ensure_venv, n, python) for n in names}
        return {n: f.result() for n, f in futures.items()}


def caddysnake_binary(venv: Path) -> Path:
    """The Caddy that the caddysnake wheel carries."""
    found = sorted(venv.glob("lib/python*/site-packages/caddysnake-cli"))
    if not found:
        sys.exit(f"bench: no caddysnake-cli in {venv}; remove it to have it made again")
    return found[0]


def self_signed_cert(raw: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that the HTTP/2 servers present (h2load
    does not verify it)."""
    cert, key = raw / "tls-cert.pem", raw / "tls-key.pem"
    if not (cert.exists() and key.exists()):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def machine_info() -> dict:
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "loadavg_start": os.getloadavg()}


def versions(python: str, caddy: Path, venvs: dict[str, Path]) -> dict:
    out = {
        "go": command_output(["go", "env", "GOVERSION"]),
        "python": command_output([python, "-c", "import sys; print(sys.version.split()[0])"]),
        "caddy": command_output([str(caddy), "version"]).split()[0],
        "wrk": command_output(["wrk", "-v"]).splitlines()[0].split(" Copyright")[0],
        "h2load": command_output(["h2load", "--version"]).split(":")[-1].strip(),
        "libpython": libpython_link(caddy, python),
    }
    if "caddysnake" in venvs:
        out["caddy-snake's caddy"] = command_output([str(caddysnake_binary(venvs["caddysnake"])), "version"]).split()[0]
    script = ("import json, sys, importlib.metadata as m; "
              "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))")
    for name, packages in VERSIONED.items():
        if name in venvs:
            text = command_output([str(venvs[name] / "bin" / "python"), "-c", script, *packages])
            for package, version in json.loads(text or "{}").items():
                out.setdefault(package, version)
    return out


def libpython_link(caddy: Path, python: str) -> str:
    """How bin/caddy and the peers' Python hold the interpreter: linked into
    the executable (static) or from libpython.so (shared)."""
    def how(binary: str) -> str:
        return "shared" if "libpython" in command_output(["ldd", binary]) else "static"
    return f"Vivarium {how(str(caddy))}, peers' python {how(python)}"


def measure_cpu_work(venv: Path) -> float:
    """Milliseconds one /cpu request computes, run alone in a plain process
    (the fastest of 20: the least disturbed by other programs)."""
    code = ("import time, work\nbest = 1e9\nfor _ in range(21):\n    t = time.perf_counter(); work.burn()\n"
            "    best = min(best, time.perf_counter() - t)\nprint(best * 1000)")
    return round(float(command_output([str(venv / "bin" / "python"), "-c", code], cwd=APPS)), 2)
