"""An app for `isolation process`: tells which process serves it and can crash that
process on request. Standard library only; `application` is the WSGI app, `app` the
ASGI one, with the same routes (on PATH_INFO, or the ASGI path minus root_path):

  GET /info                pid, parent pid, uid, gid, groups, interpreter id,
                           wsgi.multiprocess (WSGI), the VIVARIUM_* variables it sees
  GET /sleep?s=S&token=T   logs "vivarium-process-sleeping T", sleeps S seconds, answers
  GET /cpu?n=N             a pure-Python loop of N iterations; its thread's CPU time
  GET /print?text=X        prints X to stdout and answers
  GET /exit                os._exit(3): the process ends at once
  GET /segv                reads address 0 through ctypes: a segmentation fault
  GET /read?path=P         reads file P: its size, or the error
  GET /kill0?pid=P         os.kill(P, 0): whether this process may signal P

At import, when a file named `refuse-to-start` is next to this module, the import
raises: a process that can never start again.
"""

import asyncio
import ctypes
import json
import os
import sys
import time
from urllib.parse import parse_qs

import _interpreters

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.exists(os.path.join(HERE, "refuse-to-start")):
    raise RuntimeError("vivarium-test: refusing to start, refuse-to-start is present")


def _info(extra):
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": sorted(os.getgroups()),
        "interp_id": int(_interpreters.get_current()[0]),
        "vivarium_env": sorted(k for k in os.environ if k.startswith("VIVARIUM")),
        "home": os.environ.get("HOME"),
        **extra,
    }


def _cpu(n):
    started = time.thread_time()
    x = 0
    for i in range(n):
        x += i * i
    return {"cpu": time.thread_time() - started, "pid": os.getpid(), "x": x % 7}


def _read(path):
    try:
        with open(path, "rb") as fh:
            return {"ok": True, "size": len(fh.read())}
    except OSError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _kill0(pid):
    try:
        os.kill(pid, 0)
        return {"ok": True}
    except OSError as exc:
        return {"ok": False, "error": type(exc).__name__}


def _crash(path):
    if path == "/exit":
        os._exit(3)
    if path == "/segv":
        ctypes.string_at(0)


def _answer(path, query, extra):
    """(status, JSON-able body) for the routes that do not block."""
    if path == "/info":
        return 200, _info(extra)
    if path == "/cpu":
        return 200, _cpu(int(query.get("n", "1")))
    if path == "/print":
        print(query.get("text", ""))
        sys.stdout.flush()
        return 200, {"printed": True}
    if path == "/read":
        return 200, _read(query["path"])
    if path == "/kill0":
        return 200, _kill0(int(query["pid"]))
    return 404, {"error": f"no route {path}"}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    _crash(path)
    if path == "/sleep":
        print(f"vivarium-process-sleeping {query.get('token', '')}", flush=True)
        time.sleep(float(query.get("s", "1")))
        status, body = 200, {"slept": True, "pid": os.getpid()}
    else:
        status, body = _answer(path, query, {"multiprocess": environ["wsgi.multiprocess"]})
    data = json.dumps(body).encode()
    start_response(f"{status} X", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    root = scope.get("root_path", "")
    path = scope["path"][len(root):] if root and scope["path"].startswith(root) else scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
    _crash(path)
    if path == "/sleep":
        print(f"vivarium-process-sleeping {query.get('token', '')}", flush=True)
        await asyncio.sleep(float(query.get("s", "1")))
        status, body = 200, {"slept": True, "pid": os.getpid()}
    else:
        status, body = _answer(path, query, {})
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})
