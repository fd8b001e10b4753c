"""Raw ASGI WebSocket app. Standard library only.

WebSocket routes (on scope["path"] minus scope["root_path"]):
  /echo                 accepts; echoes every message with its type (text or bytes)
  /scope                accepts; sends the scope as one JSON text message, then echoes
  /subprotocol          accepts with the last subprotocol the client offered and an extra
                        response header; sends {"offered": [...]} as JSON, then echoes
  /server_close         accepts, waits for one message, closes with code 4001, reason "bye now"
  /client_close?token=T accepts, echoes; records under T the code of the websocket.disconnect
  /deny                 closes before accepting (the client must get HTTP 403)
HTTP routes:
  GET /report?token=T   what was recorded under T (JSON), {} if nothing
  GET /info             pid, interpreter id, open sockets
"""

import json
import os
from urllib.parse import parse_qs

import _interpreters

REPORTS = {}
OPEN = {"now": 0, "peak": 0}


def query(scope):
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


def subpath(scope):
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def describe(value):
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    return value


async def send_json(send, obj, status=200):
    body = json.dumps(obj).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def echo(receive, send, record=None):
    """Echoes until the client disconnects; returns the websocket.disconnect message."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            if record is not None:
                record["disconnect_code"] = message.get("code")
            return message
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def websocket(scope, receive, send):
    path = subpath(scope)
    q = query(scope)
    connect = await receive()
    assert connect["type"] == "websocket.connect", connect

    if path == "/deny":
        await send({"type": "websocket.close", "code": 1008})
        return

    OPEN["now"] += 1
    OPEN["peak"] = max(OPEN["peak"], OPEN["now"])
    try:
        if path == "/echo":
            await send({"type": "websocket.accept"})
            await echo(receive, send)
        elif path == "/scope":
            await send({"type": "websocket.accept"})
            description = {k: describe(v) for k, v in scope.items()}
            description["types"] = {k: type(v).__name__ for k, v in scope.items()}
            await send({"type": "websocket.send", "text": json.dumps(description)})
            await echo(receive, send)
        elif path == "/subprotocol":
            offered = list(scope.get("subprotocols", []))
            await send(
                {
                    "type": "websocket.accept",
                    "subprotocol": offered[-1] if offered else None,
                    "headers": [(b"x-vivarium-ws", b"accepted")],
                }
            )
            await send({"type": "websocket.send", "text": json.dumps({"offered": offered})})
            await echo(receive, send)
        elif path == "/server_close":
            await send({"type": "websocket.accept"})
            await receive()
            await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})
        elif path == "/client_close":
            record = REPORTS.setdefault(q["token"], {})
            await send({"type": "websocket.accept"})
            await echo(receive, send, record)
        else:
            await send({"type": "websocket.close", "code": 1000})
    finally:
        OPEN["now"] -= 1


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
        return
    assert scope["type"] == "http", scope["type"]
    path = subpath(scope)
    if path == "/report":
        await send_json(send, REPORTS.get(query(scope)["token"], {}))
    elif path == "/info":
        await send_json(
            send,
            {
                "pid": os.getpid(),
                "interp_id": int(_interpreters.get_current()[0]),
                "open": OPEN["now"],
                "peak": OPEN["peak"],
            },
        )
    else:
        await send_json(send, {"error": f"no route {path}"}, status=404)
