"""`caddy python-check <module:attr> --working-dir DIR --venv VENV`: which extension
modules an app loads, whether they load in an own-GIL interpreter, and the strongest
isolation that works. Exit 0: `isolation interpreter` works; 1: only shared or main
does; 2: the app does not import at all."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

import app_requirements as reqs
from support import app_dir, caddy_env


@dataclass
class Check:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def section(self, title: str) -> str:
        """The indented lines under the line `title` (up to the next blank line)."""
        lines = self.stdout.splitlines()
        start = lines.index(title) + 1
        out = []
        for line in lines[start:]:
            if not line.strip():
                break
            out.append(line)
        return "\n".join(out)


@pytest.fixture
def python_check(vivarium_bin, tmp_path):
    def run(spec: str, working_dir, venv=None) -> Check:
        cmd = [vivarium_bin, "python-check", spec, "--working-dir", str(working_dir)]
        if venv is not None:
            cmd += ["--venv", str(venv)]
        done = subprocess.run(
            cmd, cwd=tmp_path, env=caddy_env(tmp_path), capture_output=True, text=True, timeout=120
        )
        return Check(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture(scope="module")
def venvs(make_venv):
    return {"fastapi": make_venv("fastapi", reqs.FASTAPI), "flask": make_venv("flask", reqs.FLASK)}


def test_flask_app_can_have_its_own_interpreter(python_check, venvs, python_version):
    check = python_check("flask_app:app", app_dir("flask_app"), venvs["flask"])
    assert check.returncode == 0, check
    major, minor, _ = python_version
    assert re.match(rf"Python {major}\.{minor}\.\d+", check.stdout), check
    # MarkupSafe's C speedups are Flask's one extension module, and it loads
    extensions = check.section("extension modules the app loads, in an own-GIL interpreter:")
    assert re.search(r"^\s+loads\s+markupsafe\._speedups$", extensions, re.M), check
    assert "refused" not in extensions, check
    assert re.search(r"^\s+interpreter\s+works$", check.section("isolation:"), re.M), check
    assert "strongest isolation that works: interpreter" in check.stdout, check


def test_stdlib_only_app_has_no_extensions_to_report(python_check):
    check = python_check("probe:app", app_dir("probe"))
    assert check.returncode == 0, check
    assert "(none outside the standard library)" in check.stdout, check
    assert "strongest isolation that works: interpreter" in check.stdout, check


def test_fastapi_app_is_told_pydantic_core_refuses_own_gil_interpreters(python_check, venvs):
    check = python_check("fastapi_app:app", app_dir("fastapi_app"), venvs["fastapi"])
    assert check.returncode == 1, check
    extensions = check.section("extension modules the app loads, in an own-GIL interpreter:")
    assert re.search(r"^\s+refused\s+pydantic_core\._pydantic_core\s+\(.+\)$", extensions, re.M), check
    isolation = check.section("isolation:")
    assert re.search(r"^\s+interpreter\s+fails: .*pydantic_core", isolation, re.M), check
    # pydantic_core (PyO3) loads in one interpreter per process: shared starts
    # once, but a reload would need a second interpreter, so main is the answer.
    assert re.search(r"^\s+shared\s+fails on reload: .*PyO3", isolation, re.M), check
    assert re.search(r"^\s+main\s+works", isolation, re.M), check
    assert re.search(r"^strongest isolation that works: main$", check.stdout, re.M), check
    assert "cannot run with isolation interpreter" in check.stderr, check
    assert "use isolation main" in check.stderr, check


def test_missing_module_exits_2(python_check, venvs):
    check = python_check("no_such_module_here:app", app_dir("flask_app"), venvs["flask"])
    assert check.returncode == 2, check
    assert "no_such_module_here" in check.stdout, check
    assert "strongest isolation" not in check.stdout, check


def test_app_that_raises_on_import_exits_2(python_check):
    check = python_check("boom:app", app_dir("broken"))
    assert check.returncode == 2, check
    assert "vivarium-test: boom at import time" in check.stdout, check
    assert "strongest isolation" not in check.stdout, check


def test_no_app_argument_exits_2(vivarium_bin, tmp_path):
    done = subprocess.run(
        [vivarium_bin, "python-check"], cwd=tmp_path, env=caddy_env(tmp_path),
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)


# An extension module that aborts the process when it runs in a subinterpreter: its
# exec slot (multi-phase init, declared fit for own-GIL interpreters) calls abort().
ABORTS_IN_SUBINTERPRETERS = r"""
#include <Python.h>
#include <stdlib.h>

static int exec_module(PyObject *m)
{
    if (PyInterpreterState_Get() != PyInterpreterState_Main())
        abort();
    return PyModule_AddIntConstant(m, "ANSWER", 42);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {0, NULL},
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "aborts_sub", NULL, 0, NULL, slots};

PyMODINIT_FUNC PyInit_aborts_sub(void) { return PyModuleDef_Init(&def); }
"""

APP_USING_IT = """
import aborts_sub


def app(environ, start_response):
    start_response("200 OK", [])
    return [str(aborts_sub.ANSWER).encode()]
"""


@pytest.fixture
def aborting_app(tmp_path, python_exe):
    """An app dir holding aborts_sub, compiled for $PYTHON, and an app importing it."""
    config = subprocess.check_output(
        [python_exe, "-c", "import sysconfig, importlib.machinery as m; "
         "print(sysconfig.get_paths()['include']); print(m.EXTENSION_SUFFIXES[0])"],
        text=True,
    ).split()
    include, suffix = config
    (tmp_path / "aborts_sub.c").write_text(ABORTS_IN_SUBINTERPRETERS)
    subprocess.run(
        [shutil.which("cc") or "gcc", "-shared", "-fPIC", "-O1", f"-I{include}",
         "-o", str(tmp_path / f"aborts_sub{suffix}"), str(tmp_path / "aborts_sub.c")],
        check=True, capture_output=True, timeout=120,
    )
    (tmp_path / "uses_aborts_sub.py").write_text(APP_USING_IT)
    return tmp_path


def test_an_extension_that_aborts_its_interpreter_gets_a_verdict(python_check, aborting_app):
    """Each isolation is tried in a child process: the abort kills the child, and the
    check names the module, says how its process died and finds where it works."""
    check = python_check("uses_aborts_sub:app", aborting_app)
    assert check.returncode == 1, check
    isolation = check.section("isolation:")
    died = r"importing aborts_sub aborted the interpreter, and its process with it \(SIGABRT"
    assert re.search(rf"^\s+interpreter\s+fails: {died}", isolation, re.M), check
    assert re.search(rf"^\s+shared\s+fails: {died}", isolation, re.M), check
    assert re.search(r"^\s+main\s+works", isolation, re.M), check
    extensions = check.section("extension modules the app loads, in an own-GIL interpreter:")
    assert re.search(rf"^\s+aborts\s+aborts_sub\s+\({died}", extensions, re.M), check
    assert re.search(r"^strongest isolation that works: main$", check.stdout, re.M), check
    assert "use isolation main" in check.stderr, check
