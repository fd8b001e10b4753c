"""Imports and uses psycopg; serves what it computed (tests/test_package_support.py)."""

import psycopg

# which libpq wrapper psycopg chose: "binary" (its compiled one) or "python" (ctypes)
RESULT = psycopg.pq.__impl__


def app(environ, start_response):
    import json

    import _interpreters

    body = json.dumps({"result": RESULT, "interp_id": int(_interpreters.get_current()[0])}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
