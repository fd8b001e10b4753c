"""What `make bench` measures: every server, workload, connection count and
target is declared here, and nothing else is."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
APPS = BENCH / "apps"
REQUIREMENTS = BENCH / "requirements"
VENVS = BENCH / ".venvs"
WRK_SCRIPT = BENCH / "wrk" / "report.lua"
DOCS = ROOT / "docs" / "benchmarks"

DURATION = 3  # seconds measured per point (wrk takes whole seconds)
WARMUP = 1  # seconds of load before each measured run, not counted
LOAD_THREADS = 1  # wrk and h2load use at most one of the cores they share with the server

PORT = 18080  # what wrk and h2load talk to
UPSTREAM_PORTS = (18081, 18082, 18083)  # proxied servers behind Caddy

HELLO_CONNS = (1, 16, 64, 256)
CPU_CONNS = (1, 16, 64)  # 5 ms requests: 256 connections would only queue
TRANSFER_CONNS = (1, 16)  # 1 MiB down, 10 MiB up: a few connections saturate
H2_CONNS = (64,)  # one HTTP/2 point, one stream at a time per connection, as wrk
IDLE_RSS_INTERPRETERS = (1, 2, 4)  # Flask interpreters compared for memory
THREE_APP_WORKERS = (1, 2)  # workers of each app in the three-app memory point
TARGET_CONNS = 64  # the connection count the targets are computed at unless they say

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


def endpoints() -> dict[str, Endpoint]:
    return {
        "hello": Endpoint("/", expect=HELLO),
        "cpu": Endpoint("/cpu", expect=cpu_expect()),
        "download": Endpoint("/download", expect_len=DOWNLOAD_BYTES),
        "upload": Endpoint("/upload", expect=str(UPLOAD_BYTES).encode(), upload=UPLOAD_BYTES),
        # The same hello, over TLS and HTTP/2 (h2load), kept apart in the tables.
        "h2-hello": Endpoint("/", expect=HELLO),
    }


# A workload is a list of (endpoint, connection counts).
WORKLOADS = {
    "hello": [("hello", HELLO_CONNS)],
    "cpu": [("cpu", CPU_CONNS)],
    "transfer": [("download", TRANSFER_CONNS), ("upload", TRANSFER_CONNS)],
    "h2": [("h2-hello", H2_CONNS)],
    # One point, where the targets are computed.
    "hello-target": [("hello", (TARGET_CONNS,))],
}


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration. `caddy_site` is the body of a Caddy site on
    PORT; `peers` commands run from bench/apps, on UPSTREAM_PORTS behind Caddy
    or on PORT when there is no Caddy. Placeholders: {apps}, {venv}
    (bench/.venvs/<venv>), {venv:NAME}, {port}, {upstream}, {upstream2},
    {upstream3}, {cert}, {key} (the TLS pair of an h2 point)."""

    name: str
    label: str
    family: str  # caddy, vivarium, caddysnake, gunicorn, uvicorn, granian
    app: str  # raw, flask, django, starlette, fastapi, three
    workloads: tuple[str, ...] = ("hello",)
    caddy_site: str | None = None
    venv: str | None = None  # the venv the app runs from
    peers: tuple[tuple[str, ...], ...] = ()
    interpreters: int | None = None
    # What runs the Caddy site: "bin" (bin/caddy), "wheel" (the `vivarium`
    # command of the pip-installed wheel, bench/.venvs/wheel) or "caddysnake"
    # (the Caddy that the caddysnake wheel carries, bench/.venvs/caddysnake).
    host: str = "bin"
    tls: bool = False  # https on PORT with a self-signed certificate (HTTP/2)
    venvs: tuple[str, ...] = ()  # more venvs its {venv:NAME} placeholders name


APP_NAMES = {"raw": "raw WSGI", "flask": "Flask", "django": "Django", "starlette": "Starlette",
             "fastapi": "FastAPI"}


def python_block(module: str, asgi: bool, venv: str | None, lines: list[str], indent: str = "\t") -> str:
    """A `python { ... }` block, the syntax Vivarium and caddy-snake share."""
    body = [f'{"module_asgi" if asgi else "module_wsgi"} "{module}"', 'working_dir "{apps}"']
    if venv:
        body.append(f'venv "{{venv:{venv}}}"')
    return ("python {\n" + "".join(f"{indent}\t{line}\n" for line in body + lines) + f"{indent}}}")


def vivarium(app: str, module: str, interpreters: int, *, asgi=False, venv=None, isolation=None,
             threads=None, workloads=("hello",), host="bin", tls=False) -> ServerSpec:
    lines = [f"interpreters {interpreters}"]
    if isolation:
        lines.append(f"isolation {isolation}")
    if threads:
        lines.append(f"threads {threads}")
    count = f"{interpreters} processes" if isolation == "process" else f"{interpreters} interp"
    label = (f"Vivarium {APP_NAMES[app]}, {count}" + (f" x {threads} thread" if threads else "")
             + (f" ({isolation})" if isolation and isolation != "process" else "")
             + (" (pip wheel)" if host == "wheel" else "") + (" h2" if tls else ""))
    return ServerSpec(name=f"vivarium-{app}-{interpreters}" + (f"-t{threads}" if threads else "")
                      + (f"-{isolation}" if isolation else "") + ("-wheel" if host == "wheel" else "")
                      + ("-h2" if tls else ""),
                      label=label, family="vivarium", app=app, workloads=tuple(workloads),
                      caddy_site=python_block(module, asgi, venv, lines), venv=venv,
                      interpreters=interpreters, host=host, tls=tls)


def caddysnake(app: str, module: str, workers: int, *, asgi=False, venv=None) -> ServerSpec:
    """caddy-snake: its own Caddy, whose `python` block spawns `workers` Python
    processes (the venv's python) behind a Unix-socket reverse proxy."""
    return ServerSpec(name=f"caddysnake-{app}-{workers}",
                      label=f"caddy-snake {APP_NAMES[app]}, {workers} worker" + ("s" if workers > 1 else ""),
                      family="caddysnake", app=app, venv=venv, interpreters=workers, host="caddysnake",
                      caddy_site=python_block(module, asgi, venv, [f"workers {workers}"]))


PROXY = "reverse_proxy 127.0.0.1:{upstream}"


def gunicorn(module: str, workers: int = 2, upstream: str = "{upstream}", *extra: str,
             venv: str = "{venv}") -> tuple[str, ...]:
    return (f"{venv}/bin/gunicorn", "--workers", str(workers), "--bind", f"127.0.0.1:{upstream}",
            "--chdir", "{apps}", "--log-level", "warning", *extra, module)


def uvicorn(module: str, workers: int = 2, upstream: str = "{upstream}", venv: str = "{venv}") -> tuple[str, ...]:
    return (f"{venv}/bin/uvicorn", module, "--app-dir", "{apps}", "--host", "127.0.0.1",
            "--port", upstream, "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning")


def granian(interface: str, module: str, port: str, *extra: str) -> tuple[str, ...]:
    return ("{venv}/bin/granian", "--interface", interface, "--workers", "2", "--host", "127.0.0.1",
            "--port", port, "--working-dir", "{apps}", "--no-ws", "--log-level", "warning", *extra, module)


GRANIAN_H2 = ("--http", "2", "--ssl-certificate", "{cert}", "--ssl-keyfile", "{key}")

# In the order they run: ours and peers alternate.
SERVERS = [
    ServerSpec("caddy-respond", 'Caddy respond (ceiling)', "caddy", "raw",
               caddy_site='respond "Hello, world!"'),
    vivarium("raw", "wsgi_hello:app", 1),
    ServerSpec("gunicorn-sync", "gunicorn sync 2w + Caddy", "gunicorn", "flask",
               workloads=("hello", "cpu"), caddy_site=PROXY, venv="gunicorn",
               peers=(gunicorn("flask_app:app"),)),
    vivarium("flask", "flask_app:app", 1, venv="flask", workloads=("hello", "cpu")),
    caddysnake("flask", "flask_app:app", 1, venv="flask"),
    ServerSpec("granian-wsgi", "Granian WSGI Flask 2w", "granian", "flask", venv="granian",
               peers=(granian("wsgi", "flask_app:app", "{port}"),)),
    vivarium("flask", "flask_app:app", 2, venv="flask", workloads=("hello", "cpu", "transfer")),
    caddysnake("flask", "flask_app:app", 2, venv="flask"),
    # The same app and Caddyfile served by the wheel's `vivarium`: Caddy as an
    # extension module of the venv's python, whose interpreter it embeds.
    vivarium("flask", "flask_app:app", 2, venv="flask", workloads=("hello-target",), host="wheel"),
    # The default is 4 threads per interpreter, for apps that wait on I/O; one
    # thread shows the tail latency of a CPU-bound app without GIL contention.
    vivarium("flask", "flask_app:app", 2, venv="flask", threads=1),
    ServerSpec("gunicorn-gthread", "gunicorn gthread 2w x 4t + Caddy", "gunicorn", "flask",
               workloads=("hello", "transfer"), caddy_site=PROXY, venv="gunicorn",
               peers=(gunicorn("flask_app:app", 2, "{upstream}", "--worker-class", "gthread", "--threads", "4"),)),
    vivarium("raw", "wsgi_hello:app", 2),
    ServerSpec("granian-wsgi-caddy", "Granian WSGI Flask 2w + Caddy", "granian", "flask",
               caddy_site=PROXY, venv="granian", peers=(granian("wsgi", "flask_app:app", "{upstream}"),)),
    vivarium("django", "django_app:application", 1, venv="django"),
    ServerSpec("uvicorn-caddy", "uvicorn Starlette 2w + Caddy", "uvicorn", "starlette",
               caddy_site=PROXY, venv="uvicorn", peers=(uvicorn("starlette_app:app"),)),
    vivarium("starlette", "starlette_app:app", 1, asgi=True, venv="starlette"),
    ServerSpec("granian-asgi", "Granian ASGI Starlette 2w", "granian", "starlette", venv="granian",
               peers=(granian("asgi", "starlette_app:app", "{port}", "--loop", "uvloop"),)),
    vivarium("starlette", "starlette_app:app", 2, asgi=True, venv="starlette"),
    ServerSpec("granian-asgi-caddy", "Granian ASGI Starlette 2w + Caddy", "granian", "starlette",
               caddy_site=PROXY, venv="granian",
               peers=(granian("asgi", "starlette_app:app", "{upstream}", "--loop", "uvloop"),)),
    vivarium("django", "django_app:application", 2, venv="django"),
    vivarium("fastapi", "fastapi_app:app", 1, asgi=True, venv="fastapi", isolation="main"),
    caddysnake("fastapi", "fastapi_app:app", 1, asgi=True, venv="fastapi"),
    ServerSpec("uvicorn-fastapi-caddy", "uvicorn FastAPI 2w + Caddy", "uvicorn", "fastapi",
               caddy_site=PROXY, venv="uvicorn", peers=(uvicorn("fastapi_app:app"),)),
    # isolation process: each interpreter is a child process of Caddy (what
    # `isolation auto` picks for FastAPI, whose pydantic_core refuses own-GIL
    # interpreters).
    vivarium("fastapi", "fastapi_app:app", 2, asgi=True, venv="fastapi", isolation="process"),
    ServerSpec("granian-fastapi", "Granian ASGI FastAPI 2w", "granian", "fastapi", venv="granian",
               peers=(granian("asgi", "fastapi_app:app", "{port}", "--loop", "uvloop"),)),
    caddysnake("fastapi", "fastapi_app:app", 2, asgi=True, venv="fastapi"),
    vivarium("flask", "flask_app:app", 2, venv="flask", isolation="process"),
    vivarium("raw", "wsgi_hello:app", 1, isolation="process"),
    # HTTP/2 over TLS with one self-signed certificate: h2load. Caddy's own
    # answer over h2 is the ceiling of what Vivarium can do through it.
    ServerSpec("caddy-respond-h2", "Caddy respond h2 (ceiling)", "caddy", "raw", workloads=("h2",), tls=True,
               caddy_site='respond "Hello, world!"'),
    vivarium("flask", "flask_app:app", 2, venv="flask", workloads=("h2",), tls=True),
    ServerSpec("granian-wsgi-h2", "Granian WSGI Flask 2w h2", "granian", "flask", workloads=("h2",),
               venv="granian", tls=True, peers=(granian("wsgi", "flask_app:app", "{port}", *GRANIAN_H2),)),
    vivarium("starlette", "starlette_app:app", 2, asgi=True, venv="starlette", workloads=("h2",), tls=True),
    ServerSpec("granian-asgi-h2", "Granian ASGI Starlette 2w h2", "granian", "starlette", workloads=("h2",),
               venv="granian", tls=True,
               peers=(granian("asgi", "starlette_app:app", "{port}", "--loop", "uvloop", *GRANIAN_H2),)),
]


def route(prefix: str, handler: str) -> str:
    return f"route /{prefix}/* {{\n\t\turi strip_prefix /{prefix}\n\t\t{handler}\n\t}}"


# The three-app point: Flask, Django and FastAPI, each in its own venv, in one
# config. Each app answers its hello at /<prefix>/.
THREE_APPS = [("flask", "flask_app:app", False, "flask"), ("django", "django_app:application", False, "django"),
              ("fastapi", "fastapi_app:app", True, "fastapi")]


def three_apps(family: str, workers: int) -> ServerSpec:
    """Vivarium (its default `isolation auto`: Flask and Django in own-GIL
    interpreters, FastAPI in child processes), caddy-snake, or gunicorn (Flask,
    Django) and uvicorn (FastAPI) behind Caddy, `workers` of each app."""
    if family == "proxy":
        site = "\n\t".join(route(p, f"reverse_proxy 127.0.0.1:{{upstream{'' if i == 0 else i + 1}}}")
                           for i, (p, *_) in enumerate(THREE_APPS))
        peers = (gunicorn("flask_app:app", workers, "{upstream}"),
                 gunicorn("django_app:application", workers, "{upstream2}", venv="{venv:gunicorn-django}"),
                 uvicorn("fastapi_app:app", workers, "{upstream3}", "{venv:uvicorn}"))
        return ServerSpec(f"three-apps-proxy-{workers}", f"gunicorn + uvicorn + Caddy, {workers} each", "gunicorn",
                          "three", workloads=(), caddy_site=site, venv="gunicorn", peers=peers,
                          interpreters=workers, venvs=("gunicorn-django", "uvicorn"))
    count = "interpreters" if family == "vivarium" else "workers"
    # Vivarium names an app after its site and matcher, the same for all three here.
    site = "\n\t".join(route(p, python_block(m, asgi, venv, [f"{count} {workers}"]
                                             + ([f"name {p}"] if family == "vivarium" else []), "\t\t"))
                       for p, m, asgi, venv in THREE_APPS)
    label = {"vivarium": "Vivarium", "caddysnake": "caddy-snake"}[family]
    return ServerSpec(f"three-apps-{family}-{workers}", f"{label}, {workers} each", family, "three", workloads=(),
                      caddy_site=site, interpreters=workers, host="bin" if family == "vivarium" else "caddysnake",
                      venvs=tuple(v for *_, v in THREE_APPS))


THREE_APP_FAMILIES = ("vivarium", "caddysnake", "proxy")

# Packages whose versions go into the report, per venv.
VERSIONED = {
    "flask": ["flask", "werkzeug"], "django": ["django"], "starlette": ["starlette"],
    "fastapi": ["fastapi", "pydantic", "starlette"], "gunicorn": ["gunicorn"],
    "uvicorn": ["uvicorn", "uvloop", "httptools", "fastapi"], "granian": ["granian", "uvloop", "fastapi"],
    "caddysnake": ["caddysnake"], "charts": ["matplotlib"],
}


@dataclass(frozen=True)
class Target:
    """A ratio of two points of one run: `metric` of num over den, at `conns`."""

    issue: str
    name: str
    num: tuple[str, str]  # (server, endpoint)
    den: tuple[str, str]
    wanted: float
    conns: int = TARGET_CONNS
    metric: str = "rps"  # or p99_ms
    at_least: bool = True


def per_conns(issue, name, num, den, wanted, conns=HELLO_CONNS, **kw) -> list[Target]:
    return [Target(issue, f"{name} at {c} conns", num, den, wanted, conns=c, **kw) for c in conns]


def ratios(issue: str, rows) -> list[Target]:
    """Targets of req/s at TARGET_CONNS: (name, server, against, at least[, endpoint])."""
    return [Target(issue, name, (num, rest[0] if rest else "hello"), (den, rest[0] if rest else "hello"), wanted)
            for name, num, den, wanted, *rest in rows]


TARGETS = [
    *per_conns("20", "Flask 2 interp vs Granian WSGI 2 workers", ("vivarium-flask-2", "hello"),
               ("granian-wsgi", "hello"), 1.0),
    *per_conns("20", "Starlette 2 interp vs Granian ASGI 2 workers", ("vivarium-starlette-2", "hello"),
               ("granian-asgi", "hello"), 1.0),
    *(Target("20", f"p99 at 1 conn, {what} 2 interp vs Granian", (ours, "hello"), (theirs, "hello"), 1.0,
             conns=1, metric="p99_ms", at_least=False)
      for what, ours, theirs in (("Flask", "vivarium-flask-2", "granian-wsgi"),
                                 ("Starlette", "vivarium-starlette-2", "granian-asgi"))),
    *ratios("20", [("raw WSGI 2 interp vs Caddy respond", "vivarium-raw-2", "caddy-respond", 0.85),
                   ("Flask 1 interp vs caddy-snake 1 worker", "vivarium-flask-1", "caddysnake-flask-1", 2.5),
                   ("Flask 2 interp vs caddy-snake 2 workers", "vivarium-flask-2", "caddysnake-flask-2", 2.5),
                   ("FastAPI 2 processes vs caddy-snake 2 workers", "vivarium-fastapi-2-process",
                    "caddysnake-fastapi-2", 1.5)]),
    *ratios("15", [("FastAPI 2 processes vs uvicorn 2 workers + Caddy", "vivarium-fastapi-2-process",
                    "uvicorn-fastapi-caddy", 1.5),
                   ("FastAPI 2 processes vs Granian ASGI FastAPI 2 workers", "vivarium-fastapi-2-process",
                    "granian-fastapi", 0.9),
                   ("Flask 2 processes vs Flask 2 interp", "vivarium-flask-2-process", "vivarium-flask-2", 0.8)]),
    *ratios("earlier", [("Flask 2 interp vs gunicorn sync 2 workers + Caddy", "vivarium-flask-2", "gunicorn-sync", 4.0),
                        ("raw WSGI 1 interp vs Caddy respond", "vivarium-raw-1", "caddy-respond", 0.6),
                        ("CPU-bound: Flask 2 interp vs 1 interp", "vivarium-flask-2", "vivarium-flask-1", 1.8, "cpu"),
                        ("Flask 2 interp: pip wheel vs bin/caddy", "vivarium-flask-2-wheel", "vivarium-flask-2",
                         0.95)]),
]
# HTTP/2 comparisons, reported (no target of their own) as the median of rounds.
H2_PAIRS = (("vivarium-flask-2-h2", "granian-wsgi-h2"), ("vivarium-starlette-2-h2", "granian-asgi-h2"),
            ("vivarium-flask-2-h2", "caddy-respond-h2"))
# The three-app PSS of Vivarium over caddy-snake's, same worker count (issue 20).
THREE_APP_PSS_TARGET = 0.6
# The servers the targets compare are measured again in extra rounds, in
# alternating order, and each target is the median of its rounds: on a shared
# 2-core machine the speed of everything drifts by 20% over minutes, enough to
# flip a ratio near 1 within one run.
TARGET_ROUNDS = 3
RSS_PER_INTERPRETER_TARGET_MIB = 20
P99_OVER_P50_TARGET = 3.0
P99_TARGET_SERVERS = {"vivarium-flask-2": "Flask 2 interp", "vivarium-flask-2-t1": "Flask 2 interp x 1 thread"}
