"""Caddyfiles and JSON configs written for caddy-snake run unchanged: its names
(`workers`, `autoreload`, `venv_path`, `runtime sync|native`) are aliases of
Vivarium's settings, its `python /item/*` hands the app the full path as Vivarium
now does, and what Vivarium cannot honour is refused with what to use instead."""

import json
import re
import shutil
import subprocess

import httpx

import pytest

import app_requirements as reqs
from support import Caddy, app_dir, caddy_env, q, tail, wait_until

SNAKE = app_dir("snake")


@pytest.fixture(scope="module")
def flask_venv(make_venv):
    return make_venv("flask", reqs.FLASK)


def test_a_caddy_snake_caddyfile_runs_unchanged(start_caddy, flask_venv, tmp_path):
    (tmp_path / "app.env").write_text("FROM_FILE=file\nOVERRIDDEN=file\n")
    server = start_caddy(
        f"""python /item/* {{
	module_wsgi "main:app"
	working_dir {q(SNAKE)}
	venv {q(flask_venv)}
	workers 2
	runtime sync
	autoreload
	start_timeout 60s
}}
python /hello-world {{
	module_wsgi "main:app"
	working_dir {q(SNAKE)}
	venv {q(flask_venv)}
}}
python /env/* {{
	module_wsgi "main:app"
	working_dir {q(SNAKE)}
	venv {q(flask_venv)}
	env_file {q(tmp_path / "app.env")}
	env_var OVERRIDDEN inline
	env_var GREETING "hello there"
	start_timeout -1
}}"""
    )
    assert server.get("/hello-world").text == "Hello world!"
    assert server.get_json("/item/pen")["item"] == "pen"
    started = [e for _, e in server.log_entries_containing("interpreter started") if e]
    assert len(started) == 4, started  # workers 2 for /item/*, 1 each for the others
    values = {name: server.get_json(f"/env/{name}")["value"] for name in ("FROM_FILE", "OVERRIDDEN", "GREETING")}
    assert values == {"FROM_FILE": "file", "OVERRIDDEN": "inline", "GREETING": "hello there"}


def test_a_caddy_snake_json_config_runs_unchanged(caddy_launcher, flask_venv, tmp_path):
    """The JSON caddy-snake's own `caddy adapt` writes, with its field names."""
    app = tmp_path / "snake"
    shutil.copytree(SNAKE, app, ignore=shutil.ignore_patterns("__pycache__"))
    caddy: Caddy = caddy_launcher.new("snake-json")
    config = {
        "admin": {"listen": caddy.admin_address},
        "apps": {
            "http": {
                "servers": {
                    "srv0": {
                        "listen": [f"127.0.0.1:{caddy.http_port}"],
                        "routes": [
                            {
                                "match": [{"path": ["/item/*"]}],
                                "handle": [
                                    {
                                        "handler": "python",
                                        "module_wsgi": "main:app",
                                        "working_dir": str(app),
                                        "venv_path": str(flask_venv),
                                        "workers": "2",
                                        "autoreload": "on",
                                    }
                                ],
                            }
                        ],
                    }
                }
            }
        },
    }
    (caddy.workdir / "caddy.json").write_text(json.dumps(config))
    log = open(caddy.log_path, "ab")
    caddy.proc = subprocess.Popen(
        [caddy.binary, "run", "--config", "caddy.json"], cwd=caddy.workdir,
        stdout=log, stderr=subprocess.STDOUT, env=caddy_env(caddy.workdir),
    )
    caddy._log_handle = log
    caddy_launcher.running.append(caddy)
    try:
        assert wait_until(caddy.port_answers, timeout=60), tail(caddy.log_text())
        caddy.client = httpx.Client(base_url=caddy.base_url, timeout=60)
        assert caddy.get_json("/item/cup")["item"] == "cup"
        assert caddy.wait_for_log('"interpreter":1'), "workers 2 should start two interpreters"
        (app / "main.py").write_text((app / "main.py").read_text() + "\n# edited\n")
        assert caddy.wait_for_log("app restarted", timeout=30), "autoreload on should watch the app"
    finally:
        caddy.stop()


@pytest.mark.parametrize(
    "line, says",
    [
        ("python_path /usr/bin/python3", "venv"),
        ("runtime gevent", "threads"),
        ("isolation docker {\n\t\timage python:3.14-slim\n\t}", "isolation process"),
        ("cache {\n\t}", "Redis"),
        ("request_body {\n\t\tmax_size 1MB\n\t}", "request_body { max_size"),
    ],
)
def test_what_vivarium_cannot_honour_is_refused_with_what_to_use(caddy_must_refuse, line, says):
    failure = caddy_must_refuse(f'python /* {{\n\tmodule_wsgi "main:app"\n\tworking_dir {q(SNAKE)}\n\t{line}\n}}')
    assert failure.returncode != 0
    assert says in failure.output, failure.output[-2000:]
    number = failure.line_of(line.split()[0])
    assert re.search(rf"Caddyfile:{number}\b", failure.output), failure.output[-2000:]


def test_module_esgi_is_refused_with_what_to_use(caddy_must_refuse):
    failure = caddy_must_refuse(f'python /* {{\n\tmodule_esgi "main:application"\n\tworking_dir {q(SNAKE)}\n}}')
    assert "module_wsgi" in failure.output and "module_asgi" in failure.output


FOREVER_NS = 100 * 365 * 24 * 3600 * 10**9  # start_timeout -1: a bound no import reaches


def python_handler(node):
    """The first `python` handler in adapted JSON."""
    if isinstance(node, dict):
        if node.get("handler") == "python":
            return node
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = python_handler(child)
            if found is not None:
                return found
    return None


def adapt(vivarium_bin, tmp_path, block: str):
    (tmp_path / "Caddyfile").write_text(f"http://127.0.0.1:8080 {{\n{block}\n}}\n")
    return subprocess.run([vivarium_bin, "adapt", "--config", "Caddyfile", "--adapter", "caddyfile"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=caddy_env(tmp_path))


@pytest.mark.parametrize(
    "kind, line, holds",
    [
        # The rows of README.md's "Coming from caddy-snake" that a Caddyfile line makes.
        ("wsgi", "workers 3", {"interpreters": 3}),
        ("wsgi", "workers 0", {"interpreters": "auto"}),
        ("wsgi", "autoreload", {"watch": ["*.py"]}),
        ("wsgi", 'env_var GREETING "hello there"', {"env": {"GREETING": "hello there"}}),
        ("wsgi", "env_file app.env", {"env_file": "app.env"}),
        ("wsgi", "start_timeout 60s", {"start_timeout": 60 * 10**9}),
        ("wsgi", "start_timeout -1", {"start_timeout": FOREVER_NS}),
        ("wsgi", "start_timeout forever", {"start_timeout": FOREVER_NS}),
        ("wsgi", "runtime sync", {"runtime": "sync"}),
        ("asgi", "runtime native", {"runtime": "native"}),
        ("asgi", "lifespan on", {"lifespan": "on"}),
        ("wsgi", "isolation none", {"isolation": None}),
        ("wsgi", "venv /srv/venv", {"venv": "/srv/venv"}),
        ("wsgi", "working_dir /srv/app", {"working_dir": "/srv/app"}),
    ],
)
def test_each_caddy_snake_directive_means_what_the_readme_says(vivarium_bin, tmp_path, kind, line, holds):
    adapted = adapt(vivarium_bin, tmp_path, f'python /* {{\n\tmodule_{kind} "main:app"\n\t{line}\n}}')
    assert adapted.returncode == 0, adapted.stderr
    handler = python_handler(json.loads(adapted.stdout))
    assert {key: handler.get(key) for key in holds} == holds, handler


@pytest.mark.parametrize(
    "kind, line, says",
    [
        ("asgi", "runtime uvloop", "asyncio's own loop"),
        ("wsgi", "runtime native", "sync (WSGI)"),
        ("wsgi", "autoreload *.py", "use watch <glob>"),
        ("wsgi", "python_path /usr/bin/python3", "venv"),
    ],
)
def test_what_a_caddy_snake_line_cannot_mean_here_is_refused_when_adapted(vivarium_bin, tmp_path, kind, line, says):
    adapted = adapt(vivarium_bin, tmp_path, f'python /* {{\n\tmodule_{kind} "main:app"\n\t{line}\n}}')
    assert adapted.returncode != 0 and says in adapted.stderr, adapted.stderr


def test_caddy_snakes_json_start_timeout_and_max_dynamic_apps_strings_load(caddy_launcher, flask_venv, tmp_path):
    """caddy-snake writes start_timeout and max_dynamic_apps as strings in JSON."""
    caddy: Caddy = caddy_launcher.new("snake-json-strings")
    handler = {"handler": "python", "module_wsgi": "main:app", "working_dir": str(SNAKE),
               "venv_path": str(flask_venv), "start_timeout": "-1"}
    dynamic = {"handler": "python", "module_wsgi": "main:app", "working_dir": str(SNAKE) + "/{http.request.host.labels.9}",
               "venv_path": str(flask_venv), "max_dynamic_apps": "4", "name": "tenants"}
    config = {"admin": {"listen": caddy.admin_address}, "apps": {"http": {"servers": {"srv0": {
        "listen": [f"127.0.0.1:{caddy.http_port}"],
        "routes": [{"match": [{"path": ["/dynamic/*"]}], "handle": [dynamic]}, {"handle": [handler]}]}}}}}
    (caddy.workdir / "caddy.json").write_text(json.dumps(config))
    log = open(caddy.log_path, "ab")
    caddy.proc = subprocess.Popen([caddy.binary, "run", "--config", "caddy.json"], cwd=caddy.workdir,
                                  stdout=log, stderr=subprocess.STDOUT, env=caddy_env(caddy.workdir))
    caddy._log_handle = log
    caddy_launcher.running.append(caddy)
    try:
        assert wait_until(caddy.port_answers, timeout=60), tail(caddy.log_text())
        caddy.client = httpx.Client(base_url=caddy.base_url, timeout=60)
        assert caddy.get("/hello-world").text == "Hello world!"
    finally:
        caddy.stop()
