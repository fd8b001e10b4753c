"""Imports and uses django; serves what it computed (tests/test_package_support.py)."""

import django
from django.conf import settings

settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
django.setup()
from django.db import connection  # noqa: E402

with connection.cursor() as cursor:
    cursor.execute("select 6 * 7")
    RESULT = cursor.fetchone()[0]


def app(environ, start_response):
    import json

    import _interpreters

    body = json.dumps({"result": RESULT, "interp_id": int(_interpreters.get_current()[0])}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
