"""The import census: popular packages, pinned (app_requirements.CENSUS), each either
loads in an own-GIL interpreter or is refused cleanly, naming the extension module that
refuses it and the isolation that works, by `caddy python-check` and by `caddy run`;
never an abort. And where python-check sends a package, it serves: the own-GIL ones
side by side in one process, the `shared` ones likewise (and again after a reload), the
`main` ones together in the main interpreter.

Each package gets a generated app, uses_<name>.py, that imports and uses it at import
time and serves what it computed (RESULT) with its interpreter id. One venv holds them
all; charset-normalizer 3.4.4, next to 3.5.3, gets a venv of its own.
"""

from __future__ import annotations

import ctypes.util
import os
import re
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

import app_requirements as reqs
from support import app_dir, caddy_env, python_block, tail

# psycopg's compiled libpq wrapper (psycopg_binary) refuses own-GIL interpreters; psycopg
# then falls back to its ctypes wrapper, which needs the system's libpq.
HAVE_LIBPQ = ctypes.util.find_library("pq") is not None


@dataclass(frozen=True)
class Package:
    name: str
    use: str  # imports the package and sets RESULT
    result: object  # what RESULT must be
    isolation: str  # the strongest isolation python-check finds
    refused: str | None = None  # the extension module it names as refusing `interpreter`
    venv: str = "census"
    # {python minor: (isolation, refused, result)} where a version differs
    other: dict = field(default_factory=dict)
    # what python-check's `shared` line says when shared does not do: by default it
    # names the refused module again (on reload: PyO3, Cython, mypyc, numpy load once)
    in_shared: str | None = None

    def shared_says(self) -> str:
        return self.in_shared or f"extension module '{self.refused}'"


CENSUS = [
    Package("flask", "import flask\nRESULT = flask.Flask('uses_flask').name", "uses_flask", "interpreter"),
    Package("django", """
        import django
        from django.conf import settings
        settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
        django.setup()
        from django.db import connection
        with connection.cursor() as cursor:
            cursor.execute("select 6 * 7")
            RESULT = cursor.fetchone()[0]
        """, 42, "interpreter"),
    Package("starlette", """
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route
        RESULT = type(Starlette(routes=[Route("/", lambda request: JSONResponse({}))])).__name__
        """, "Starlette", "interpreter"),
    Package("jinja2", "import jinja2\nRESULT = jinja2.Environment(autoescape=True).from_string('{{ a }}!').render(a='<b>')",
            "&lt;b&gt;!", "interpreter"),
    Package("httpx", "import httpx\nRESULT = str(httpx.URL('http://example.invalid/a', params={'q': '1'}))",
            "http://example.invalid/a?q=1", "interpreter"),
    # charset-normalizer refuses, and requests goes on without charset detection
    Package("requests", """
        import requests
        import requests.compat
        url = requests.Request("GET", "http://example.invalid/", params={"q": "1"}).prepare().url
        RESULT = [url, requests.compat.chardet is None]
        """, ["http://example.invalid/?q=1", True], "interpreter"),
    # upb refuses; protobuf falls back to its pure-Python implementation
    Package("protobuf", """
        from google.protobuf import struct_pb2
        from google.protobuf.internal import api_implementation
        message = struct_pb2.Struct()
        message.update({"a": 1})
        RESULT = [struct_pb2.Struct.FromString(message.SerializeToString())["a"], api_implementation.Type()]
        """, [1.0, "python"], "interpreter"),
    Package("argon2", """
        import argon2
        hasher = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        RESULT = hasher.verify(hasher.hash("pw"), "pw")
        """, True, "shared", "_argon2_cffi_bindings._ffi"),
    Package("brotlicffi", """
        import brotlicffi
        RESULT = brotlicffi.decompress(brotlicffi.compress(b"census" * 10))[:6].decode()
        """, "census", "shared", "brotlicffi._brotlicffi"),
    Package("cffi", "import cffi\nRESULT = cffi.FFI().new('int *', 42)[0]", 42, "shared", "_cffi_backend"),
    Package("greenlet", "import greenlet\nRESULT = greenlet.greenlet(lambda: 42).switch()", 42, "shared",
            "greenlet._greenlet"),
    Package("orjson", "import orjson\nRESULT = orjson.dumps({'a': [1, 2]}).decode()", '{"a":[1,2]}', "shared",
            "orjson.orjson"),
    Package("pillow", "from PIL import Image\nRESULT = list(Image.new('RGB', (3, 2)).size)", [3, 2], "shared",
            "PIL._imaging"),
    # These load in one interpreter per process (PyO3, numpy, Cython, mypyc): a reload
    # in `shared` needs a second, so python-check sends them to main.
    Package("gevent", "import gevent\nRESULT = gevent.spawn(lambda: 6 * 7).get()", 42, "main",
            "gevent._gevent_c_hub_local"),
    Package("charset_normalizer", """
        import charset_normalizer
        RESULT = charset_normalizer.from_bytes("Größe, café, naïve: ça va très bien".encode()).best().encoding
        """, "utf_8", "main", "charset_normalizer.cd"),
    Package("charset_normalizer_344", """
        import charset_normalizer
        RESULT = charset_normalizer.from_bytes("Größe, café, naïve: ça va très bien".encode()).best().encoding
        """, "utf_8", "main", "charset_normalizer.md", venv="charset-3.4",
            # 3.4.4 has no compiled wheel for 3.15: pure Python there
            other={15: ("interpreter", None, "utf_8")},
            # a second interpreter gets md's functions from the first one's module copy
            in_shared="TypeError: 'NoneType' object is not callable"),
    Package("cryptography", """
        from cryptography.fernet import Fernet
        fernet = Fernet(Fernet.generate_key())
        RESULT = fernet.decrypt(fernet.encrypt(b"pw")).decode()
        """, "pw", "main", "cryptography.hazmat.bindings._rust"),
    Package("bcrypt", "import bcrypt\nRESULT = bcrypt.checkpw(b'pw', bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=4)))",
            True, "main", "bcrypt._bcrypt"),
    Package("lxml", "from lxml import etree\nRESULT = etree.fromstring('<a><b/><b/></a>').xpath('count(//b)')", 2.0,
            "main", "lxml.etree"),
    Package("grpcio", "import grpc\nRESULT = grpc.StatusCode.OK.name", "OK", "main", "grpc._cython.cygrpc"),
    Package("numpy", "import numpy\nRESULT = int(numpy.arange(10).sum())", 45, "main", "numpy._core._multiarray_umath"),
    Package("pydantic", """
        import pydantic
        class Model(pydantic.BaseModel):
            x: int
        RESULT = Model(x="42").x
        """, 42, "main", "pydantic_core._pydantic_core"),
    Package("fastapi", "import fastapi\nRESULT = fastapi.FastAPI(title='uses-fastapi').title", "uses-fastapi", "main",
            "pydantic_core._pydantic_core"),
    Package("sqlalchemy", """
        import sqlalchemy
        engine = sqlalchemy.create_engine("sqlite://")
        with engine.connect() as conn:
            RESULT = conn.execute(sqlalchemy.text("select 6 * 7")).scalar()
        """, 42, "main", "sqlalchemy.util._collections_cy"),
    # psycopg_binary refuses own-GIL interpreters; with the system's libpq psycopg then
    # loads its ctypes wrapper instead, without it the package refuses too.
    Package("psycopg", "import psycopg\nRESULT = psycopg.pq.__impl__", "python", "interpreter")
    if HAVE_LIBPQ else
    Package("psycopg", "import psycopg\nRESULT = psycopg.pq.__impl__", "binary", "main", "psycopg_binary.pq"),
]

APP = '''\
"""Imports and uses {name} (generated by tests/test_package_support.py)."""

{use}


def app(environ, start_response):
    import json

    import _interpreters

    body = json.dumps({{"result": RESULT, "interp_id": int(_interpreters.get_current()[0])}}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''


def embedded_minor() -> int | None:
    """The minor version of $PYTHON, the Python bin/caddy embeds (None when unset: the
    fixtures then fail the tests with the hint)."""
    python = os.environ.get("PYTHON")
    if not python:
        return None
    out = subprocess.check_output([python, "-c", "import sys; print(sys.version_info[1])"], text=True)
    return int(out)


def as_found_by(minor: int | None) -> dict[str, Package]:
    """The census as this Python finds it."""
    out = {}
    for p in CENSUS:
        if minor in p.other:
            isolation, refused, result = p.other[minor]
            p = Package(p.name, p.use, result, isolation, refused, p.venv, in_shared=p.in_shared)
        out[p.name] = p
    return out


HERE = as_found_by(embedded_minor())
NAMES = list(HERE)
REFUSED = [name for name, p in HERE.items() if p.refused]


@pytest.fixture(scope="module")
def census() -> dict[str, Package]:
    return HERE


@pytest.fixture(scope="module")
def venvs(make_venv):
    return {"census": make_venv("census", reqs.CENSUS), "charset-3.4": make_venv("census-charset", reqs.CHARSET_34)}


@pytest.fixture(scope="module")
def apps(tmp_path_factory, census):
    where = tmp_path_factory.mktemp("census-apps")
    for p in census.values():
        (where / f"uses_{p.name}.py").write_text(APP.format(name=p.name, use=textwrap.dedent(p.use).strip()))
    return where


def block(p: Package, apps, venvs, matcher: str | None = None, isolation: str | None = None) -> str:
    return python_block(matcher, f"uses_{p.name}:app", isolation=isolation, working_dir=apps, venv=venvs[p.venv])


@pytest.fixture(scope="module")
def checks(vivarium_bin, census, apps, venvs, tmp_path_factory):
    """python-check of every package -> (exit code, stdout, stderr)."""
    cwd = tmp_path_factory.mktemp("python-check")

    def check(p: Package):
        done = subprocess.run(
            [vivarium_bin, "python-check", f"uses_{p.name}:app", "--working-dir", str(apps), "--venv", str(venvs[p.venv])],
            cwd=cwd, env=caddy_env(cwd), capture_output=True, text=True, timeout=600,
        )
        return p.name, (done.returncode, done.stdout, done.stderr)

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(check, census.values()))


@pytest.fixture(scope="module")
def refusals(caddy_launcher, census, apps, venvs):
    """`caddy run` of each package refused in its own interpreter -> CaddyFailure."""

    def run(p: Package):
        # Named: the default, isolation auto, would run it in processes instead.
        return p.name, caddy_launcher.expect_failure(block(p, apps, venvs, isolation="interpreter"), timeout=300)

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(run, [p for p in census.values() if p.refused]))


@pytest.mark.parametrize("name", NAMES)
def test_python_check_gives_each_package_a_verdict(checks, census, name):
    p = census[name]
    code, out, err = checks[name]
    report = f"{name}: exit {code}\n{out}\n{err}"
    assert "killed the process" not in out + err and "SIGABRT" not in out + err, report
    assert re.search(rf"^strongest isolation that works: {p.isolation}$", out, re.M), report
    if p.isolation == "interpreter":
        assert code == 0, report
        assert re.search(r"^\s+interpreter\s+works$", out, re.M), report
        return
    assert code == 1, report
    assert re.search(rf"^\s+interpreter\s+fails: .*extension module '{re.escape(p.refused)}'", out, re.M), report
    assert f"use isolation {p.isolation}" in err, report
    if p.isolation == "shared":
        assert re.search(r"^\s+shared\s+works$", out, re.M), report
    else:
        shared = re.search(r"^\s+shared\s+fails.*", out, re.M | re.S)
        assert shared and p.shared_says() in shared.group(0).split("\n  main ")[0], report
        assert re.search(r"^\s+main\s+works", out, re.M), report


@pytest.mark.parametrize("name", REFUSED)
def test_caddy_run_refuses_naming_the_module_and_the_isolation_that_works(refusals, census, name):
    p = census[name]
    failure = refusals[name]
    # a refused config, not a dead process
    assert failure.returncode == 1, tail(failure.output)
    assert "killed the process" not in failure.output and "SIGABRT" not in failure.output, tail(failure.output)
    assert f"extension module '{p.refused}'" in failure.output, tail(failure.output)
    assert f"checked in a separate process: use `isolation {p.isolation}`" in failure.output, tail(failure.output)


def serve(caddy_launcher, body: str, paths: list[str], reload: bool = False) -> dict:
    caddy = caddy_launcher.start(body)
    try:
        answers = {path: caddy.get_json(path) for path in paths}
        if reload:
            caddy.reload(body, force=True)
            answers = {path: (answers[path], caddy.get_json(path)) for path in paths}
        assert caddy.alive()
    finally:
        caddy.stop()
    return answers


def test_the_own_gil_packages_serve_side_by_side_in_one_process(caddy_launcher, census, apps, venvs):
    own = [p for p in census.values() if p.isolation == "interpreter"]
    body = "\n".join(block(p, apps, venvs, f"/{p.name}/*") for p in own)
    answers = serve(caddy_launcher, body, [f"/{p.name}/" for p in own])
    for p in own:
        assert answers[f"/{p.name}/"]["result"] == p.result, (p.name, answers)
    ids = [answer["interp_id"] for answer in answers.values()]
    assert 0 not in ids and len(set(ids)) == len(ids), answers


def test_the_shared_packages_serve_side_by_side_and_again_after_a_reload(caddy_launcher, census, apps, venvs):
    shared = [p for p in census.values() if p.isolation == "shared"]
    body = "\n".join(block(p, apps, venvs, f"/{p.name}/*", "shared") for p in shared)
    answers = serve(caddy_launcher, body, [f"/{p.name}/" for p in shared], reload=True)
    for p in shared:
        before, after = answers[f"/{p.name}/"]
        assert before["result"] == after["result"] == p.result, (p.name, before, after)
        assert 0 != before["interp_id"] != after["interp_id"] != 0, (p.name, before, after)
    assert len({before["interp_id"] for before, _ in answers.values()}) == len(shared), answers


MAIN_APP = '''\
"""Imports and uses every package python-check sends to main (generated by
tests/test_package_support.py)."""

RESULTS = {{}}
{functions}


def app(environ, start_response):
    import json

    import _interpreters

    body = json.dumps({{"result": RESULTS, "interp_id": int(_interpreters.get_current()[0])}}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''


def test_the_main_packages_serve_together_in_the_main_interpreter(caddy_launcher, census, tmp_path, venvs):
    """Per venv, one app in `isolation main` uses all of them (one main app per process)."""
    groups = {}
    for p in census.values():
        if p.isolation == "main":
            groups.setdefault(p.venv, []).append(p)
    assert groups, "no package goes to main"
    for venv, main in groups.items():
        where = tmp_path / venv
        where.mkdir()
        functions = "\n".join(
            f"\n\ndef uses_{p.name}():\n{textwrap.indent(textwrap.dedent(p.use).strip(), '    ')}\n"
            f"    return RESULT\n\n\nRESULTS[{p.name!r}] = uses_{p.name}()"
            for p in main
        )
        (where / "uses_main.py").write_text(MAIN_APP.format(functions=functions))
        body = python_block(None, "uses_main:app", isolation="main", working_dir=where, venv=venvs[venv])
        answer = serve(caddy_launcher, body, ["/"])["/"]
        assert answer["interp_id"] == 0, (venv, answer)
        assert answer["result"] == {p.name: p.result for p in main}, (venv, answer)


def test_what_the_main_interpreter_imports_for_an_apps_boot_stays_out_of_the_main_app(
    caddy_launcher, census, apps, venvs
):
    """brotlicffi's init function runs in the main interpreter and imports _cffi_backend
    from the booting app's venv there; an app in `isolation main`, without that venv,
    still cannot import either."""
    body = "\n".join([
        python_block("/m/*", "probe:app", isolation="main", working_dir=app_dir("probe")),
        block(census["brotlicffi"], apps, venvs, "/b/*", "shared"),
    ])
    answers = serve(caddy_launcher, body, ["/b/", "/m/import?name=_cffi_backend", "/m/import?name=brotlicffi"])
    assert answers["/b/"]["result"] == "census", answers
    assert answers["/m/import?name=_cffi_backend"]["ok"] is False, answers
    assert answers["/m/import?name=brotlicffi"]["ok"] is False, answers
