"""ASGI app for stopping and reloading under load (run with `lifespan on`).
Standard library only.

Lifespan: shutdown prints "vivarium-stop lifespan shutdown <instance>".
HTTP routes (on scope["path"] minus scope["root_path"]):
  GET /instance               this instance's id (new at every import)
  GET /sse?n=N&gap=G&token=T  N events "data: <i>", one every G seconds (http.response.body
                              with more_body), then an empty last part; once that last part
                              is sent, prints "vivarium-stop last event sent T <instance>"
WebSocket routes:
  /ws                         accepts; echoes text until the client or the server closes
"""

import asyncio
import json
import uuid
from urllib.parse import parse_qs

INSTANCE = uuid.uuid4().hex


def query(scope):
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


def subpath(scope):
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            print(f"vivarium-stop lifespan shutdown {INSTANCE}", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def http(scope, receive, send):
    path = subpath(scope)
    q = query(scope)
    if path == "/instance":
        body = json.dumps({"instance": INSTANCE}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/sse":
        n, gap, token = int(q.get("n", "10")), float(q.get("gap", "0.2")), q.get("token", "")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i in range(n):
            await send(
                {"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True}
            )
            await asyncio.sleep(gap)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        print(f"vivarium-stop last event sent {token} {INSTANCE}", flush=True)
        return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"no such route"})


async def websocket(scope, receive, send):
    message = await receive()
    assert message["type"] == "websocket.connect", message
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
