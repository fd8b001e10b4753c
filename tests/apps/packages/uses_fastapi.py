"""Imports and uses fastapi; serves what it computed (tests/test_package_support.py)."""

import fastapi

RESULT = fastapi.FastAPI(title="uses-fastapi").title


def app(environ, start_response):
    import json

    import _interpreters

    body = json.dumps({"result": RESULT, "interp_id": int(_interpreters.get_current()[0])}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
