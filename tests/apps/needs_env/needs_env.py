"""An app whose import needs an environment variable, as apps that read their
settings at import do. WSGI `app`: answers with the variables NEEDED and EXTRA."""

import json
import os

NEEDED = os.environ["NEEDED"]  # a KeyError at import without it


def app(environ, start_response):
    body = json.dumps({"needed": NEEDED, "extra": os.environ.get("EXTRA")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
