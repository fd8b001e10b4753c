"""Streaming app: large bodies in both directions without buffering them.

Routes (on PATH_INFO):
  POST /upload?token=T         reads wsgi.input in 256 KiB chunks until it is exhausted;
                               returns {"bytes": n, "sha256": hex}; progress kept under T
  GET  /progress?token=T       bytes /upload has read so far for T
  GET  /download?size=N&seed=S&chunk=C
                               N bytes of random.Random(S).randbytes(C) chunks, from a generator
  GET  /gated?token=T          yields b"first;", waits until /release?token=T, yields b"second"
  GET  /release?token=T        opens the gate of T
"""

import hashlib
import json
import random
import threading
from urllib.parse import parse_qs

_lock = threading.Lock()
PROGRESS = {}
GATES = {}


def _query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode("utf-8")
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _gate(token):
    with _lock:
        return GATES.setdefault(token, threading.Event())


def _download(size, seed, chunk):
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def _gated(token):
    yield b"first;"
    if not _gate(token).wait(60):
        raise RuntimeError("vivarium-test: gate never opened")
    yield b"second"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = _query(environ)

    if path == "/upload":
        token = query.get("token", "")
        stream = environ["wsgi.input"]
        digest = hashlib.sha256()
        total = 0
        while True:
            chunk = stream.read(262144)
            if not chunk:
                break
            digest.update(chunk)
            total += len(chunk)
            with _lock:
                PROGRESS[token] = total
        return _json(start_response, {"bytes": total, "sha256": digest.hexdigest()})

    if path == "/progress":
        with _lock:
            done = PROGRESS.get(query["token"], 0)
        return _json(start_response, {"bytes": done})

    if path == "/download":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _download(int(query["size"]), int(query["seed"]), int(query["chunk"]))

    if path == "/gated":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _gated(query["token"])

    if path == "/release":
        _gate(query["token"]).set()
        return _json(start_response, {"released": True})

    return _json(start_response, {"error": "no route " + path}, "404 Not Found")
