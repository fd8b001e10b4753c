"""The wheel: `pip install vivarium` gives a `vivarium` command that is Caddy,
hosted by the venv's own python process, whose interpreter is the one embedded.

Run against the console script of a venv the wheel was installed into:

    VIVARIUM_BIN=venv/bin/vivarium PYTHON=python3.14 pytest tests/wheel

(scripts/test-wheel.sh makes that venv and runs this with a subset of the
suite. `pytest tests`, as `make test` runs it, does not collect this directory:
it tests bin/caddy.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support import app_dir, caddy_env, free_port, python_block, tail


@pytest.fixture(scope="session")
def venv(vivarium_bin) -> Path:
    """The venv the wheel was installed into: VIVARIUM_BIN is its bin/vivarium."""
    root = Path(vivarium_bin).parent.parent
    if not (root / "pyvenv.cfg").is_file():
        pytest.fail(f"$VIVARIUM_BIN={vivarium_bin} is not the vivarium command of a venv", pytrace=False)
    return root


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def libpython_mapped(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as fh:
        return {line.split()[-1] for line in fh if "libpython" in line}


def probe_site() -> str:
    """The probe app twice: in an interpreter of its own and in the main one."""
    return "\n".join(
        [
            python_block("/own/*", "probe:app", working_dir=app_dir("probe")),
            python_block("/main/*", "probe:app", working_dir=app_dir("probe"), isolation="main"),
        ]
    )


def test_vivarium_and_python_m_vivarium_are_caddy_with_its_standard_modules(vivarium_bin, venv):
    by_command = run([vivarium_bin, "version"])
    by_module = run([venv / "bin" / "python", "-m", "vivarium", "version"])
    assert by_command.returncode == 0 and by_command.stdout.startswith("v2."), by_command
    assert by_module.returncode == 0 and by_module.stdout == by_command.stdout, by_module

    modules = run([vivarium_bin, "list-modules"])
    assert modules.returncode == 0, modules
    listed = modules.stdout.split()
    for name in ("http.handlers.python", "http.handlers.reverse_proxy", "http.handlers.file_server",
                 "http.encoders.zstd", "tls.issuance.acme", "caddy.adapters.caddyfile"):
        assert name in listed, modules.stdout


def test_the_wheel_carries_the_license_of_go_and_of_every_module_linked_into_it(vivarium_bin, venv):
    """`vivarium build-info` lists the Go modules in the extension; each one's
    license is installed with the package and named in its metadata."""
    info = run([vivarium_bin, "build-info"])
    assert info.returncode == 0, info
    linked = {line.split()[1] for line in info.stdout.splitlines() if line.startswith("dep\t")}
    assert "github.com/caddyserver/caddy/v2" in linked, info.stdout
    query = ("import importlib.metadata as m, json; d = m.distribution('vivarium'); "
             "print(json.dumps({f: d.read_text('licenses/' + f) for f in d.metadata.get_all('License-File')}))")
    shown = run([venv / "bin" / "python", "-c", query])
    assert shown.returncode == 0, shown
    files = json.loads(shown.stdout)
    assert all(text for text in files.values()), [f for f, text in files.items() if not text]
    licensed = {f.rsplit("/", 1)[0] for f in files}
    assert linked | {"go"} <= licensed, sorted(linked - licensed)
    assert "Apache License" in files["github.com/caddyserver/caddy/v2/LICENSE"]


def test_the_server_is_the_venv_python_and_brings_no_libpython_of_its_own(start_caddy, venv):
    caddy = start_caddy(probe_site())
    own, main = caddy.get_json("/own/info"), caddy.get_json("/main/info")
    python = venv / "bin" / "python"
    version = json.loads(run([python, "-c", "import sys, json; print(json.dumps(sys.version_info[:3]))"]).stdout)

    # One process: the one the command started, running the venv's python.
    assert own["pid"] == main["pid"] == caddy.pid
    assert os.path.realpath(f"/proc/{caddy.pid}/exe") == os.path.realpath(python)
    assert own["executable_version"] == main["executable_version"] == version
    assert main["interp_id"] == 0 and own["interp_id"] != 0

    # The module links no libpython: the server maps what the python alone maps
    # (nothing, for a python built without --enable-shared).
    alone = subprocess.Popen([python, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        time.sleep(0.5)
        theirs = libpython_mapped(alone.pid)
    finally:
        alone.communicate(b"", timeout=30)
    assert libpython_mapped(caddy.pid) == theirs

    # Nothing of the venv the wheel lives in reaches an app.
    for path in own["sys_path"] + main["sys_path"]:
        assert not os.path.realpath(path).startswith(os.path.realpath(venv) + os.sep), path


def test_ctrl_c_stops_the_server_gracefully(start_caddy):
    """Caddy owns SIGINT, as in bin/caddy: Python's handler would only flag it
    for a main thread that never runs Python again."""
    caddy = start_caddy(probe_site())
    assert caddy.get("/own/info").status_code == 200
    caddy.proc.send_signal(signal.SIGINT)
    assert caddy.proc.wait(timeout=60) == 0, tail(caddy.log_text())
    assert caddy.wait_for_log('"signal":"SIGINT"'), tail(caddy.log_text())


def test_start_runs_the_command_again_in_the_background_and_stop_ends_it(vivarium_bin, tmp_path):
    port, admin = free_port(), free_port()
    (tmp_path / "Caddyfile").write_text(
        f"{{\n\tadmin 127.0.0.1:{admin}\n\tpersist_config off\n}}\n"
        f"http://127.0.0.1:{port} {{\n"
        + python_block(None, "probe:app", working_dir=app_dir("probe"))
        + "\n}\n"
    )
    env = caddy_env(tmp_path)
    # The server started in the background keeps the output it was given.
    log_path = tmp_path / "start.log"
    with open(log_path, "wb") as log:
        code = subprocess.call([vivarium_bin, "start", "--config", "Caddyfile", "--adapter", "caddyfile"],
                               cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, timeout=120)
    assert code == 0, log_path.read_text()
    pid = None
    try:
        pid = httpx.get(f"http://127.0.0.1:{port}/info", timeout=30).json()["pid"]
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
        assert b"run" in argv and os.fsencode(os.path.abspath(vivarium_bin)) in argv, argv
    finally:
        stopped = run([vivarium_bin, "stop", "--address", f"127.0.0.1:{admin}"], cwd=tmp_path, env=env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    deadline = time.monotonic() + 60
    while pid is not None and os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pid is not None and not os.path.exists(f"/proc/{pid}")


@pytest.mark.parametrize("command", ["upgrade", "add-package", "remove-package"])
def test_commands_that_would_replace_the_executable_name_pip_instead(vivarium_bin, command):
    done = run([vivarium_bin, command, "github.com/example/plugin"])
    assert done.returncode != 0
    assert "pip install -U vivarium" in done.stderr, done.stderr
