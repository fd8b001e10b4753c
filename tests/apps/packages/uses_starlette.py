"""Imports and uses starlette; serves what it computed (tests/test_package_support.py)."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

RESULT = type(Starlette(routes=[Route("/", lambda request: JSONResponse({}))])).__name__


def app(environ, start_response):
    import json

    import _interpreters

    body = json.dumps({"result": RESULT, "interp_id": int(_interpreters.get_current()[0])}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
