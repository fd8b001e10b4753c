"""Support code for Vivarium's end-to-end suite: the Caddy process wrapper and helpers.

Imported by conftest.py (fixtures) and by the test modules.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

TESTS_DIR = Path(__file__).resolve().parent
APPS_DIR = TESTS_DIR / "apps"
VENVS_DIR = TESTS_DIR / ".venvs"

START_TIMEOUT = 60  # seconds for bin/caddy to load its apps and answer
STOP_TIMEOUT = 20  # seconds between SIGTERM and SIGKILL

MEASUREMENTS: list[str] = []


# --------------------------------------------------------------------------- helpers


def app_dir(name: str) -> Path:
    """The directory of the test app `name` under tests/apps."""
    path = APPS_DIR / name
    assert path.is_dir(), f"no test app {path}"
    return path


def q(value) -> str:
    """A Caddyfile token, quoted so that paths with spaces survive."""
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def python_block(
    matcher: str | None,
    module_wsgi: str | None = None,
    *,
    module_asgi: str | None = None,
    lifespan: str | None = None,
    strip_prefix: bool = True,
    **options,
) -> str:
    """A `python` Caddyfile block for a WSGI app (module_wsgi) or an ASGI app
    (module_asgi, with `lifespan on|off` when given). Options with value None are
    left out; path-like options (working_dir, venv) are quoted. Options are written
    in the order given.

    An app at a `/prefix/*` matcher is mounted there: the block goes inside
    `handle_path /prefix/*`, so Caddy strips the prefix and the app gets it as
    SCRIPT_NAME (root_path). strip_prefix=False writes `python /prefix/*` itself,
    whose app sees the full path."""
    if (module_wsgi is None) == (module_asgi is None):
        raise ValueError("python_block wants exactly one of module_wsgi and module_asgi")
    if strip_prefix and matcher and matcher.startswith("/") and matcher.endswith("/*") and matcher != "/*":
        inner = python_block(None, module_wsgi, module_asgi=module_asgi, lifespan=lifespan, **options)
        return f"handle_path {matcher} {{\n{textwrap.indent(inner, chr(9))}\n}}"
    head = "python" if not matcher else f"python {matcher}"
    if module_wsgi is not None:
        lines = [f"{head} {{", f"\tmodule_wsgi {q(module_wsgi)}"]
    else:
        lines = [f"{head} {{", f"\tmodule_asgi {q(module_asgi)}"]
    if lifespan is not None:
        lines.append(f"\tlifespan {lifespan}")
    for key, value in options.items():
        if value is None:
            continue
        if key in ("working_dir", "venv"):
            value = q(value)
        lines.append(f"\t{key} {value}")
    lines.append("}")
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int, field: str) -> str:
    """A field of /proc/<pid>/status, e.g. "Threads" or "VmRSS"."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if name == field:
                return value.strip()
    raise KeyError(f"{field} not in /proc/{pid}/status")


def thread_names(pid: int) -> list[str]:
    """The names of the process's threads, as top -H shows them."""
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/comm") as fh:
            names.append(fh.read().strip())
    return sorted(names)


def record_measurement(text: str) -> None:
    """A line for the end-of-run summary (measurements are printed, not hidden)."""
    print(text)
    MEASUREMENTS.append(text)


def required_env(name: str, hint: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"${name} is not set: {hint}", pytrace=False)
    return value


def tail(text: str, limit: int = 6000) -> str:
    return text if len(text) <= limit else "...\n" + text[-limit:]


def caddy_env(workdir: Path) -> dict:
    """The environment bin/caddy runs with: the caller's, minus the PYTHON* variables
    that would change how the embedded Python behaves (PYTHONPATH, PYTHONUNBUFFERED...),
    with Caddy's data/config dirs in workdir."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PYTHON") or name == "PYTHON"
    }
    env.pop("VIRTUAL_ENV", None)
    env["XDG_DATA_HOME"] = str(workdir / "xdg-data")
    env["XDG_CONFIG_HOME"] = str(workdir / "xdg-config")
    return env


# ------------------------------------------------------------------------- the server


CONSOLE_LOG_LINE = re.compile(
    r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?\s+(DEBUG|INFO|WARN|ERROR|DPANIC|PANIC|FATAL)\s"
)


class Caddy:
    """One bin/caddy process serving one Caddyfile on loopback."""

    instances: list["Caddy"] = []  # every one started in this session, for diagnostics

    def __init__(self, binary: str, workdir: Path):
        Caddy.instances.append(self)
        self.stopped = False  # set once the suite itself stops the process
        self.binary = binary
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.admin_port = free_port()
        self.caddyfile = self.workdir / "Caddyfile"
        self.log_path = self.workdir / "caddy.log"
        self.proc: subprocess.Popen | None = None
        self.client: httpx.Client | None = None
        self._log_handle = None

    # -- configuration

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def admin_address(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    def render(self, site_body: str) -> str:
        """The full Caddyfile for a site body (the directives inside the site block)."""
        return (
            "{\n"
            f"\tadmin {self.admin_address}\n"
            "\tauto_https off\n"
            "\tpersist_config off\n"
            "\tgrace_period 5s\n"
            "}\n"
            "\n"
            f"http://127.0.0.1:{self.http_port} {{\n"
            f"{textwrap.indent(site_body.strip(), chr(9))}\n"
            "}\n"
        )

    def write_caddyfile(self, site_body: str) -> str:
        text = self.render(site_body)
        self.caddyfile.write_text(text)
        return text

    # -- process

    def spawn(self, site_body: str) -> None:
        self.write_caddyfile(site_body)
        self._log_handle = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "run", "--config", "Caddyfile", "--adapter", "caddyfile"],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env=caddy_env(self.workdir),
        )

    def port_answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def start(self, site_body: str, timeout: float = START_TIMEOUT) -> "Caddy":
        self.spawn(site_body)
        deadline = time.monotonic() + timeout
        while not self.port_answers():
            code = self.proc.poll()
            if code is not None:
                pytest.fail(
                    f"bin/caddy exited with code {code} before serving.\n"
                    f"--- Caddyfile\n{self.caddyfile.read_text()}\n--- log\n{tail(self.log_text())}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"bin/caddy did not answer on {self.base_url} within {timeout} s.\n"
                    f"--- Caddyfile\n{self.caddyfile.read_text()}\n--- log\n{tail(self.log_text())}",
                    pytrace=False,
                )
            time.sleep(0.05)
        self.client = httpx.Client(base_url=self.base_url, timeout=60)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code (negative = signal)."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is None:
            return None
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        return self.proc.returncode

    def died_on_its_own(self) -> bool:
        return self.proc is not None and not self.stopped and self.proc.poll() is not None

    def reload(self, site_body: str, force: bool = False, check: bool = True):
        """`caddy reload` with a new site body. Returns the CompletedProcess; with
        check, a failed reload fails the test with the command's output and the log."""
        self.write_caddyfile(site_body)
        cmd = [
            self.binary, "reload",
            "--config", "Caddyfile", "--adapter", "caddyfile",
            "--address", f"localhost:{self.admin_port}",
        ]
        if force:
            cmd.append("--force")
        done = subprocess.run(
            cmd, cwd=self.workdir, env=caddy_env(self.workdir),
            capture_output=True, text=True, timeout=120,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"caddy reload failed with code {done.returncode}:\n{done.stdout}{done.stderr}\n"
                f"--- log\n{tail(self.log_text())}",
                pytrace=False,
            )
        return done

    # -- HTTP shortcuts

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.client.post(path, **kwargs)

    def get_json(self, path: str, **kwargs):
        response = self.get(path, **kwargs)
        assert response.status_code == 200, (
            f"GET {path} -> {response.status_code}: {response.text[:2000]}\n"
            f"--- log\n{tail(self.log_text())}"
        )
        return response.json()

    # -- observation

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle: str, timeout: float = 15) -> bool:
        """Waits until `needle` appears in the log (bounded wait, not a timing check)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return True
            time.sleep(0.1)
        return needle in self.log_text()

    def log_entries_containing(self, needle: str) -> list[tuple[str, dict | None]]:
        """Log lines containing `needle`, each with its parsed JSON entry (or None)."""
        found = []
        for line in self.log_text().splitlines():
            if needle not in line:
                continue
            entry = None
            try:
                parsed = json.loads(line)
                if isinstance(parsed, dict):
                    entry = parsed
            except ValueError:
                pass
            found.append((line, entry))
        return found

    def threads(self) -> int:
        return int(proc_status(self.pid, "Threads"))

    def rss_kib(self) -> int:
        value = proc_status(self.pid, "VmRSS")
        number, unit = value.split()
        assert unit == "kB", value
        return int(number)


def is_caddy_log_entry(line: str, entry: dict | None) -> bool:
    """True for a line written by Caddy's logger: a JSON entry with level and msg, or
    a console-format line (timestamp, level, ...)."""
    if entry is not None:
        return "level" in entry and "msg" in entry
    return bool(CONSOLE_LOG_LINE.match(line))


@dataclass
class CaddyFailure:
    returncode: int
    output: str
    caddyfile: str

    def line_of(self, needle: str) -> int:
        """1-based number of the Caddyfile line that is (or else contains) `needle`."""
        lines = self.caddyfile.splitlines()
        for number, line in enumerate(lines, start=1):
            if line.strip() == needle:
                return number
        for number, line in enumerate(lines, start=1):
            if needle in line:
                return number
        raise AssertionError(f"{needle!r} is not in the Caddyfile:\n{self.caddyfile}")


class Launcher:
    """Starts Caddy processes in fresh directories and stops any left running."""

    def __init__(self, binary: str, tmp_path_factory):
        self.binary = binary
        self.tmp_path_factory = tmp_path_factory
        self.running: list[Caddy] = []

    def new(self, name: str = "caddy") -> Caddy:
        return Caddy(self.binary, self.tmp_path_factory.mktemp(name))

    def start(self, site_body: str, name: str = "caddy") -> Caddy:
        caddy = self.new(name)
        self.running.append(caddy)
        return caddy.start(site_body)

    def expect_failure(self, site_body: str, timeout: float = START_TIMEOUT) -> CaddyFailure:
        """Runs `caddy run` on a config that must be refused. Fails the test if the
        server comes up (answers on its port) or never exits."""
        caddy = self.new("caddy-fail")
        caddy.spawn(site_body)
        deadline = time.monotonic() + timeout
        try:
            while caddy.proc.poll() is None:
                if caddy.port_answers():
                    caddy.stop()
                    pytest.fail(
                        "bin/caddy started serving a config it should have refused.\n"
                        f"--- Caddyfile\n{caddy.caddyfile.read_text()}\n--- log\n{tail(caddy.log_text())}",
                        pytrace=False,
                    )
                if time.monotonic() > deadline:
                    caddy.stop()
                    pytest.fail(
                        f"bin/caddy neither exited nor served within {timeout} s.\n"
                        f"--- log\n{tail(caddy.log_text())}",
                        pytrace=False,
                    )
                time.sleep(0.05)
        finally:
            code = caddy.stop()
        return CaddyFailure(code, caddy.log_text(), caddy.caddyfile.read_text())

    def stop_all(self) -> None:
        for caddy in self.running:
            caddy.stop()


class RssSampler:
    """Samples the server's VmRSS in the background; keeps the peak."""

    def __init__(self, caddy):
        self.caddy = caddy
        self.peak = caddy.rss_kib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.caddy.rss_kib())
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.caddy.rss_kib())


def wait_until(predicate, timeout: float = 10, interval: float = 0.05):
    """Bounded wait for an eventually-true condition (not a timing assertion).
    Returns the predicate's last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def venv_site_packages(venv: Path, version) -> Path:
    return venv / "lib" / f"python{version[0]}.{version[1]}" / "site-packages"


def random_chunks(seed: int, size: int, chunk: int):
    """size bytes of seeded random data in parts of chunk bytes: the same for a seed."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


@dataclass
class StreamedUpload:
    response: httpx.Response
    sha256: str  # of what was sent
    rss_before_kib: int
    rss_peak_kib: int  # the server's, while the body went up


def post_streamed_upload(caddy, path: str, size: int, chunk: int, seed: int = 7) -> StreamedUpload:
    """POSTs size bytes of seeded random data, generated and sent chunk by
    chunk with a Content-Length, while sampling the server's RSS."""
    expected = hashlib.sha256()

    def body():
        for piece in random_chunks(seed, size, chunk):
            expected.update(piece)
            yield piece

    before = caddy.rss_kib()
    with RssSampler(caddy) as rss:
        response = caddy.post(path, content=body(), headers={"Content-Length": str(size)})
    return StreamedUpload(response, expected.hexdigest(), before, rss.peak)


def valid_retry_after(value: str) -> bool:
    """RFC 9110: delay-seconds or an HTTP-date."""
    value = value.strip()
    if value.isdigit():
        return True
    try:
        return email.utils.parsedate_to_datetime(value) is not None
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------- metrics and the admin API


class Metrics:
    """One scrape of /metrics on Caddy's admin endpoint, parsed with prometheus_client's
    text parser. Every sample must appear once: a metric registered twice (say, by a
    reload) would show up here as a duplicate."""

    def __init__(self, text: str):
        from prometheus_client.parser import text_string_to_metric_families

        self.text = text
        self.samples: dict[tuple[str, frozenset], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in self.samples, f"sample {key} appears twice in /metrics"
                self.samples[key] = sample.value

    def get(self, name: str, **labels) -> float | None:
        """The value of the sample with exactly these labels, or None."""
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name: str, **labels) -> float:
        found = self.get(name, **labels)
        assert found is not None, f"no sample {name}{labels} in /metrics:\n" + "\n".join(
            line for line in self.text.splitlines() if line.startswith(name)
        )
        return found

    def matching(self, name: str, **labels) -> dict[frozenset, float]:
        """Every sample of `name` whose labels include these, by its full label set."""
        want = set(labels.items())
        return {
            key_labels: value
            for (sample_name, key_labels), value in self.samples.items()
            if sample_name == name and want <= key_labels
        }


def scrape(caddy) -> Metrics:
    response = httpx.get(f"http://{caddy.admin_address}/metrics", timeout=30)
    assert response.status_code == 200, f"/metrics -> {response.status_code}: {response.text[:2000]}"
    return Metrics(response.text)


def admin_apps(caddy) -> dict[str, dict]:
    """GET /python/apps, by app name."""
    response = httpx.get(f"http://{caddy.admin_address}/python/apps", timeout=30)
    assert response.status_code == 200, f"/python/apps -> {response.status_code}: {response.text[:2000]}"
    return {app["name"]: app for app in response.json()["apps"]}


def admin_restart(caddy, name: str) -> httpx.Response:
    """POST /python/apps/<name>/restart; waits for the old interpreters to drain."""
    return httpx.post(f"http://{caddy.admin_address}/python/apps/{name}/restart", timeout=120)
