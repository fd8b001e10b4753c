"""The hash functions of CPython's built-in hash modules, as an app served by
bin/caddy gets them, give what the system's own python3.X gives: bin/caddy may
link libpython statically, and then the HACL* functions that _md5, _sha1,
_sha2, _sha3 and _blake2 call come from runtime/hashes.c, not from CPython.

Every case of tests/apps/hashes/hash_cases.py (each algorithm around its block
size, whole and in pieces, digests while updating, copies, SHAKE lengths,
BLAKE2 parameters, and the errors of bad ones) is computed by the app, in an
own-GIL interpreter and in the main one, and by python3.X outside bin/caddy."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess

import pytest

from support import app_dir, python_block

TIMEOUT = 120


@functools.cache
def system_results(version: tuple[int, int]) -> dict:
    """hash_cases.py run by the system's python3.X, for the X of the app's Python."""
    python = shutil.which("python%d.%d" % version)
    assert python, f"no python{version[0]}.{version[1]} on PATH to compare with"
    out = subprocess.run(
        [python, "-I", str(app_dir("hashes") / "hash_cases.py")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    return json.loads(out)


@pytest.mark.parametrize("isolation", ["interpreter", "main"])
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_builtin_hash_modules_agree_with_the_system_python(caddy_launcher, kind, isolation):
    if kind == "wsgi":
        block = python_block(None, "hashes_app:application", working_dir=app_dir("hashes"), isolation=isolation)
    else:
        block = python_block(None, module_asgi="hashes_app:app", working_dir=app_dir("hashes"), isolation=isolation)
    caddy = caddy_launcher.start(block)
    try:
        served = caddy.get_json("/", timeout=TIMEOUT)
    finally:
        caddy.stop()
    expected = system_results(tuple(served["version"]))
    # The same modules on both sides: on Debian's Python they are libpython's
    # own ("built-in"), which a static bin/caddy serves from runtime/hashes.c.
    assert served["modules"] == expected["modules"]
    assert served["results"].keys() == expected["results"].keys()
    differing = {k: (v, expected["results"][k]) for k, v in served["results"].items() if v != expected["results"][k]}
    assert not differing, f"{len(differing)} of {len(expected['results'])} cases differ: {dict(list(differing.items())[:10])}"
    assert len(served["results"]) > 1500
