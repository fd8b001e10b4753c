"""Fixtures for Vivarium's end-to-end suite.

Every test runs the real server binary ($VIVARIUM_BIN, i.e. bin/caddy) as a child
process and talks HTTP to it over loopback. Apps live in tests/apps/<name>/; venvs
for them are real venvs built with $PYTHON by `make_venv` and cached in tests/.venvs.

Environment (exported by `make test-py`):
  VIVARIUM_BIN  the caddy binary with the Vivarium plugin
  PYTHON        the Python (>= 3.13) the binary embeds; used to build app venvs
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import site
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support import (
    MEASUREMENTS,
    VENVS_DIR,
    Caddy,
    Launcher,
    caddy_env,
    free_port,
    record_measurement,
    required_env,
    tail,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test whose server died under it gets the exit code and the log tail."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for caddy in Caddy.instances:
            if caddy.died_on_its_own():
                report.sections.append(
                    (
                        f"bin/caddy pid {caddy.pid} exited on its own, code {caddy.proc.returncode}",
                        tail(caddy.log_text(), 6000),
                    )
                )


def pytest_terminal_summary(terminalreporter):
    if MEASUREMENTS:
        terminalreporter.section("Vivarium measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def vivarium_bin() -> str:
    path = required_env("VIVARIUM_BIN", "run the suite with `make test-py` (it builds bin/caddy)")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"$VIVARIUM_BIN={path} is not an executable file", pytrace=False)
    return path


@pytest.fixture(scope="session")
def python_exe() -> str:
    path = required_env(
        "PYTHON", "set it to the Python >= 3.13 that bin/caddy embeds (the Makefile exports it)"
    )
    resolved = shutil.which(path) or path
    if not os.access(resolved, os.X_OK):
        pytest.fail(f"$PYTHON={path} is not executable", pytrace=False)
    return resolved


@pytest.fixture(scope="session")
def python_version(python_exe) -> tuple[int, int, int]:
    out = subprocess.check_output(
        [python_exe, "-c", "import sys; print(*sys.version_info[:3])"], text=True
    )
    return tuple(int(x) for x in out.split())


@pytest.fixture(scope="session")
def make_venv(python_exe, python_version):
    """make_venv(name, requirement_lines) -> Path of a real venv built with $PYTHON.

    Cached in tests/.venvs/<name>-<hash> where the hash covers the requirements and
    the Python; a venv counts as built only once its marker file exists (written after
    pip succeeded), so a failed install is rebuilt rather than reused."""

    def build(name: str, requirements: list[str]) -> Path:
        lines = [line.strip() for line in requirements if line.strip()]
        key = hashlib.sha256(
            json.dumps(
                {
                    "python": os.path.realpath(python_exe),
                    "version": python_version,
                    "requirements": lines,
                }
            ).encode()
        ).hexdigest()[:12]
        target = VENVS_DIR / f"{name}-{key}"
        marker = target / ".vivarium-test-complete"
        VENVS_DIR.mkdir(exist_ok=True)
        with open(VENVS_DIR / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if marker.exists():
                return target
            if target.exists():
                shutil.rmtree(target)
            steps = [[python_exe, "-m", "venv", str(target)]]
            if lines:
                steps.append(
                    [str(target / "bin" / "python"), "-m", "pip", "install",
                     "--disable-pip-version-check", "--no-input", "-q", *lines]
                )
            for cmd in steps:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    shutil.rmtree(target, ignore_errors=True)
                    pytest.fail(
                        f"building venv {name} failed: {' '.join(cmd)}\n{done.stdout}{done.stderr}",
                        pytrace=False,
                    )
            marker.write_text("\n".join(lines) + "\n")
            return target

    return build


@pytest.fixture(scope="session")
def outside_site_packages(python_exe) -> list[str]:
    """Site-packages directories an app must never see: the test runner's and those
    of $PYTHON itself (the process's), user site included."""
    code = "import json, site; print(json.dumps(site.getsitepackages() + [site.getusersitepackages()]))"
    theirs = json.loads(subprocess.check_output([python_exe, "-c", code], text=True))
    ours = site.getsitepackages() + [site.getusersitepackages()]
    paths = {os.path.realpath(p) for p in theirs + ours}
    return sorted(paths)


@pytest.fixture(scope="session")
def caddy_launcher(vivarium_bin, tmp_path_factory):
    launcher = Launcher(vivarium_bin, tmp_path_factory)
    yield launcher
    launcher.stop_all()


@pytest.fixture
def start_caddy(caddy_launcher):
    """start_caddy(site_body) -> a running Caddy, stopped when the test ends."""
    started: list[Caddy] = []

    def start(site_body: str) -> Caddy:
        caddy = caddy_launcher.start(site_body)
        started.append(caddy)
        return caddy

    yield start
    for caddy in started:
        caddy.stop()


@pytest.fixture
def caddy_must_refuse(caddy_launcher):
    """caddy_must_refuse(site_body) -> CaddyFailure(returncode, output, caddyfile)."""
    return caddy_launcher.expect_failure


@pytest.fixture
def measurement():
    return record_measurement


@pytest.fixture(scope="session")
def demo(vivarium_bin, tmp_path_factory):
    """`scripts/demo.sh setup`, then `scripts/demo.sh start` (migrate, then Caddy): the
    Docker image's steps, on a database of its own. Yields (client, port, process): an
    httpx client on the demo's base URL. One server for the session (test_demo.py and
    test_browser.py); stopping it with SIGTERM must exit 0."""
    work = tmp_path_factory.mktemp("demo")
    port, admin = free_port(), free_port()
    env = caddy_env(work) | {
        "PYTHON": os.environ["PYTHON"],
        "VIVARIUM_BIN": str(vivarium_bin),
        "VIVARIUM_PORT": str(port),
        "VIVARIUM_ADMIN_PORT": str(admin),
        "DJANGO_SQLITE_PATH": str(work / "db" / "demo.sqlite3"),
    }
    setup = subprocess.run([ROOT / "scripts" / "demo.sh", "setup"], env=env,
                           capture_output=True, text=True, timeout=900)
    assert setup.returncode == 0, setup.stderr[-4000:]

    log = open(work / "demo.log", "w")
    proc = subprocess.Popen([ROOT / "scripts" / "demo.sh", "start"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (work / "demo.log").read_text()[-4000:]
        assert time.monotonic() < deadline, (work / "demo.log").read_text()[-4000:]
        time.sleep(0.3)
    with httpx.Client(base_url=base, timeout=30) as client:
        yield client, port, proc
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, (work / "demo.log").read_text()[-4000:]
    log.close()
