"""ASGI app for the request-body and path tests. Standard library only.

Routes (on scope["path"]):
  POST /read?token=T    receive() until the body ends; answers JSON: size, sha256,
                        the transfer-encoding and content-length headers of the scope.
                        Records under T how the body ended: "complete" or the type
                        of the message that ended it
  POST /ignore          answers "ignored" without calling receive()
  GET  /report?token=T  what was recorded under T (JSON), {} if nothing
  ANY  other            JSON: the path as the app sees it (path, prefix = root_path)
                        and as sent (raw = raw_path)
"""

import hashlib
import json
from urllib.parse import parse_qs

REPORTS = {}


def header(scope, name):
    values = [v.decode("latin-1") for n, v in scope["headers"] if n == name]
    return ", ".join(values) if values else None


async def respond(send, status, body, content_type=b"application/json"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    token = parse_qs(scope["query_string"].decode()).get("token", [""])[0]
    if path == "/read":
        digest, size = hashlib.sha256(), 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                REPORTS[token] = message["type"]
                return
            digest.update(message["body"])
            size += len(message["body"])
            if not message.get("more_body"):
                break
        REPORTS[token] = "complete"
        answer = {
            "size": size,
            "sha256": digest.hexdigest(),
            "transfer_encoding": header(scope, b"transfer-encoding"),
            "content_length": header(scope, b"content-length"),
        }
        await respond(send, 200, json.dumps(answer).encode())
    elif path == "/ignore":
        await respond(send, 200, b"ignored", b"text/plain")
    elif path == "/report":
        await respond(send, 200, json.dumps(REPORTS.get(token, {})).encode())
    else:
        answer = {
            "path": path,
            "prefix": scope["root_path"],
            "raw": scope["raw_path"].decode("latin-1"),
        }
        await respond(send, 200, json.dumps(answer).encode())
