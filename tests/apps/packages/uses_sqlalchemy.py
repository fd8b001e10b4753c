"""Imports and uses sqlalchemy; serves what it computed (tests/test_package_support.py)."""

import sqlalchemy

engine = sqlalchemy.create_engine("sqlite://")
with engine.connect() as conn:
    RESULT = conn.execute(sqlalchemy.text("select 6 * 7")).scalar()


def app(environ, start_response):
    import json

    import _interpreters

    body = json.dumps({"result": RESULT, "interp_id": int(_interpreters.get_current()[0])}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
