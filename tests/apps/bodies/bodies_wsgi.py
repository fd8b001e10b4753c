"""WSGI app for the request-body and path tests. Standard library only.

Routes (on PATH_INFO):
  POST /read    reads wsgi.input to its end; answers JSON: size, sha256, the
                Transfer-Encoding and Content-Length the app was told of
  POST /ignore  answers "ignored" without reading the body
  ANY  other    JSON: the path as the app sees it (path, prefix) and as sent (raw)
"""

import hashlib
import json


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/read":
        body = environ["wsgi.input"].read()
        answer = {
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
            "content_length": environ.get("CONTENT_LENGTH"),
        }
    elif path == "/ignore":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ignored"]
    else:
        answer = {
            "path": path,
            "prefix": environ["SCRIPT_NAME"],
            "raw": environ["RAW_URI"],
        }
    body = json.dumps(answer).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
