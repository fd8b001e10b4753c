"""`caddy python-server` serves one app without a Caddyfile: WSGI or ASGI found by
importing the app in a child process (or forced), each flag meaning what the python
directive's setting of the same name means, caddy-snake's flag names accepted, and
what Vivarium cannot honour refused with what to use instead."""

import shutil
import subprocess
import time

import httpx
import pytest

import app_requirements as reqs
from support import Caddy, app_dir, caddy_env, tail, wait_until

PATHS = app_dir("paths")


class PythonServer(Caddy):
    """bin/caddy python-server with some flags, on a free port."""

    def __init__(self, binary, workdir, flags, env=None):
        super().__init__(binary, workdir)
        self.flags = flags
        self.extra_env = env or {}

    def spawn(self, _body=None):
        self._log_handle = open(self.log_path, "ab")
        flags = list(self.flags)
        if "--listen" not in flags and "-l" not in flags:
            flags += ["--listen", f"127.0.0.1:{self.http_port}"]
        self.proc = subprocess.Popen(
            [self.binary, "python-server", *flags], cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=self._log_handle, stderr=subprocess.STDOUT,
            env=caddy_env(self.workdir) | self.extra_env,
        )

    def caddyfile_text(self):
        return " ".join(self.flags)


@pytest.fixture
def python_server(caddy_launcher, tmp_path_factory):
    """python_server(*flags, env=None) -> a running PythonServer, stopped at the end."""
    started = []

    def start(*flags, env=None):
        server = PythonServer(caddy_launcher.binary, tmp_path_factory.mktemp("python-server"), flags, env)
        started.append(server)
        server.caddyfile.write_text(" ".join(flags))  # for the launcher's diagnostics
        return server.start(None)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def python_server_fails(caddy_launcher, tmp_path_factory):
    """python_server_fails(*flags) -> (exit code, output) of a python-server that must not serve."""

    def run(*flags, env=None):
        workdir = tmp_path_factory.mktemp("python-server-fail")
        done = subprocess.run(
            [caddy_launcher.binary, "python-server", *flags, "--listen", "127.0.0.1:1"],
            cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
            env=caddy_env(workdir) | (env or {}),
        )
        return done.returncode, done.stdout + done.stderr

    return run


@pytest.mark.parametrize("spec, kind", [("paths_app:wsgi", "WSGI"), ("paths_app:asgi", "ASGI")])
def test_the_kind_of_app_is_found_by_importing_it(python_server, spec, kind):
    server = python_server("--app", spec, "--working-dir", str(PATHS))
    info = server.get_json("/some/path")
    assert info.get("path_info", info.get("path")) == "/some/path"
    assert server.wait_for_log(f"serving {kind} app {spec}")


@pytest.mark.parametrize("flags", [["--asgi"], ["--server-type", "asgi"], ["-t", "asgi"]])
def test_the_kind_can_be_given(python_server, flags):
    server = python_server("-a", "paths_app:asgi", "--working-dir", str(PATHS), *flags)
    assert server.get_json("/x")["root_path"] == ""
    assert server.wait_for_log("serving ASGI app")


def test_the_venv_defaults_to_virtual_env(python_server, make_venv):
    venv = make_venv("flask", reqs.FLASK)
    server = python_server("--app", "flask_links:app", "--working-dir", str(PATHS), env={"VIRTUAL_ENV": str(venv)})
    assert server.get_json("/page")["self"] == "/page"
    explicit = python_server("--app", "flask_links:app", "--working-dir", str(PATHS), "--venv", str(venv))
    assert explicit.get("/go").headers["location"] == "/page"


def test_fastapi_needs_isolation_main_and_gets_it(python_server, python_server_fails, make_venv):
    venv = make_venv("fastapi", reqs.FASTAPI)
    where = ["--app", "fastapi_app:app", "--working-dir", str(app_dir("fastapi_app")), "--venv", str(venv)]
    code, output = python_server_fails(*where)
    assert code != 0
    assert "pydantic_core" in output and "isolation main" in output, output[-3000:]

    server = python_server(*where, "--isolation", "main", "--lifespan", "on")
    info = server.get_json("/info")
    assert info["interp_id"] == 0 and info["app"] == "fastapi"
    assert server.wait_for_log("serving ASGI app")


@pytest.mark.parametrize("flags", [["--interpreters", "2", "--threads", "3"], ["--workers", "2", "--threads", "3"], ["-w", "2", "--threads", "3"]])
def test_interpreters_and_threads(python_server, flags):
    server = python_server("--app", "probe:app", "--working-dir", str(app_dir("probe")), *flags)
    assert server.get_json("/info")["interp_count"] == 3  # the main interpreter and two of the app's
    entries = [e for _, e in server.log_entries_containing("interpreter started") if e]
    assert len(entries) == 2 and {e["threads"] for e in entries} == {3}


def test_lifespan_on_runs_the_startup(python_server):
    server = python_server("--app", "lifespan_app:app", "--working-dir", str(app_dir("asgi_lifespan")), "--lifespan", "on")
    assert server.get_json("/info")["startup"] is True


@pytest.mark.parametrize("style", ["vivarium", "caddy-snake"])
def test_static_directories_are_served_beside_the_app(python_server, tmp_path, style):
    public = tmp_path / "public"
    public.mkdir()
    (public / "hello.txt").write_text("static hello")
    flags = ["--static", f"/assets={public}"] if style == "vivarium" else ["--static-path", str(public), "--static-route", "/assets"]
    server = python_server("--app", "paths_app:wsgi", "--working-dir", str(PATHS), *flags)
    assert server.get("/assets/hello.txt").text == "static hello"
    assert server.get("/assets/missing.txt").status_code == 404
    assert server.get_json("/assetsnot/x")["path_info"] == "/assetsnot/x"


@pytest.mark.parametrize("flag", ["--watch", "--autoreload"])
def test_watch_restarts_the_app_on_a_save(python_server, tmp_path, flag):
    app = tmp_path / "app"
    shutil.copytree(app_dir("watched"), app, ignore=shutil.ignore_patterns("__pycache__"))
    server = python_server("--app", "watched_app:app", "--working-dir", str(app), flag)
    assert server.get_json("/")["version"] == "v1"
    source = app / "watched_app.py"
    source.write_text(source.read_text().replace('"v1"', '"v2"'))
    assert wait_until(lambda: server.get_json("/")["version"] == "v2", timeout=30), tail(server.log_text())


def test_watch_with_a_glob_names_the_files(python_server, tmp_path):
    app = tmp_path / "app"
    shutil.copytree(app_dir("watched"), app, ignore=shutil.ignore_patterns("__pycache__"))
    (app / "page.html").write_text("1")
    server = python_server("--app", "watched_app:app", "--working-dir", str(app), "--watch=*.html")
    started_at = server.get_json("/")["started_at"]
    (app / "page.html").write_text("2")
    assert wait_until(lambda: server.get_json("/")["started_at"] != started_at, timeout=30), tail(server.log_text())


@pytest.mark.parametrize("flag", ["--access-log", "--access-logs"])
def test_access_log(python_server, flag):
    server = python_server("--app", "paths_app:wsgi", "--working-dir", str(PATHS), flag)
    server.get("/logged/path")
    assert server.wait_for_log('"uri":"/logged/path"'), tail(server.log_text())


def test_request_body_max_size(python_server):
    server = python_server("--app", "paths_app:wsgi", "--working-dir", str(PATHS), "--request-body-max-size", "1KB")
    assert server.post("/x", content=b"a" * 500).status_code == 200
    assert server.post("/x", content=b"a" * 5000).status_code == 413


def test_domain_serves_https_with_a_certificate_of_caddys_own_ca(python_server):
    server = python_server("--app", "paths_app:wsgi", "--working-dir", str(PATHS), "--domain", "localhost")
    url = f"https://localhost:{server.http_port}/secure"
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.get(url, verify=False, timeout=10)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, tail(server.log_text())
            time.sleep(0.2)
    assert response.status_code == 200 and response.json()["path_info"] == "/secure"
    assert server.wait_for_log("serving WSGI app paths_app:wsgi on https://localhost")


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--python-path", "/usr/bin/python3"], "venv"),
        (["--runtime", "gevent"], "threads"),
        (["--runtime", "uvloop"], "asyncio"),
        (["--server-type", "esgi"], "WSGI"),
        (["--isolation", "docker"], "isolation process"),
        (["--cache-mode", "cluster"], "Redis"),
        (["--wsgi", "--asgi"], "one of"),
        (["--static", "nowhere"], "<route>=<dir>"),
        (["--lifespan", "maybe"], "on or off"),
    ],
)
def test_what_cannot_be_honoured_is_refused_with_what_to_use(python_server_fails, flags, says):
    code, output = python_server_fails("--app", "paths_app:wsgi", "--working-dir", str(PATHS), *flags)
    assert code != 0 and says in output, output[-2000:]


def test_an_app_that_does_not_import_is_refused_naming_it(python_server_fails):
    code, output = python_server_fails("--app", "vivarium_no_such_module:app", "--working-dir", str(PATHS))
    assert code != 0 and "vivarium_no_such_module" in output, output[-2000:]
    code, output = python_server_fails("--working-dir", str(PATHS))
    assert code != 0 and "--app" in output


def test_placeholders_make_dynamic_apps(python_server, python_server_fails, tmp_path):
    for name in ("alice", "bob"):
        (tmp_path / name).mkdir()
        shutil.copy(app_dir("tenant") / "tenant_app.py", tmp_path / name)
    where = ["--app", "tenant_app:app", "--working-dir", f"{tmp_path}/{{http.request.host.labels.1}}"]
    code, output = python_server_fails(*where)
    assert code != 0 and "--wsgi or --asgi" in output
    server = python_server(*where, "--wsgi", "--max-dynamic-apps", "4")
    for name in ("alice", "bob"):
        assert server.get("/", headers={"Host": f"{name}.localhost"}).json()["tenant"] == name


def test_env_env_file_and_start_timeout(python_server, python_server_fails, tmp_path):
    """The import needs NEEDED: the child that finds the app's kind gets the app's
    variables too."""
    where = ["--app", "needs_env:app", "--working-dir", str(app_dir("needs_env"))]
    code, output = python_server_fails(*where)
    assert code != 0 and "NEEDED" in output, output[-2000:]
    (tmp_path / "app.env").write_text("EXTRA=from the file\n")
    server = python_server(*where, "--env", "NEEDED=yes", "--env-file", str(tmp_path / "app.env"), "--start-timeout", "30s")
    assert server.get_json("/") == {"needed": "yes", "extra": "from the file"}
    snake = python_server(*where, "--env-var", "NEEDED=also", "--start-timeout=-1")
    assert snake.get_json("/")["needed"] == "also"
    code, output = python_server_fails(*where, "--env", "no-equals-sign")
    assert code != 0 and "<name>=<value>" in output
