"""Apps get UTF-8 for file names and open(), as under `python -X utf8` (and 3.15's
default), whatever the locale: even with LANG=C, in every isolation, WSGI and ASGI."""

from __future__ import annotations

import os
from urllib.parse import quote

import pytest

from support import app_dir, python_block

NAME = "grüße-✓.txt"
CONTENT = "héllo wörld ✓"


@pytest.mark.parametrize("isolation", ["interpreter", "main"])
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_an_app_reads_and_writes_utf8_names_and_text_under_the_c_locale(
    caddy_launcher, monkeypatch, tmp_path, kind, isolation
):
    monkeypatch.setenv("LANG", "C")
    monkeypatch.setenv("LC_ALL", "C")
    (tmp_path / "naïve.txt").write_bytes("café".encode())
    if kind == "wsgi":
        block = python_block(None, "encoding_app:application", working_dir=app_dir("encoding"), isolation=isolation)
    else:
        block = python_block(None, module_asgi="encoding_app:app", working_dir=app_dir("encoding"), isolation=isolation)
    caddy = caddy_launcher.start(block)
    try:
        facts = caddy.get_json(f"/?dir={quote(str(tmp_path))}")
    finally:
        caddy.stop()
    assert facts["utf8_mode"] == 1, facts
    assert facts["preferred_encoding"].lower().replace("-", "") == "utf8", facts
    assert facts["filesystem_encoding"].lower().replace("-", "") == "utf8", facts
    assert facts["given"] == "café", facts
    assert NAME in facts["listed"] and "naïve.txt" in facts["listed"], facts
    # on disk: the name and the text the app wrote are UTF-8 bytes
    assert NAME.encode() in os.listdir(os.fsencode(tmp_path))
    assert (tmp_path / NAME).read_bytes() == CONTENT.encode()
