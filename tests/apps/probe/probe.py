"""Probe app: reports facts about the interpreter and process it runs in.

Plain WSGI, standard library only. Routes (on PATH_INFO):
  GET  /info            pid, interpreter id and count, sys.path, thread ident
  GET  /import?name=M   whether module M is importable here, its __version__ and file
  GET  /global          the module-level value
  POST /global          sets the module-level value to the request body
  GET  /cpu?n=N         a pure-Python loop of N iterations (holds this interpreter's GIL);
                        reports its wall time and the CPU time of its thread
  GET  /sleep?s=S       sleeps S seconds (releases the GIL)
                        Both report in_flight: the most /cpu and /sleep requests that
                        were inside this interpreter at once while it ran.
  GET  /together?file=F&slot=K&parties=N
                        marks slot K of the file F (N bytes, made by the caller), then
                        spins in Python, never letting go of its GIL, until all N slots
                        are marked: it returns seen=true only if N requests ran Python at
                        the same moment, so they held N different GILs; false after 20 s
  GET  /barrier?parties=N&token=T
                        waits until N requests with token T are inside the app at once
                        (so it succeeds only if the app has N threads); 500 after 20 s
"""

import datetime  # imported on purpose: interpreters that imported datetime must end cleanly
import importlib
import mmap
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs

import _interpreters

STATE = {"value": "unset"}
BARRIERS = {}
_lock = threading.Lock()
_in_flight: dict[object, int] = {}  # request -> most requests in flight while it ran


class _Tracked:
    """Counts the request in flight for as long as the with-block runs."""

    def __enter__(self):
        with _lock:
            _in_flight[self] = 0
            now = len(_in_flight)
            for key, most in _in_flight.items():
                _in_flight[key] = max(most, now)
        return self

    def __exit__(self, *exc):
        with _lock:
            self.in_flight = _in_flight.pop(self)
IMPORTED_AT = datetime.datetime.now(datetime.timezone.utc).isoformat()
TAG = "probe"


def interp_id():
    return int(_interpreters.get_current()[0])


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode("utf-8")
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _text(start_response, text, status="200 OK"):
    body = text.encode("utf-8")
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _read_body(environ):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ["REQUEST_METHOD"]
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}

    if path == "/info":
        return _json(
            start_response,
            {
                "tag": TAG,
                "pid": os.getpid(),
                "interp_id": interp_id(),
                "interp_count": len(_interpreters.list_all()),
                "sys_path": list(sys.path),
                "thread_ident": threading.get_ident(),
                "imported_at": IMPORTED_AT,
                "executable_version": list(sys.version_info[:3]),
            },
        )

    if path == "/import":
        name = query["name"]
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            return _json(start_response, {"ok": False, "error": repr(exc)})
        return _json(
            start_response,
            {
                "ok": True,
                "version": getattr(module, "__version__", None),
                "file": getattr(module, "__file__", None),
            },
        )

    if path == "/fork":
        try:
            pid = os.fork()
        except RuntimeError as exc:
            return _json(start_response, {"forked": False, "error": str(exc)})
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        return _json(start_response, {"forked": True})

    if path == "/global":
        if method == "POST":
            STATE["value"] = _read_body(environ).decode("utf-8")
        return _json(start_response, {"value": STATE["value"], "interp_id": interp_id()})

    if path == "/cpu":
        n = int(query.get("n", "1000000"))
        with _Tracked() as tracked:
            started = time.perf_counter()
            cpu_started = time.thread_time()
            total = 0
            for i in range(n):
                total += i * i
            elapsed = time.perf_counter() - started
            cpu = time.thread_time() - cpu_started
        return _json(
            start_response,
            {
                "interp_id": interp_id(),
                "elapsed": elapsed,
                "cpu": cpu,
                "checksum": total % 1000003,
                "in_flight": tracked.in_flight,
            },
        )

    if path == "/sleep":
        with _Tracked() as tracked:
            time.sleep(float(query.get("s", "1")))
        return _json(start_response, {"interp_id": interp_id(), "in_flight": tracked.in_flight})

    if path == "/together":
        parties, slot = int(query["parties"]), int(query["slot"])
        with open(query["file"], "r+b") as fh, mmap.mmap(fh.fileno(), parties) as marks:
            marks[slot] = 1
            # The GIL is not handed to another thread for as long as this
            # spins: only a request with a GIL of its own can mark its slot.
            interval = sys.getswitchinterval()
            sys.setswitchinterval(1000.0)
            try:
                deadline = time.monotonic() + 20
                while not (seen := marks[:parties] == b"\x01" * parties) and time.monotonic() < deadline:
                    pass
            finally:
                sys.setswitchinterval(interval)
        return _json(start_response, {"interp_id": interp_id(), "seen": seen})

    if path == "/barrier":
        with _lock:
            barrier = BARRIERS.setdefault(
                query["token"], threading.Barrier(int(query["parties"]), timeout=20)
            )
        barrier.wait()
        return _json(
            start_response, {"interp_id": interp_id(), "thread_ident": threading.get_ident()}
        )

    return _text(start_response, "no route %s\n" % path, "404 Not Found")
