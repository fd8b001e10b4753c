"""Imports and uses jinja2; serves what it computed (tests/test_package_support.py)."""

import jinja2

RESULT = jinja2.Environment(autoescape=True).from_string("{{ a }}!").render(a="<b>")


def app(environ, start_response):
    import json

    import _interpreters

    body = json.dumps({"result": RESULT, "interp_id": int(_interpreters.get_current()[0])}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
