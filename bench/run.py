#!/usr/bin/env python3
"""`make bench`: Vivarium side by side with gunicorn, uvicorn and Granian.

Every server is started here, checked (its answer must be right before it is
measured), driven by wrk from this machine at fixed connection counts, and
stopped. Servers are measured one after the other in one session, Vivarium and
its peers alternating, so that their ratios hold even on a noisy machine.

For each point: requests/s, p50/p99 latency, server CPU seconds per request
(user + system time of every serving process: Caddy, proxied servers and their
workers) and the RSS of those processes after the run.

Output: docs/benchmarks/results.json (raw), docs/benchmarks/README.md (tables,
targets) and PNG charts; logs of the servers in docs/benchmarks/raw/.

Only the standard library is used here; the servers and charts get their own
venvs (bench/requirements/*.txt, cached in bench/.venvs by requirements hash).

    python3.13 bench/run.py                      # what `make bench` runs
    python3.13 bench/run.py --quick              # short points, for development
    python3.13 bench/run.py --only flask --quick # servers whose name contains "flask"
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
APPS = BENCH / "apps"
REQUIREMENTS = BENCH / "requirements"
VENVS = BENCH / ".venvs"
WRK_SCRIPT = BENCH / "wrk" / "report.lua"
DOCS = ROOT / "docs" / "benchmarks"
RAW = DOCS / "raw"  # server logs and generated configs; git-ignored

# =============================================================================
# The benchmark: every point is declared in this section.
# =============================================================================

DURATION = 3  # seconds measured per point (wrk takes whole seconds)
WARMUP = 1  # seconds of load before each measured run, not counted
WRK_THREADS = 1  # wrk uses at most one of the cores it shares with the server

PORT = 18080  # what wrk talks to
UPSTREAM_PORT = 18081  # a proxied server behind Caddy

HELLO_CONNS = (1, 16, 64, 256)
CPU_CONNS = (1, 16, 64)  # 5 ms requests: 256 connections would only queue
TRANSFER_CONNS = (1, 16)  # 1 MiB down, 10 MiB up: a few connections saturate
IDLE_RSS_INTERPRETERS = (1, 2, 4)  # Flask interpreters compared for memory
TARGET_CONNS = 64  # the connection count the targets are computed at

HELLO = b"Hello, world!"
DOWNLOAD_BYTES = 1 << 20
UPLOAD_BYTES = 10 << 20


@dataclass(frozen=True)
class Endpoint:
    """A URL of the benchmark apps and the answer it must give."""

    path: str
    expect: bytes | None = None  # exact body
    expect_len: int | None = None  # body length
    upload: int = 0  # POST a body of this many bytes


def cpu_expect() -> bytes:
    """The /cpu answer: the checksum bench/apps/work.py computes."""
    sys.path.insert(0, str(APPS))
    try:
        import work
    finally:
        sys.path.pop(0)
    return str(work.burn()).encode()


ENDPOINTS = {
    "hello": Endpoint("/", expect=HELLO),
    "cpu": Endpoint("/cpu", expect=None),  # filled in by main() (cpu_expect)
    "download": Endpoint("/download", expect_len=DOWNLOAD_BYTES),
    "upload": Endpoint("/upload", expect=str(UPLOAD_BYTES).encode(), upload=UPLOAD_BYTES),
}

# A workload is a list of (endpoint, connection counts).
WORKLOADS = {
    "hello": [("hello", HELLO_CONNS)],
    "cpu": [("cpu", CPU_CONNS)],
    "transfer": [("download", TRANSFER_CONNS), ("upload", TRANSFER_CONNS)],
    # One point, where the targets are computed.
    "hello-target": [("hello", (TARGET_CONNS,))],
}


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration. `caddy_site` is the body of a Caddy site on
    PORT (our bin/caddy); `peer` a command run from bench/apps, on
    UPSTREAM_PORT behind Caddy or on PORT when there is no Caddy. Placeholders:
    {apps}, {venv} (bench/.venvs/<venv>), {port}, {upstream}."""

    name: str
    label: str
    family: str  # caddy, vivarium, gunicorn, uvicorn, granian
    app: str  # raw, flask, django, starlette, fastapi
    workloads: tuple[str, ...] = ("hello",)
    caddy_site: str | None = None
    venv: str | None = None  # the venv the app runs from
    peer: tuple[str, ...] = ()
    interpreters: int | None = None
    # What runs the Caddy site: bin/caddy, or "wheel": the `vivarium` command
    # of the wheel (make wheel) pip-installed into bench/.venvs/wheel.
    host: str = "bin"


def vivarium(app: str, module: str, interpreters: int, *, asgi=False, venv=None,
             isolation=None, threads=None, workloads=("hello",), host="bin") -> ServerSpec:
    directive = "module_asgi" if asgi else "module_wsgi"
    lines = [f'{directive} "{module}"', 'working_dir "{apps}"']
    if venv:
        lines.append('venv "{venv}"')
    lines.append(f"interpreters {interpreters}")
    if isolation:
        lines.append(f"isolation {isolation}")
    if threads:
        lines.append(f"threads {threads}")
    site = "python {\n\t\t" + "\n\t\t".join(lines) + "\n\t}"
    what = {"raw": "raw WSGI", "flask": "Flask", "django": "Django",
            "starlette": "Starlette", "fastapi": "FastAPI"}[app]
    count = f"{interpreters} processes" if isolation == "process" else f"{interpreters} interp"
    label = (f"Vivarium {what}, {count}" + (f" x {threads} thread" if threads else "")
             + (f" ({isolation})" if isolation and isolation != "process" else "")
             + (" (pip wheel)" if host == "wheel" else ""))
    return ServerSpec(name=f"vivarium-{app}-{interpreters}" + (f"-t{threads}" if threads else "")
                      + (f"-{isolation}" if isolation else "") + ("-wheel" if host == "wheel" else ""),
                      label=label, family="vivarium", app=app, workloads=tuple(workloads),
                      caddy_site=site, venv=venv, interpreters=interpreters, host=host)


PROXY = "reverse_proxy 127.0.0.1:{upstream}"

GUNICORN = ("{venv}/bin/gunicorn", "--workers", "2", "--bind", "127.0.0.1:{upstream}",
            "--chdir", "{apps}", "--log-level", "warning")


def uvicorn(module: str) -> tuple[str, ...]:
    return ("{venv}/bin/uvicorn", module, "--app-dir", "{apps}", "--host", "127.0.0.1",
            "--port", "{upstream}", "--workers", "2", "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning")


def granian(interface: str, module: str, port: str) -> tuple[str, ...]:
    return ("{venv}/bin/granian", "--interface", interface, "--workers", "2", "--host", "127.0.0.1",
            "--port", port, "--working-dir", "{apps}", "--no-ws", "--log-level", "warning", module)


# In the order they run: ours and peers alternate.
SERVERS = [
    ServerSpec("caddy-respond", 'Caddy respond (ceiling)', "caddy", "raw",
               caddy_site='respond "Hello, world!"'),
    vivarium("raw", "wsgi_hello:app", 1),
    ServerSpec("gunicorn-sync", "gunicorn sync 2w + Caddy", "gunicorn", "flask",
               workloads=("hello", "cpu"), caddy_site=PROXY, venv="gunicorn",
               peer=GUNICORN + ("flask_app:app",)),
    vivarium("flask", "flask_app:app", 1, venv="flask", workloads=("hello", "cpu")),
    ServerSpec("granian-wsgi", "Granian WSGI Flask 2w", "granian", "flask", venv="granian",
               peer=granian("wsgi", "flask_app:app", "{port}")),
    vivarium("flask", "flask_app:app", 2, venv="flask", workloads=("hello", "cpu", "transfer")),
    # The same app and Caddyfile served by the wheel's `vivarium`: Caddy as an
    # extension module of the venv's python, whose interpreter it embeds.
    vivarium("flask", "flask_app:app", 2, venv="flask", workloads=("hello-target",), host="wheel"),
    # The default is 4 threads per interpreter, for apps that wait on I/O; one
    # thread shows the tail latency of a CPU-bound app without GIL contention.
    vivarium("flask", "flask_app:app", 2, venv="flask", threads=1),
    ServerSpec("gunicorn-gthread", "gunicorn gthread 2w x 4t + Caddy", "gunicorn", "flask",
               workloads=("hello", "transfer"), caddy_site=PROXY, venv="gunicorn",
               peer=GUNICORN + ("--worker-class", "gthread", "--threads", "4", "flask_app:app")),
    vivarium("raw", "wsgi_hello:app", 2),
    ServerSpec("granian-wsgi-caddy", "Granian WSGI Flask 2w + Caddy", "granian", "flask",
               caddy_site=PROXY, venv="granian", peer=granian("wsgi", "flask_app:app", "{upstream}")),
    vivarium("django", "django_app:application", 1, venv="django"),
    ServerSpec("uvicorn-caddy", "uvicorn Starlette 2w + Caddy", "uvicorn", "starlette",
               caddy_site=PROXY, venv="uvicorn", peer=uvicorn("starlette_app:app")),
    vivarium("starlette", "starlette_app:app", 1, asgi=True, venv="starlette"),
    ServerSpec("granian-asgi", "Granian ASGI Starlette 2w", "granian", "starlette", venv="granian",
               peer=granian("asgi", "starlette_app:app", "{port}") + ("--loop", "uvloop")),
    vivarium("starlette", "starlette_app:app", 2, asgi=True, venv="starlette"),
    ServerSpec("granian-asgi-caddy", "Granian ASGI Starlette 2w + Caddy", "granian", "starlette",
               caddy_site=PROXY, venv="granian",
               peer=granian("asgi", "starlette_app:app", "{upstream}") + ("--loop", "uvloop")),
    vivarium("django", "django_app:application", 2, venv="django"),
    vivarium("fastapi", "fastapi_app:app", 1, asgi=True, venv="fastapi", isolation="main"),
    ServerSpec("uvicorn-fastapi-caddy", "uvicorn FastAPI 2w + Caddy", "uvicorn", "fastapi",
               caddy_site=PROXY, venv="uvicorn", peer=uvicorn("fastapi_app:app")),
    # isolation process: each interpreter is a child process of Caddy.
    vivarium("fastapi", "fastapi_app:app", 2, asgi=True, venv="fastapi", isolation="process"),
    ServerSpec("granian-fastapi", "Granian ASGI FastAPI 2w", "granian", "fastapi", venv="granian",
               peer=granian("asgi", "fastapi_app:app", "{port}") + ("--loop", "uvloop")),
    vivarium("flask", "flask_app:app", 2, venv="flask", isolation="process"),
    vivarium("raw", "wsgi_hello:app", 1, isolation="process"),
]

# Packages whose versions go into the report, per venv.
VERSIONED = {
    "flask": ["flask", "werkzeug"], "django": ["django"], "starlette": ["starlette"],
    "fastapi": ["fastapi", "pydantic", "starlette"], "gunicorn": ["gunicorn"],
    "uvicorn": ["uvicorn", "uvloop", "httptools", "fastapi"], "granian": ["granian", "uvloop", "fastapi"],
    "charts": ["matplotlib"],
}

# Ratios computed from the run: (name, numerator, denominator, at least).
# Numerator and denominator are the req/s of (server, endpoint) at TARGET_CONNS.
TARGETS = [
    ("Flask 2 interp vs Granian WSGI 2 workers", ("vivarium-flask-2", "hello"),
     ("granian-wsgi", "hello"), 1.0),
    ("Flask 2 interp vs gunicorn sync 2 workers + Caddy", ("vivarium-flask-2", "hello"),
     ("gunicorn-sync", "hello"), 4.0),
    ("raw WSGI 1 interp vs Caddy respond", ("vivarium-raw-1", "hello"),
     ("caddy-respond", "hello"), 0.6),
    ("raw WSGI 2 interp vs Caddy respond", ("vivarium-raw-2", "hello"),
     ("caddy-respond", "hello"), 0.6),
    ("Starlette 2 interp vs Granian ASGI 2 workers", ("vivarium-starlette-2", "hello"),
     ("granian-asgi", "hello"), 0.8),
    ("CPU-bound: Flask 2 interp vs 1 interp", ("vivarium-flask-2", "cpu"),
     ("vivarium-flask-1", "cpu"), 1.8),
    ("Flask 2 interp: pip wheel vs bin/caddy", ("vivarium-flask-2-wheel", "hello"),
     ("vivarium-flask-2", "hello"), 0.95),
    ("FastAPI 2 processes vs uvicorn 2 workers + Caddy", ("vivarium-fastapi-2-process", "hello"),
     ("uvicorn-fastapi-caddy", "hello"), 1.5),
    ("FastAPI 2 processes vs Granian ASGI FastAPI 2 workers", ("vivarium-fastapi-2-process", "hello"),
     ("granian-fastapi", "hello"), 0.9),
    ("Flask 2 processes vs Flask 2 interp", ("vivarium-flask-2-process", "hello"),
     ("vivarium-flask-2", "hello"), 0.8),
]
# The servers the targets compare are measured again in extra rounds, in
# alternating order, and each target is the median of its rounds: on a shared
# 2-core machine the speed of everything drifts by 20% over minutes, enough to
# flip a ratio near 1 within one run.
TARGET_ROUNDS = 3
RSS_PER_INTERPRETER_TARGET_MIB = 20
P99_OVER_P50_TARGET = 3.0
P99_TARGET_SERVERS = {"vivarium-flask-2": "Flask 2 interp", "vivarium-flask-2-t1": "Flask 2 interp x 1 thread"}

# =============================================================================
# Setup: wrk, venvs, versions.
# =============================================================================


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_wrk() -> None:
    """Installs Debian's wrk when it is missing (apt-get update only if needed)."""
    if shutil.which("wrk"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("installing wrk from Debian")
    if subprocess.run(sudo + ["apt-get", "install", "-y", "wrk"], env=env).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update"], env=env, check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "wrk"], env=env, check=True)
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is still not on PATH after apt-get install wrk")


def ensure_venv(name: str, python: str) -> Path:
    """bench/.venvs/<name> from bench/requirements/<name>.txt, rebuilt when the
    requirements or the Python change (stamped by their hash)."""
    req = REQUIREMENTS / f"{name}.txt"
    venv = VENVS / name
    stamp = venv / ".bench-stamp"
    digest = hashlib.sha256(req.read_bytes() + python.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return venv
    log(f"creating venv {os.path.relpath(venv)} from {os.path.relpath(req)}")
    subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                          "-r", str(req)], capture_output=True, text=True)
    if pip.returncode != 0:
        sys.exit(f"bench: pip install -r {req} failed:\n{pip.stdout}{pip.stderr}")
    stamp.write_text(digest)
    return venv


def ensure_wheel_venv(python: str) -> Path:
    """bench/.venvs/wheel: the wheel of dist/ for this Python, pip-installed
    (make bench runs make wheel first); remade when the wheel changes."""
    tag = command_output([python, "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"])
    wheels = sorted((ROOT / "dist").glob(f"vivarium-*-{tag}-{tag}-*.whl"))
    if len(wheels) != 1:
        sys.exit(f"bench: want one {tag} wheel in dist/, found {len(wheels)}: run make wheel")
    venv = VENVS / "wheel"
    stamp = venv / ".bench-stamp"
    digest = hashlib.sha256(wheels[0].read_bytes() + python.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return venv
    log(f"creating venv {os.path.relpath(venv)} with {wheels[0].name}")
    subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheels[0])],
                   check=True)
    stamp.write_text(digest)
    return venv


def ensure_venvs(names, python: str) -> dict[str, Path]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {n: pool.submit(ensure_wheel_venv, python) if n == "wheel" else
                   pool.submit(ensure_venv, n, python) for n in names}
        return {n: f.result() for n, f in futures.items()}


def command_output(cmd, **kw) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, **kw).stdout.strip()
    except OSError:
        return ""


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
        "libpython": libpython_link(caddy, python),
    }
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


# =============================================================================
# Processes: the serving process tree, its CPU time and memory.
# =============================================================================

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_tree(roots: list[int]) -> list[int]:
    """The roots and all their descendants that are alive."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    seen, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen or not Path(f"/proc/{pid}").exists():
            continue
        seen.append(pid)
        todo.extend(children.get(pid, []))
    return seen


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return ticks / CLK_TCK


def machine_busy_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy (all cores) and stolen by
    the hypervisor, from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def children_cpu_seconds() -> float:
    """CPU of this script's reaped children: wrk, around one run of it."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def memory_mib(pids: list[int]) -> tuple[float, float, float]:
    """Summed VmRSS, Pss and RssAnon of the processes, MiB. RSS counts pages
    that forked workers share once per worker; Pss splits them. RssAnon leaves
    out the mapped executable and libraries (see evict_from_page_cache)."""
    rss = pss = anon = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh)
            rss += int(fields["VmRSS"].split()[0])
            anon += int(fields["RssAnon"].split()[0])
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                pss += next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        except (OSError, KeyError, StopIteration):
            pass
    return round(rss / 1024, 1), round(pss / 1024, 1), round(anon / 1024, 1)


def evict_from_page_cache(path: Path) -> None:
    """Drops a file's cached pages. How much of bin/caddy's 90 MiB counts in RSS
    depends on how the page cache holds it: freshly linked, the kernel kept it
    in 2 MiB folios and mapped nearly all its text and data, 16 MiB more RSS
    than after it was read back from disk (87 against 103 MiB for Flask with 1
    interpreter, the same binary). Evicted before each start, every server
    maps it alike. Pages a running process maps stay; none should then."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# =============================================================================
# Servers: start, check, stop.
# =============================================================================


def port_free(port: int) -> bool:
    """Whether a server could listen on the port now (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_port_free(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not port_free(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} is still taken after {timeout:.0f} s; "
                               f"another program uses it (ss -ltnp 'sport = :{port}')")
        time.sleep(0.2)


def fetch(url: str, upload: int = 0, timeout: float = 10) -> tuple[int, bytes]:
    data = b"x" * upload if upload else None
    req = urllib.request.Request(url, data=data, method="POST" if upload else "GET")
    if upload:
        req.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def check_answer(url: str, ep: Endpoint) -> tuple[str | None, bool]:
    """(None, _) when the endpoint answers as it must; otherwise (what is
    wrong, whether it may be a server still starting)."""
    try:
        status, body = fetch(url + ep.path, ep.upload)
    except (OSError, urllib.error.URLError) as err:
        return f"no answer: {err}", True
    if status != 200:
        # 502/503: Caddy is up, what it proxies to is not yet.
        return f"status {status}: {body[:200]!r}", status in (502, 503)
    if ep.expect is not None and body != ep.expect:
        return f"wrong body {body[:200]!r}, want {ep.expect[:200]!r}", False
    if ep.expect_len is not None and len(body) != ep.expect_len:
        return f"body of {len(body)} bytes, want {ep.expect_len}", False
    return None, False


class Server:
    """A running ServerSpec: Caddy and/or a peer, each in its own process group."""

    def __init__(self, spec: ServerSpec, caddy: Path, venvs: dict[str, Path], tag: str = ""):
        self.spec = spec
        self.caddy = caddy
        self.venvs = venvs
        self.tag = tag or spec.name
        self.procs: list[subprocess.Popen] = []
        self.url = f"http://127.0.0.1:{PORT}"

    def _fill(self, text: str) -> str:
        venv = self.venvs.get(self.spec.venv, "") if self.spec.venv else ""
        return (text.replace("{apps}", str(APPS)).replace("{venv}", str(venv))
                .replace("{port}", str(PORT)).replace("{upstream}", str(UPSTREAM_PORT)))

    def _spawn(self, argv: list[str], what: str, cwd: Path) -> None:
        logfile = open(RAW / f"{self.tag}.{what}.log", "wb")
        env = dict(os.environ, XDG_DATA_HOME=str(RAW / "xdg"), XDG_CONFIG_HOME=str(RAW / "xdg"),
                   PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=logfile,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        logfile.close()
        self.procs.append(proc)
        if self not in RUNNING:
            RUNNING.append(self)

    def caddyfile(self) -> Path:
        site = self._fill(self.spec.caddy_site)
        text = ("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n}\n\n"
                f"http://127.0.0.1:{PORT} {{\n\t{site}\n}}\n")
        path = RAW / f"{self.tag}.Caddyfile"
        path.write_text(text)
        return path

    def start(self, endpoints: list[Endpoint], timeout: float = 90) -> None:
        """Starts the processes and waits until every endpoint answers correctly."""
        ports = [PORT] + ([UPSTREAM_PORT] if self.spec.peer and self.spec.caddy_site else [])
        for port in ports:
            wait_port_free(port)
        if self.spec.peer:
            self._spawn([self._fill(a) for a in self.spec.peer], "peer", APPS)
        if self.spec.caddy_site:
            command = self.caddy
            if self.spec.host == "wheel":
                command = self.venvs["wheel"] / "bin" / "vivarium"
                for module in (self.venvs["wheel"] / "lib").glob("python*/site-packages/vivarium/_caddy*.so"):
                    evict_from_page_cache(module)
            else:
                evict_from_page_cache(self.caddy)
            self._spawn([str(command), "run", "--adapter", "caddyfile",
                         "--config", str(self.caddyfile())], "caddy", ROOT)
        deadline = time.monotonic() + timeout
        pending = list(endpoints)
        problem = "not started"
        while pending:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.tag}: {proc.args[0]} exited with {proc.returncode}\n"
                                       + self.log_tail())
            problem, starting = check_answer(self.url, pending[0])
            if problem is None:
                pending.pop(0)
                continue
            if not starting or time.monotonic() > deadline:
                raise RuntimeError(f"{self.tag}: {pending[0].path} does not answer correctly: "
                                   f"{problem}\n" + self.log_tail())
            time.sleep(0.3)

    def pids(self) -> list[int]:
        return process_tree([p.pid for p in self.procs])

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in sorted(RAW.glob(f"{self.tag}.*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {os.path.relpath(path)} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(out)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to each process group we started, SIGKILL after timeout;
        then waits for the ports to be free."""
        for proc in reversed(self.procs):  # Caddy first, then what it proxied to
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.tag}: pid {proc.pid} ignored SIGTERM for {timeout:.0f} s; SIGKILL")
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            # Workers left in the group (their parent gone) are ours too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.procs = []
        if self in RUNNING:
            RUNNING.remove(self)
        wait_port_free(PORT)
        wait_port_free(UPSTREAM_PORT)


RUNNING: list[Server] = []


def stop_all() -> None:
    for server in list(RUNNING):
        try:
            server.stop(timeout=10)
        except Exception as err:  # noqa: BLE001 - best effort while exiting
            log(f"stopping {server.tag}: {err}")


# =============================================================================
# Load: wrk and the measurements around it.
# =============================================================================


def run_wrk(url: str, conns: int, duration: int, upload: int = 0) -> dict:
    env = dict(os.environ, BENCH_BODY_BYTES=str(upload))
    cmd = ["wrk", f"-t{min(WRK_THREADS, conns)}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
           "--latency", "-s", str(WRK_SCRIPT), url]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
    match = re.search(r"^BENCH_JSON (.*)$", out.stdout, re.M)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
    return json.loads(match.group(1))


def measure_point(server: Server, endpoint: str, conns: int, duration: int, warmup: int) -> dict:
    ep = ENDPOINTS[endpoint]
    url = server.url + ep.path
    if warmup > 0:
        run_wrk(url, conns, warmup, ep.upload)
    pids = server.pids()
    cpu_before, wrk_before, (busy_before, steal_before) = \
        cpu_seconds(pids), children_cpu_seconds(), machine_busy_seconds()
    res = run_wrk(url, conns, duration, ep.upload)
    cpu = cpu_seconds(pids) - cpu_before
    wrk_cpu = children_cpu_seconds() - wrk_before
    busy, steal = machine_busy_seconds()
    # CPU that neither the server nor wrk used: other programs on the machine.
    other = max(0.0, busy - busy_before - cpu - wrk_cpu)
    rss, pss, anon = memory_mib(server.pids())
    requests = res["requests"]
    seconds = res["duration_us"] / 1e6
    errors = sum(res["errors"].values())
    lat = res["latency_us"]
    spec = server.spec
    point = {
        "server": spec.name, "label": spec.label, "family": spec.family, "app": spec.app,
        "interpreters": spec.interpreters,
        "endpoint": endpoint, "conns": conns, "duration_s": round(seconds, 2),
        "requests": requests, "rps": round(requests / seconds, 1),
        # wrk counts bytes received; an upload's body goes the other way.
        "mib_per_s": round((res["bytes"] + requests * ep.upload) / seconds / 2**20, 1),
        "p50_ms": round(lat["p50"] / 1000, 3), "p90_ms": round(lat["p90"] / 1000, 3),
        "p99_ms": round(lat["p99"] / 1000, 3), "max_ms": round(lat["max"] / 1000, 3),
        "errors": res["errors"], "error_count": errors,
        "cpu_s": round(cpu, 2), "cpu_us_per_req": round(cpu / requests * 1e6, 1) if requests else None,
        "rss_mib": rss, "pss_mib": pss, "anon_mib": anon, "processes": len(pids),
        "client_cpu_s": round(wrk_cpu, 2),
        "other_cpu_pct": round(100 * other / seconds, 1),  # % of one core
        "steal_cpu_pct": round(100 * (steal - steal_before) / seconds, 1),
    }
    if errors:
        log(f"  WARNING {spec.name} {endpoint} c={conns}: {res['errors']} errors of {requests} requests")
    return point


def run_server(spec: ServerSpec, caddy: Path, venvs, duration: int, warmup: int,
               conns_filter=None) -> list[dict]:
    """Starts one server, measures all its points, stops it."""
    plan = [(ep, c) for w in spec.workloads for ep, conns in WORKLOADS[w] for c in conns
            if conns_filter is None or c in conns_filter]
    log(f"{spec.name}: starting ({spec.label})")
    return measure_plan(spec, caddy, venvs, plan, duration, warmup)


def measure_plan(spec: ServerSpec, caddy: Path, venvs, plan: list[tuple[str, int]], duration: int,
                 warmup: int, rnd: int | None = None) -> list[dict]:
    """Starts the server, measures each (endpoint, connections) of plan, stops it.
    Points of an extra target round carry its number."""
    server = Server(spec, caddy, venvs, tag=f"{spec.name}-round{rnd}" if rnd else "")
    points = []
    try:
        server.start(list(dict.fromkeys(ENDPOINTS[ep] for ep, _ in plan)))
        for ep, conns in plan:
            point = measure_point(server, ep, conns, duration, warmup)
            if rnd:
                point["round"] = rnd
            points.append(point)
            log(f"  {f'round {rnd} {spec.name} ' if rnd else ''}{ep:8} c={conns:<3} {point['rps']:>9.0f} req/s"
                f"  p50 {point['p50_ms']:.2f} ms  p99 {point['p99_ms']:.2f} ms  cpu {point['cpu_us_per_req']} us/req"
                f"  rss {point['rss_mib']} MiB  others {point['other_cpu_pct']:.0f}% cpu")
    finally:
        server.stop()
    return points


def measure_target_rounds(servers: list[ServerSpec], caddy: Path, venvs, duration: int,
                          warmup: int, total_rounds: int) -> list[dict]:
    """Rounds 2..total_rounds of the points the targets use, at TARGET_CONNS."""
    wanted: dict[str, list[str]] = {}
    pairs = [p for _, num, den, _ in TARGETS for p in (num, den)] + [(n, "hello") for n in P99_TARGET_SERVERS]
    for name, endpoint in pairs:
        if endpoint not in wanted.setdefault(name, []):
            wanted[name].append(endpoint)
    specs = [s for s in servers if s.name in wanted]
    points = []
    for rnd in range(2, total_rounds + 1):
        for spec in (specs if rnd % 2 else list(reversed(specs))):
            plan = [(e, TARGET_CONNS) for e in wanted[spec.name]]
            points += measure_plan(spec, caddy, venvs, plan, duration, warmup, rnd)
    return points


def measure_idle_rss(caddy: Path, venvs) -> dict:
    """RSS of Caddy serving the Flask app with 1, 2 and 4 interpreters, after a
    short warm-up that reaches every interpreter, then a second of idling."""
    out = {}
    for n in IDLE_RSS_INTERPRETERS:
        spec = vivarium("flask", "flask_app:app", n, venv="flask")
        server = Server(spec, caddy, venvs, tag=f"idle-rss-{n}")
        try:
            server.start([ENDPOINTS["hello"]])
            run_wrk(server.url + "/", 16, 1)
            time.sleep(1.0)
            rss, pss, anon = memory_mib(server.pids())
            out[str(n)] = {"rss_mib": rss, "pss_mib": pss, "anon_mib": anon}
            log(f"idle RSS, Flask, {n} interpreter(s): {rss} MiB")
        finally:
            server.stop()
    ns = IDLE_RSS_INTERPRETERS
    first, last = out[str(ns[0])]["rss_mib"], out[str(ns[-1])]["rss_mib"]
    out["per_extra_interpreter_mib"] = round((last - first) / (ns[-1] - ns[0]), 1)
    return out


def run_go_bench(python: str, benchtime: str) -> dict:
    """plugin/bridge_bench_test.go: a no-op app through the scheduler and the
    C workers, no HTTP. Uses the CGO flags `make` exports, or makes them."""
    env = dict(os.environ)
    if "CGO_LDFLAGS" not in env:
        cfg = python + "-config"
        libdir = command_output([python, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"])
        env.update(CGO_ENABLED="1", CGO_CFLAGS=command_output([cfg, "--includes"]) + " -O2 -g",
                   CGO_LDFLAGS=command_output([cfg, "--embed", "--ldflags"]) + f" -Wl,-rpath,{libdir}")
    cmd = ["go", "test", "-bench", "Bridge", "-run", "^$", "-benchtime", benchtime, "-count", "1", "./plugin"]
    log("go " + " ".join(cmd[1:]))
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    (RAW / "go-bench.txt").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError("go test -bench Bridge failed:\n" + out.stdout[-3000:] + out.stderr[-3000:])
    results = {}
    for m in re.finditer(r"^(BenchmarkBridge\S+?)(?:-\d+)?\s+(\d+)\s+([\d.]+) ns/op(?:\s+([\d.]+) cpu-us/op)?"
                         r"(?:\s+(\d+) B/op\s+(\d+) allocs/op)?", out.stdout, re.M):
        results[m.group(1)] = {"iterations": int(m.group(2)), "ns_per_op": float(m.group(3)),
                               "cpu_us_per_op": float(m.group(4)) if m.group(4) else None,
                               "bytes_per_op": int(m.group(5) or 0), "allocs_per_op": int(m.group(6) or 0)}
        log(f"  {m.group(1)}: {float(m.group(3)):.0f} ns/op")
    return results


# =============================================================================
# Results: targets, JSON, Markdown, charts.
# =============================================================================


def find_point(points, server, endpoint, conns=TARGET_CONNS):
    for p in points:
        if p["server"] == server and p["endpoint"] == endpoint and p["conns"] == conns:
            return p
    return None


def rounds_of(points, rounds, server, endpoint) -> list[dict]:
    """The point of round 1 (the main run) and those of the extra rounds."""
    first = find_point(points, server, endpoint)
    extra = [p for p in rounds if p["server"] == server and p["endpoint"] == endpoint]
    return ([first] if first else []) + sorted(extra, key=lambda p: p["round"])


def ratio_row(target: str, ratios: list[float], parts: list[str], wanted: float, at_least: bool) -> dict:
    """A target row from the ratio each round measured: their median against wanted."""
    value = round(statistics.median(ratios), 2) if ratios else None
    detail = "; ".join(parts) or "not measured"
    if len(ratios) > 1:
        detail = f"median of {len(ratios)} rounds: " + detail
    met = None if value is None else (value >= wanted if at_least else value <= wanted)
    return {"target": target, "value": value, "wanted": f"{'>=' if at_least else '<='} {wanted:g}x",
            "met": met, "ratios": [round(r, 3) for r in ratios], "detail": detail}


def compute_targets(points, idle_rss, rounds=()) -> list[dict]:
    out = []
    for name, (ns, ne), (ds, de), wanted in TARGETS:
        pairs = [(n, d) for n, d in zip(rounds_of(points, rounds, ns, ne), rounds_of(points, rounds, ds, de))
                 if d["rps"]]
        ratios = [n["rps"] / d["rps"] for n, d in pairs]
        parts = [f"{n['rps']:.0f} / {d['rps']:.0f} = {r:.2f}" for (n, d), r in zip(pairs, ratios)]
        if parts:
            parts[0] = "req/s " + parts[0]
        out.append(ratio_row(name, ratios, parts, wanted, at_least=True))
    per = idle_rss.get("per_extra_interpreter_mib") if idle_rss else None
    out.append({"target": "RSS per extra Flask interpreter", "value": per,
                "wanted": f"<= {RSS_PER_INTERPRETER_TARGET_MIB} MiB",
                "met": None if per is None else per <= RSS_PER_INTERPRETER_TARGET_MIB,
                "detail": "idle, " + ", ".join(f"{n} interp {idle_rss[str(n)]['rss_mib']} MiB"
                                                for n in IDLE_RSS_INTERPRETERS) if per is not None else "not measured"})
    for server, label in P99_TARGET_SERVERS.items():
        ps = [p for p in rounds_of(points, rounds, server, "hello") if p["p50_ms"]]
        ratios = [p["p99_ms"] / p["p50_ms"] for p in ps]
        parts = [f"p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms = {r:.2f}" for p, r in zip(ps, ratios)]
        out.append(ratio_row(f"p99 / p50 at {TARGET_CONNS} conns ({label})", ratios, parts,
                             P99_OVER_P50_TARGET, at_least=False))
    return out


MET = {True: "yes", False: "**no**", None: "not measured"}


def fmt(value, digits=0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def markdown(results: dict) -> str:
    points, meta = results["points"], results["meta"]
    m, v = meta["machine"], meta["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/run.py`); raw numbers in [`results.json`](results.json).",
        "Re-run it to refresh this page. All servers ran on the same machine as the load generator,",
        "one after the other in one session, Vivarium and its peers alternating.",
        "",
        "## Machine and versions",
        "",
        "| | |",
        "| --- | --- |",
        f"| Date | {meta['date']} |",
        f"| Run took | {meta['took_s']:.0f} s |",
        f"| Machine | {m['nproc']} CPUs, {m['cpu_model']}, {m['memory_gib']} GiB, Linux {m['kernel']} |",
        f"| Load average before / after | {' '.join(f'{x:.2f}' for x in m['loadavg_start'])} / "
        f"{' '.join(f'{x:.2f}' for x in m.get('loadavg_end', []))} |",
    ]
    others = [p["other_cpu_pct"] for p in points]
    if others:
        lines.append(f"| Other programs' CPU during the runs | mean {sum(others) / len(others):.0f}%, "
                     f"max {max(others):.0f}% of one core (0 on a quiet machine; see \"Others\" below) |")
    for key in ["go", "python", "libpython", "caddy", "wrk", "gunicorn", "uvicorn", "uvloop", "httptools", "granian",
                "flask", "werkzeug", "django", "starlette", "fastapi", "pydantic", "matplotlib"]:
        if key in v:
            lines.append(f"| {key} | {v[key]} |")
    lines += [
        f"| Each point | {meta['warmup_s']:g} s warm-up, then {meta['duration_s']:g} s measured; "
        f"wrk -t{WRK_THREADS}, --latency |",
        f"| /cpu request | {meta.get('cpu_work_ms')} ms of pure Python (measured alone) |",
        "",
        "## Targets",
        "",
        f"Computed from this run, at {TARGET_CONNS} connections unless said otherwise; met or not, as "
        "measured. " + (f"The servers a target compares ran {meta['target_rounds']} times in all (the main "
                        "run, then rounds in alternating order), and the target is the median of the "
                        "rounds' ratios: the speed of a shared machine drifts by tens of percent within "
                        "minutes, and moves all servers alike only over seconds."
                        if meta.get("target_rounds", 1) > 1 else
                        "Each server ran once: a ratio near a target may fall either side of it in "
                        "another run."),
        "",
        "| Target | Measured | Wanted | Met | From |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in results["targets"]:
        unit = " MiB" if "RSS" in t["target"] else "x"
        value = "-" if t["value"] is None else f"{t['value']}{unit}"
        lines.append(f"| {t['target']} | {value} | {t['wanted']} | {MET[t['met']]} | {t['detail']} |")

    hello = [s for s in dict.fromkeys(p["server"] for p in points if p["endpoint"] == "hello")]
    if hello:
        lines += ["", "## Hello world", "",
                  "Requests per second by connections; latency, server CPU per request and RSS at "
                  f"{TARGET_CONNS} connections. \"+ Caddy\": behind our binary's `reverse_proxy`; CPU and "
                  "RSS then include Caddy.", "",
                  "| Server | " + " | ".join(f"c={c}" for c in HELLO_CONNS)
                  + f" | p50 ms | p99 ms | CPU µs/req | RSS MiB |",
                  "| --- | " + " | ".join("---:" for _ in HELLO_CONNS) + " | ---: | ---: | ---: | ---: |"]
        for s in hello:
            row = [find_point(points, s, "hello", c) for c in HELLO_CONNS]
            at = find_point(points, s, "hello")
            label = next(p["label"] for p in points if p["server"] == s)
            lines.append(f"| {label} | " + " | ".join(fmt(p and p["rps"]) for p in row)
                         + f" | {fmt(at and at['p50_ms'], 2)} | {fmt(at and at['p99_ms'], 2)}"
                         f" | {fmt(at and at['cpu_us_per_req'])} | {fmt(at and at['rss_mib'])} |")

    lines += ["", "## Every point", "",
              "\"Others\": CPU used meanwhile by programs other than the server and wrk, in % of one core "
              "(noise; 0 on a quiet machine).", "",
              "| Server | Endpoint | Conns | req/s | MiB/s | p50 ms | p99 ms | CPU µs/req | RSS MiB | PSS MiB "
              "| Errors | Others |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in points:
        lines.append(f"| {p['label']} | {p['endpoint']} | {p['conns']} | {fmt(p['rps'])} | {fmt(p['mib_per_s'])} | "
                     f"{fmt(p['p50_ms'], 2)} | {fmt(p['p99_ms'], 2)} | {fmt(p['cpu_us_per_req'])} | "
                     f"{fmt(p['rss_mib'])} | {fmt(p['pss_mib'])} | {p['error_count']} | "
                     f"{fmt(p['other_cpu_pct'])}% |")

    idle = results.get("idle_rss")
    if idle:
        lines += ["", "## Memory per interpreter", "",
                  "Caddy serving the Flask app, after a 1 s warm-up at 16 connections and 1 s idle. bin/caddy is "
                  "evicted from the page cache before each start: otherwise a freshly linked binary, held in "
                  "large folios, maps about 16 MiB more of itself. Anonymous memory (Go and C heaps, Python) "
                  "does not depend on that.", "",
                  "| Interpreters | RSS MiB | PSS MiB | Anonymous MiB |", "| ---: | ---: | ---: | ---: |"]
        for n in IDLE_RSS_INTERPRETERS:
            lines.append(f"| {n} | {idle[str(n)]['rss_mib']} | {idle[str(n)]['pss_mib']} | "
                         f"{fmt(idle[str(n)].get('anon_mib'), 1)} |")
        lines += ["", f"Per extra interpreter: **{idle['per_extra_interpreter_mib']} MiB**."]

    go = results.get("go_bench")
    if go:
        lines += ["", "## Bridge without HTTP (Go benchmark)", "",
                  "`plugin/bridge_bench_test.go`: a no-op app through `ServeHTTP`, the scheduler and a C worker "
                  "thread (WSGI) or the event loop (ASGI), with `httptest.ResponseRecorder`; no sockets. "
                  "`serial`: one request at a time, 1 interpreter, 1 thread (latency of a round trip). "
                  "`parallel-2interp`: handler goroutines in parallel, 2 interpreters x 4 threads "
                  "(wall time per request, i.e. 1/throughput). `BridgeProcess*`: the same through a child "
                  "process and its socket (`isolation process`; `parallel-2proc`: 2 processes x 4 threads); "
                  "their difference to `Bridge*` is the transport's cost. CPU counts every process.", "",
                  "| Benchmark | ns/op | CPU us/op | B/op | allocs/op |", "| --- | ---: | ---: | ---: | ---: |"]
        for name, r in go.items():
            lines.append(f"| {name} | {fmt(r['ns_per_op'])} | {fmt(r.get('cpu_us_per_op'), 1)} | "
                         f"{r['bytes_per_op']} | {r['allocs_per_op']} |")

    lines += ["", "## Charts", ""]
    for png, title in CHARTS:
        if (DOCS / png).exists():
            lines += [f"![{title}]({png})", ""]

    lines += ["## Method", "",
              "- **Load**: wrk (closed loop: each connection sends its next request when the previous "
              f"answer arrived), {WRK_THREADS} thread, on the same machine; it competes with the server for "
              "the cores, which is why CPU per request is reported beside req/s. Closed-loop tools "
              "under-report tail latency at saturation; p99 here is the p99 of a saturated server.",
              "- **CPU per request**: utime + stime from `/proc/<pid>/stat` of every serving process (Caddy, "
              "gunicorn/uvicorn/Granian and their workers), read before and after the measured run, divided "
              "by the requests of that run. The load generator is not counted.",
              "- **RSS**: summed `VmRSS` of the same processes after the run. Forked workers share pages "
              "which RSS counts once per process; PSS (`/proc/<pid>/smaps_rollup`) splits them.",
              "- **Apps**: `bench/apps/`. The same Flask and Starlette code runs in Vivarium and in the peers. "
              "Vivarium runs 4 threads per interpreter (the default); gunicorn gthread 2 workers x 4 threads; "
              "Granian's defaults besides 2 workers (uvloop for ASGI); uvicorn 2 workers with uvloop and "
              "httptools. FastAPI runs with `isolation main` (pydantic_core refuses own-GIL interpreters), "
              "so only with 1 interpreter.",
              f"- **Heavy points** use fewer connection counts: /cpu at {', '.join(map(str, CPU_CONNS))}; "
              f"the 1 MiB download and 10 MiB upload at {', '.join(map(str, TRANSFER_CONNS))}.",
              "- Every server is checked before it is measured: each endpoint must answer 200 with the "
              "expected body. Server logs of the last run are in `docs/benchmarks/raw/` (not committed).",
              ""]
    return "\n".join(lines)


CHARTS = [
    ("hello_64.png", f"Hello world, requests/s at {TARGET_CONNS} connections"),
    ("scaling.png", "Hello world, requests/s by connections"),
    ("cpu_bound.png", "CPU-bound endpoint: 1 vs 2 interpreters"),
    ("cpu_per_request.png", f"Server CPU per request at {TARGET_CONNS} connections"),
]


def make_charts(venv: Path) -> None:
    out = subprocess.run([str(venv / "bin" / "python"), str(BENCH / "charts.py"), str(DOCS / "results.json"),
                          str(DOCS)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("bench/charts.py failed:\n" + out.stdout + out.stderr)


# =============================================================================
# Main.
# =============================================================================


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--caddy", default=str(ROOT / "bin" / "caddy"), help="the binary under test")
    ap.add_argument("--duration", type=int, default=DURATION, help="seconds measured per point")
    ap.add_argument("--warmup", type=int, default=WARMUP, help="seconds of warm-up per point")
    ap.add_argument("--quick", action="store_true", help="1 s points, 1, 16 and 64 connections: for development")
    ap.add_argument("--only", action="append",
                    help="run the server of this name, or those whose name contains it (repeatable)")
    ap.add_argument("--conns", help="comma-separated connection counts to keep")
    ap.add_argument("--target-rounds", type=int, default=TARGET_ROUNDS,
                    help="times the servers a target compares are measured, the main run included")
    ap.add_argument("--skip-go", action="store_true", help="skip the Go benchmark")
    ap.add_argument("--skip-idle-rss", action="store_true", help="skip the memory-per-interpreter runs")
    ap.add_argument("--go-benchtime", help="go test -benchtime (default 2s, 0.5s with --quick)")
    ap.add_argument("--out", default=str(DOCS), help="where results.json, README.md and charts go")
    return ap.parse_args()


def main() -> int:
    global DOCS, RAW
    args = parse_args()
    if args.quick:
        args.duration, args.warmup = 1, 1
        args.conns = args.conns or "1,16,64"
        args.go_benchtime = args.go_benchtime or "0.5s"
    args.go_benchtime = args.go_benchtime or "2s"
    DOCS = Path(args.out).resolve()
    RAW = DOCS / "raw"
    RAW.mkdir(parents=True, exist_ok=True)
    conns_filter = {int(c) for c in args.conns.split(",")} if args.conns else None
    caddy = Path(args.caddy).resolve()
    if not caddy.exists():
        sys.exit(f"bench: {caddy} not found; run make build")
    python = os.environ.get("PYTHON") or command_output([str(ROOT / "scripts" / "find-python.sh")])
    if not python:
        sys.exit("bench: no embeddable Python found (scripts/find-python.sh)")
    started = time.monotonic()

    ensure_wrk()
    names = {s.name for s in SERVERS}
    # A whole name picks that server alone; a part of one, every server with it.
    servers = [s for s in SERVERS if not args.only
               or any(o == s.name or (o not in names and o in s.name) for o in args.only)]
    venv_names = ({s.venv for s in servers if s.venv} | {"flask", "charts"}
                  | ({"wheel"} if any(s.host == "wheel" for s in servers) else set()))
    venvs = ensure_venvs(sorted(venv_names), python)
    ENDPOINTS["cpu"] = Endpoint("/cpu", expect=cpu_expect())
    target_rounds = 1 if args.quick else max(1, args.target_rounds)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "versions": versions(python, caddy, venvs),
        "duration_s": args.duration, "warmup_s": args.warmup,
        "target_rounds": target_rounds,
        "cpu_work_ms": measure_cpu_work(venvs["flask"]),
    }
    log(f"machine: {meta['machine']}")
    log(f"versions: {meta['versions']}")

    points, idle_rss, go_bench = [], {}, {}
    for spec in servers:
        points += run_server(spec, caddy, venvs, args.duration, args.warmup, conns_filter)
    rounds = []
    if target_rounds > 1:
        log(f"targets: {target_rounds - 1} more rounds of the servers they compare, at {TARGET_CONNS} conns")
        rounds = measure_target_rounds(servers, caddy, venvs, args.duration, args.warmup, target_rounds)
    if not args.skip_idle_rss:
        idle_rss = measure_idle_rss(caddy, venvs)
    if not args.skip_go:
        go_bench = run_go_bench(python, args.go_benchtime)

    meta["machine"]["loadavg_end"] = os.getloadavg()
    meta["took_s"] = round(time.monotonic() - started)
    results = {"meta": meta, "points": points, "target_rounds": rounds, "idle_rss": idle_rss,
               "go_bench": go_bench, "targets": compute_targets(points, idle_rss, rounds)}
    (DOCS / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    make_charts(venvs["charts"])
    (DOCS / "README.md").write_text(markdown(results))
    others = [p["other_cpu_pct"] for p in points] or [0]
    log(f"other programs used {sum(others) / len(others):.0f}% of one core on average during the "
        f"measured runs (max {max(others):.0f}%)")
    for t in results["targets"]:
        log(f"target {t['target']}: {t['value']} (wanted {t['wanted']}): {MET[t['met']]}")
    log(f"done in {time.monotonic() - started:.0f} s; see {os.path.relpath(DOCS / 'README.md')}")
    return 0


if __name__ == "__main__":
    # Servers run in their own sessions: Ctrl-C reaches only this script,
    # which stops them (finally: stop_all) before it exits.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    except RuntimeError as err:
        log(f"FAILED: {err}")
        sys.exit(1)
    finally:
        stop_all()
