"""Which popular packages run in which isolation, with the pinned versions of
app_requirements.PACKAGE_SUPPORT in one venv. Each tests/apps/packages/uses_<name>.py
imports and uses one package and serves what it computed.

- `caddy python-check` says `interpreter` for the pure-Python packages and those whose
  extensions support own-GIL interpreters, and refuses, naming the extension, numpy,
  orjson, pydantic_core (so pydantic and FastAPI) and SQLAlchemy's compiled wheel.
- The former really serve from own-GIL interpreters, side by side in one process.
- The latter really serve with `isolation main` and `isolation shared`.
"""

from __future__ import annotations

import ctypes.util
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

import app_requirements as reqs
from support import app_dir, caddy_env, python_block

# What each uses_<name>.py computes.
RESULTS = {
    "flask": "uses_flask",
    "django": 42,
    "starlette": "Starlette",
    "fastapi": "uses-fastapi",
    "pydantic": 42,
    "orjson": '{"a":[1,2]}',
    "numpy": 45,
    "sqlalchemy": 42,
    "jinja2": "&lt;b&gt;!",
    "requests": "http://example.invalid/?q=1",
    "httpx": "http://example.invalid/a?q=1",
}

# psycopg's compiled libpq wrapper (psycopg_binary) refuses own-GIL interpreters; psycopg
# then falls back to its ctypes wrapper, which needs the system's libpq.
HAVE_LIBPQ = ctypes.util.find_library("pq") is not None

OWN_GIL = ["flask", "django", "starlette", "jinja2", "requests", "httpx"] + (
    ["psycopg"] if HAVE_LIBPQ else []
)
# package -> an extension module python-check must name as refused
REFUSED = {
    "numpy": "numpy._core._multiarray_umath",
    "orjson": "orjson.orjson",
    "pydantic": "pydantic_core._pydantic_core",
    "fastapi": "pydantic_core._pydantic_core",
    "sqlalchemy": "sqlalchemy.util._collections_cy",
} | ({} if HAVE_LIBPQ else {"psycopg": "psycopg_binary"})

# Where python-check sends each refused package: shared when a second
# interpreter of the process can load it again (what a reload needs), main
# when it loads in only one interpreter per process (PyO3, numpy, Cython).
STRONGEST = {"numpy": "main", "orjson": "shared", "pydantic": "main", "fastapi": "main",
             "sqlalchemy": "main", "psycopg": "shared"}


@pytest.fixture(scope="module")
def venv(make_venv):
    return make_venv("package-support", reqs.PACKAGE_SUPPORT)


@pytest.fixture(scope="module")
def checks(vivarium_bin, venv, tmp_path_factory):
    """python-check of every uses_<name>:app -> (exit code, stdout, stderr)."""
    cwd = tmp_path_factory.mktemp("python-check")

    def check(name):
        done = subprocess.run(
            [vivarium_bin, "python-check", f"uses_{name}:app",
             "--working-dir", str(app_dir("packages")), "--venv", str(venv)],
            cwd=cwd, env=caddy_env(cwd), capture_output=True, text=True, timeout=120,
        )
        return name, (done.returncode, done.stdout, done.stderr)

    names = sorted(set(OWN_GIL) | set(REFUSED))
    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(check, names))


@pytest.mark.parametrize("name", OWN_GIL)
def test_python_check_says_interpreter(checks, name):
    code, out, err = checks[name]
    assert code == 0, f"{name}: exit {code}\n{out}\n{err}"
    assert "strongest isolation that works: interpreter" in out, out
    assert not re.search(r"^\s+refused\s", out, re.M), out


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_python_check_names_the_refused_extension(checks, name):
    code, out, err = checks[name]
    assert code == 1, f"{name}: exit {code}\n{out}\n{err}"
    assert re.search(rf"^\s+refused\s+{re.escape(REFUSED[name])}\b", out, re.M), out
    if STRONGEST[name] == "shared":
        assert re.search(r"^\s+shared\s+works$", out, re.M), out
    else:
        assert re.search(r"^\s+shared\s+fails on reload: .*one interpreter per process", out, re.M), out
    assert re.search(rf"^strongest isolation that works: {STRONGEST[name]}$", out, re.M), out


def test_own_gil_packages_serve_side_by_side_in_one_process(caddy_launcher, venv):
    where = app_dir("packages")
    body = "\n".join(
        python_block(f"/{name}/*", f"uses_{name}:app", working_dir=where, venv=venv)
        for name in OWN_GIL
    )
    caddy = caddy_launcher.start(body)
    try:
        answers = {name: caddy.get_json(f"/{name}/") for name in OWN_GIL}
    finally:
        caddy.stop()
    for name, answer in answers.items():
        want = "python" if name == "psycopg" else RESULTS[name]
        assert answer["result"] == want, (name, answer)
    ids = [answer["interp_id"] for answer in answers.values()]
    assert 0 not in ids and len(set(ids)) == len(ids), answers


def test_refused_packages_serve_in_main_and_shared(caddy_launcher, venv):
    """numpy in the main interpreter; orjson, pydantic_core, SQLAlchemy's compiled
    modules and psycopg_binary each in a shared-GIL interpreter of the same process
    (each PyO3 module in one interpreter only)."""
    where = app_dir("packages")
    placement = {"numpy": "main", "orjson": "shared", "pydantic": "shared", "sqlalchemy": "shared",
                 "psycopg": "shared"}
    body = "\n".join(
        python_block(f"/{name}/*", f"uses_{name}:app", isolation=mode, working_dir=where, venv=venv)
        for name, mode in placement.items()
    )
    caddy = caddy_launcher.start(body)
    try:
        answers = {name: caddy.get_json(f"/{name}/") for name in placement}
    finally:
        caddy.stop()
    for name, answer in answers.items():
        want = "binary" if name == "psycopg" else RESULTS[name]
        assert answer["result"] == want, (name, answer)
    assert answers["numpy"]["interp_id"] == 0, answers
    shared = [answers[name]["interp_id"] for name, mode in placement.items() if mode == "shared"]
    assert 0 not in shared and len(set(shared)) == len(shared), answers


def test_fastapi_serves_in_main(caddy_launcher, venv):
    caddy = caddy_launcher.start(
        python_block(None, "uses_fastapi:app", isolation="main", working_dir=app_dir("packages"), venv=venv)
    )
    try:
        answer = caddy.get_json("/")
    finally:
        caddy.stop()
    assert answer == {"result": RESULTS["fastapi"], "interp_id": 0}
