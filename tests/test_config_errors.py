"""Mistakes in a `python` block are refused when the config is loaded, with a message
that names the Caddyfile line (parse errors) or the offending value."""

import os
import re

import pytest

from support import app_dir, python_block, q

PROBE = app_dir("probe")


def block_with(*lines):
    inner = "\n".join("\t" + line for line in lines)
    return f'python /*  {{\n\tmodule_wsgi "probe:app"\n\tworking_dir {q(PROBE)}\n{inner}\n}}'


@pytest.mark.parametrize(
    "line, words",
    [
        ("bogus_directive 1", ["bogus_directive"]),
        ("interpreters 0", ["interpreters", "0"]),
        ("interpreters -2", ["interpreters", "-2"]),
        ("interpreters many", ["interpreters", "many"]),
        ("threads abc", ["threads", "abc"]),
        ("threads 0", ["threads", "0"]),
        ("max_queue abc", ["max_queue", "abc"]),
        ("max_queue -1", ["max_queue", "-1"]),
        ("threads", ["threads"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_bad_line_is_refused_naming_its_line(caddy_must_refuse, line, words):
    failure = caddy_must_refuse(block_with(line))
    assert failure.returncode != 0
    number = failure.line_of(line)
    assert re.search(rf"Caddyfile:{number}\b", failure.output), (
        f"error does not name Caddyfile:{number}:\n{failure.output}"
    )
    for word in words:
        assert word in failure.output, f"{word!r} not in:\n{failure.output}"


def test_a_block_without_module_wsgi_is_refused(caddy_must_refuse):
    failure = caddy_must_refuse(f"python /* {{\n\tworking_dir {q(PROBE)}\n}}")
    assert failure.returncode != 0
    assert "module_wsgi" in failure.output, failure.output


def test_a_module_spec_without_a_module_is_refused(caddy_must_refuse):
    failure = caddy_must_refuse(python_block("/*", ":app", working_dir=PROBE))
    assert failure.returncode != 0
    assert '":app"' in failure.output.replace('\\"', '"'), failure.output


def test_a_missing_venv_directory_is_refused(caddy_must_refuse, tmp_path):
    missing = tmp_path / "no-such-venv"
    failure = caddy_must_refuse(python_block("/*", "probe:app", working_dir=PROBE, venv=missing))
    assert failure.returncode != 0
    assert str(missing) in failure.output, failure.output


def test_a_venv_of_another_python_version_is_refused(caddy_must_refuse, tmp_path, python_version):
    """A venv made by another minor version of Python, as it lies on disk: pyvenv.cfg
    names that version and its packages sit in lib/python3.<other>/site-packages."""
    major, minor = python_version[:2]
    other = f"{major}.{minor - 1}"
    venv = tmp_path / "venv-other"
    base = tmp_path / "python-other" / "bin"  # where that Python lived (not on this machine)
    (venv / "lib" / f"python{other}" / "site-packages").mkdir(parents=True)
    (venv / "bin").mkdir()
    os.symlink(base / f"python{other}", venv / "bin" / "python")
    (venv / "pyvenv.cfg").write_text(
        f"home = {base}\n"
        "include-system-site-packages = false\n"
        f"version = {other}.4\n"
        f"executable = {base / ('python' + other)}\n"
        f"command = {base / ('python' + other)} -m venv {venv}\n"
    )
    failure = caddy_must_refuse(python_block("/*", "probe:app", working_dir=PROBE, venv=venv))
    assert failure.returncode != 0
    assert other in failure.output, failure.output
    assert f"{major}.{minor}" in failure.output, failure.output


def test_interpreters_auto_is_accepted(start_caddy):
    server = start_caddy(python_block("/*", "probe:app", working_dir=PROBE, interpreters="auto"))
    info = server.get_json("/info")
    assert info["interp_id"] != 0
    assert info["interp_count"] >= 2
