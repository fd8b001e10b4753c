"""Raw ASGI 3 app (no framework): reports what the server hands it and exercises the
HTTP side of the ASGI contract. Standard library only.

Routes (on scope["path"] minus scope["root_path"]):
  ANY  /scope...                JSON description of the scope (any path below /scope)
  GET  /info                    pid and interpreter id
  POST /body?token=T            receive() until more_body is False; reports each message
                                (size, more_body), byte count, sha256, number of chunks;
                                the bytes read so far are kept under T as it goes, then
                                the outcome ("complete" or the message type that ended the
                                body) and its monotonic time
  GET  /download?size=N&chunk=C N bytes of random.Random(C).randbytes(C) parts, sent with
                                more_body=True
  POST /longpoll?token=T        reads the body, logs "vivarium-asgi-longpoll-waiting T", then
                                awaits receive() without responding; records under T the
                                message type and its monotonic time
  GET  /after?token=T           reads the (empty) body, responds, then awaits receive() once
                                more; the message type is kept under T
  GET  /report?token=T          what was recorded under T (JSON), {} if nothing
  GET  /headers                 a response with custom status and repeated headers
  GET  /sse?n=N&gap=G           N server-sent events, G seconds apart, each flushed at once
  GET  /forever?token=T         streams a chunk every 20 ms until the client goes away, while
                                a task awaits receive(); records under T the monotonic time
                                of the http.disconnect and of the send() that raised (and its
                                exception type)
  GET  /slow?s=S&token=T        logs "vivarium-asgi-slow-start T", sleeps S seconds
  GET  /executor?tasks=K        runs K blocking tasks in the loop's default executor at once;
                                reports the peak number running together
  GET  /raise?token=T           raises ValueError before http.response.start
  GET  /raise_after?token=T     sends start and a first body part, then raises
  GET  /start_only              sends http.response.start and returns
  GET  /unfinished              sends start and a body part with more_body, then returns
  GET  /nothing                 returns without sending anything
"""

import asyncio
import hashlib
import json
import os
import random
import threading
import time
from urllib.parse import parse_qs

import _interpreters

REPORTS = {}


def interp_id():
    return int(_interpreters.get_current()[0])


def query(scope):
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


def subpath(scope):
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def describe(value):
    """JSON-able form of a scope value that keeps bytes apart from str."""
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    return value


async def send_json(send, obj, status=200, headers=()):
    body = json.dumps(obj).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(receive):
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def explode_before_start(token):
    raise ValueError("vivarium-asgi-error before start " + token)


def explode_after_start(token):
    raise RuntimeError("vivarium-asgi-error after start " + token)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        # lifespan is off for this app: the server must not call it
        raise RuntimeError("vivarium-test: raw_app got a lifespan scope")
    assert scope["type"] == "http", scope["type"]
    path = subpath(scope)
    q = query(scope)

    if path.startswith("/scope"):
        messages = await read_body(receive)
        description = {k: describe(v) for k, v in scope.items()}
        description["types"] = {
            k: type(v).__name__ for k, v in scope.items()
        }
        description["header_types"] = sorted(
            {f"{type(n).__name__},{type(v).__name__}" for n, v in scope["headers"]}
        )
        description["header_is_pair"] = all(len(h) == 2 for h in scope["headers"])
        description["body"] = b"".join(m.get("body", b"") for m in messages).decode("latin-1")
        await send_json(send, description)
        return

    if path == "/info":
        await send_json(
            send,
            {"pid": os.getpid(), "interp_id": interp_id(), "thread": threading.get_ident()},
        )
        return

    if path == "/body":
        digest = hashlib.sha256()
        parts = []
        progress = REPORTS.setdefault(q["token"], {"bytes": 0}) if "token" in q else {"bytes": 0}
        while True:
            message = await receive()
            if message["type"] != "http.request":
                parts.append([message["type"], None])
                break
            body = message.get("body", b"")
            digest.update(body)
            progress["bytes"] += len(body)
            more = message.get("more_body", False)
            parts.append([len(body), more])
            if not more:
                break
        progress["outcome"] = "complete" if parts[-1][1] is False else parts[-1][0]
        progress["messages"] = parts[-3:]  # the last ones: how the body ended
        progress["at"] = time.monotonic()
        sizes = [p[0] for p in parts if isinstance(p[0], int)]
        await send_json(
            send,
            {
                "bytes": sum(sizes),
                "sha256": digest.hexdigest(),
                "chunks": len(sizes),
                "max_chunk": max(sizes) if sizes else 0,
                "messages": parts,
            },
        )
        return

    if path == "/download":
        size, chunk = int(q["size"]), int(q["chunk"])
        piece = random.Random(chunk).randbytes(chunk)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(size).encode()),
                ],
            }
        )
        left = size
        while left > 0:
            n = min(chunk, left)
            left -= n
            await send({"type": "http.response.body", "body": piece[:n], "more_body": left > 0})
        return

    if path == "/after":
        await read_body(receive)
        await send_json(send, {"ok": True})
        message = await asyncio.wait_for(receive(), 10)
        REPORTS[q["token"]] = {"after_complete": message["type"]}
        return

    if path == "/longpoll":
        token = q["token"]
        await read_body(receive)
        print(f"vivarium-asgi-longpoll-waiting {token}", flush=True)
        message = await receive()
        REPORTS[token] = {"type": message["type"], "at": time.monotonic()}
        return

    if path == "/report":
        await send_json(send, REPORTS.get(q["token"], {}))
        return

    if path == "/headers":
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"x-vivarium-test", b"one"),
                    (b"set-cookie", b"a=1; Path=/"),
                    (b"set-cookie", b"b=2; Path=/"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"created", "more_body": False})
        return

    if path == "/sse":
        n, gap = int(q.get("n", "4")), float(q.get("gap", "0.3"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        for i in range(n):
            if i:
                await asyncio.sleep(gap)
            event = f"id: {i}\nevent: tick\ndata: {i}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return

    if path == "/forever":
        token = q["token"]
        record = REPORTS.setdefault(token, {})
        record["started"] = time.monotonic()

        async def watch():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    record["disconnect"] = time.monotonic()
                    return

        watcher = asyncio.create_task(watch())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        chunk = b"x" * 1024
        try:
            while True:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(0.02)
                if time.monotonic() - record["started"] > 60:
                    break  # a server that never reports the disconnect: give up
        except Exception as exc:
            record["send_error"] = time.monotonic()
            record["send_error_type"] = type(exc).__name__
            record["send_error_is_oserror"] = isinstance(exc, OSError)
        try:
            await asyncio.wait_for(watcher, 5)
        except asyncio.TimeoutError:
            pass
        return

    if path == "/slow":
        print(f"vivarium-asgi-slow-start {q.get('token', '')}", flush=True)
        await asyncio.sleep(float(q.get("s", "1")))
        await send_json(send, {"interp_id": interp_id(), "token": q.get("token", "")})
        return

    if path == "/executor":
        tasks = int(q.get("tasks", "6"))
        lock = threading.Lock()
        state = {"active": 0, "peak": 0, "threads": set()}

        def blocking():
            with lock:
                state["active"] += 1
                state["peak"] = max(state["peak"], state["active"])
                state["threads"].add(threading.get_ident())
            time.sleep(0.5)
            with lock:
                state["active"] -= 1

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, blocking) for _ in range(tasks)))
        await send_json(
            send,
            {
                "peak": state["peak"],
                "threads": len(state["threads"]),
                "loop_thread": threading.get_ident(),
            },
        )
        return

    if path == "/raise":
        explode_before_start(q.get("token", ""))

    if path == "/raise_after":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"partial-body;", "more_body": True})
        await asyncio.sleep(0.1)
        explode_after_start(q.get("token", ""))

    if path == "/start_only":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        return

    if path == "/unfinished":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"partial-body;", "more_body": True})
        return

    if path == "/nothing":
        return

    await send_json(send, {"error": f"no route {path}"}, status=404)
