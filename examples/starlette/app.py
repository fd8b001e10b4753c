"""A small Starlette app for the Vivarium demo: server-sent events and a WebSocket echo.

Caddy mounts it under /starlette (``handle_path /starlette/* { python {...} }`` in examples/Caddyfile).
The ASGI scope then has root_path=/starlette and the full path, e.g. /starlette/events,
and Starlette routes that to the /events route by itself. The page below uses relative
URLs (``events``, ``ws``), so it works under any prefix.

Nothing here knows about Vivarium: the same file runs under any ASGI server, e.g.
``pip install uvicorn && uvicorn app:app`` (then at / instead of /starlette/).
"""

import asyncio
import contextlib
import datetime
import html
import json
import os
import sys
import threading

from importlib.metadata import version

import starlette
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

try:  # CPython's private module; present on 3.13+, the versions Vivarium supports
    import _interpreters
except ImportError:  # pragma: no cover - other Pythons, e.g. under uvicorn elsewhere
    _interpreters = None

STARLETTE_VERSION = version("starlette")  # found in this app's venv, not the process's


def interpreter_id():
    return _interpreters.get_current()[0] if _interpreters else None


def now():
    return datetime.datetime.now(datetime.timezone.utc)


@contextlib.asynccontextmanager
async def lifespan(app):
    """ASGI lifespan (``lifespan on`` in the Caddyfile).

    Runs once per interpreter, on its event loop, before it gets any request. What it
    yields is the lifespan state: every request gets a copy as ``request.state``.
    print() goes to Caddy's log.
    """
    started = now()
    print(f"starlette demo: startup in interpreter {interpreter_id()}", flush=True)
    yield {"started_at": started.isoformat(timespec="seconds")}
    print(f"starlette demo: shutdown in interpreter {interpreter_id()}", flush=True)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Starlette on Vivarium</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }}
code {{ background: #f3f3f3; padding: 0 .2em; }}
ol, #echo-log {{ font-family: ui-monospace, monospace; font-size: .9rem; max-height: 14rem;
  overflow-y: auto; background: #fafafa; border: 1px solid #ddd; padding: .5rem 2.5rem; }}
#echo-log {{ list-style: none; padding: .5rem; }}
.status {{ color: #666; }}
</style>
</head>
<body>
<h1>Hello from Starlette</h1>
<p>This page is served by a Starlette (ASGI) app running inside Caddy, on the asyncio
event loop of its own own-GIL subinterpreter (id <code>{interp}</code>, process
<code>{pid}</code>). ASGI <code>root_path</code> is <code>{root_path}</code>, the request
path <code>{path}</code>.</p>

<h2>Server-sent events</h2>
<p><a href="events">events</a> sends one event a second, {count} in all.
<span class="status" id="sse-status">connecting&hellip;</span></p>
<ol id="sse-log"></ol>

<h2>WebSocket echo</h2>
<form id="echo-form">
  <input id="echo-text" size="30" value="hello, Vivarium" autocomplete="off">
  <button id="echo-send" disabled>Send</button>
  <span class="status" id="ws-status">connecting&hellip;</span>
</form>
<ul id="echo-log"></ul>

<p><a href="info">info</a> &mdash; JSON: interpreter, process, Starlette version, lifespan state</p>
<p><a href="/">&larr; all demo apps</a></p>

<script>
"use strict";
function add(list, text) {{
  const item = document.createElement("li");
  item.textContent = text;
  list.appendChild(item);
  list.scrollTop = list.scrollHeight;
}}

// Server-sent events, from "events" relative to this page (so /starlette/events).
const sseLog = document.getElementById("sse-log");
const sseStatus = document.getElementById("sse-status");
const source = new EventSource("events");
source.onopen = () => {{ sseStatus.textContent = "connected"; }};
source.onmessage = (e) => {{
  const d = JSON.parse(e.data);
  add(sseLog, `${{d.time}}  interpreter ${{d.interpreter_id}}`);
}};
source.addEventListener("done", () => {{
  source.close();  // or EventSource would reconnect and start over
  sseStatus.textContent = "stream complete (reload for more)";
}});
source.onerror = () => {{ sseStatus.textContent = "disconnected; retrying"; }};

// WebSocket echo. The URL is built from this page's address: ws:// or wss:// to
// "ws" next to it, so /starlette/ws under Caddy.
const echoLog = document.getElementById("echo-log");
const wsStatus = document.getElementById("ws-status");
const sendButton = document.getElementById("echo-send");
const input = document.getElementById("echo-text");
const url = new URL("ws", location.href);
url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(url);
socket.onopen = () => {{ wsStatus.textContent = "connected to " + url; sendButton.disabled = false; }};
socket.onmessage = (e) => add(echoLog, "\\u2190 " + e.data);
socket.onclose = (e) => {{
  wsStatus.textContent = `closed (code ${{e.code}})`;
  sendButton.disabled = true;
}};
document.getElementById("echo-form").onsubmit = (e) => {{
  e.preventDefault();
  if (!input.value) return;
  add(echoLog, "\\u2192 " + input.value);
  socket.send(input.value);
  input.value = "";
}};
</script>
</body>
</html>
"""

DEFAULT_EVENTS = 30


async def homepage(request: Request):
    return HTMLResponse(
        PAGE.format(
            interp=interpreter_id(),
            pid=os.getpid(),
            root_path=html.escape(request.scope.get("root_path") or "(empty)"),
            path=html.escape(request.url.path),
            count=DEFAULT_EVENTS,
        )
    )


async def events(request: Request):
    """Server-sent events: one a second, ``?n=`` of them (default 30), then ``done``.

    The loop ends early when the client goes away: send() then fails and Starlette
    stops the generator. Waiting here costs no thread, only an asyncio task.
    """
    try:
        count = max(1, min(int(request.query_params.get("n", DEFAULT_EVENTS)), 300))
    except ValueError:
        count = DEFAULT_EVENTS

    async def stream():
        for n in range(1, count + 1):
            data = {
                "n": n,
                "of": count,
                "time": now().isoformat(timespec="milliseconds"),
                "interpreter_id": interpreter_id(),
            }
            yield f"id: {n}\ndata: {json.dumps(data)}\n\n"
            if n < count:
                await asyncio.sleep(1)
        yield "event: done\ndata: {}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def echo(websocket: WebSocket):
    """Sends every text or binary message back as it came."""
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


async def info(request: Request):
    return JSONResponse(
        {
            "interpreter_id": interpreter_id(),
            "pid": os.getpid(),
            # The interpreter's event loop thread: the same for every request it serves.
            "thread_id": threading.get_native_id(),
            "python": sys.version.split()[0],
            "sys_prefix": sys.prefix,
            "starlette_version": STARLETTE_VERSION,
            "starlette_location": os.path.dirname(starlette.__file__),
            "started_at": request.state.started_at,  # from lifespan
            "root_path": request.scope.get("root_path"),
            "path": request.url.path,
        }
    )


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/events", events),
        WebSocketRoute("/ws", echo),
        Route("/info", info),
    ],
    lifespan=lifespan,
)
