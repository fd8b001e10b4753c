"""What the tests of the production controls (test_controls_*.py) share: the
controls app (tests/apps/controls) as a WSGI or an ASGI app, with extra lines."""

from __future__ import annotations

import json
import textwrap

from support import app_dir, python_block

CONTROLS = app_dir("controls")
KINDS = ["wsgi", "asgi"]


def block(matcher: str, kind: str, *lines: str, module: str | None = None, **options) -> str:
    """A `python` block serving the controls app (or `module` of it) as `kind`,
    with raw extra `lines` (repeatable directives such as `env NAME value`)
    and options, mounted at `matcher` as python_block mounts it."""
    if kind == "wsgi":
        text = python_block(None, module or "controls_app:app", working_dir=CONTROLS, **options)
    else:
        text = python_block(None, module_asgi=module or "controls_app:asgi", lifespan="on",
                            working_dir=CONTROLS, **options)
    head, _, tail = text.rpartition("}")
    inner = head + "".join(f"\t{line}\n" for line in lines) + "}" + tail
    if matcher and matcher.endswith("/*") and matcher != "/*":
        return f"handle_path {matcher} {{\n{textwrap.indent(inner, chr(9))}\n}}"
    return inner.replace("python {", f"python {matcher} {{", 1) if matcher else inner


def log_entries(server, needle: str) -> list[dict]:
    """The JSON entries of the server's log whose line contains needle."""
    return [entry for _, entry in server.log_entries_containing(needle) if entry is not None]


def info(server, prefix: str) -> dict:
    return server.get_json(f"{prefix}/info")


def env_of(server, prefix: str, *names: str) -> dict:
    response = server.get(f"{prefix}/env", params={"names": ",".join(names)})
    assert response.status_code == 200, response.text
    return json.loads(response.text)
