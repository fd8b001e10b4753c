"""ASGI app with a lifespan protocol. Standard library only.

Apps (module attributes):
  app                   startup waits 0.3 s, then fills the lifespan state; shutdown
                        prints "vivarium-lifespan-shutdown <instance>" and writes
                        <instance> to the marker file set by /arm
  fails_with_message    answers lifespan.startup with lifespan.startup.failed and a message
  fails_with_exception  raises in lifespan startup

HTTP routes of `app`:
  GET /state            the request's scope["state"] (then sets a key in that copy)
  GET /arm?marker=P     shutdown will write this instance's id to the file P
  GET /info             instance id, whether startup ran, pid and interpreter id
"""

import asyncio
import json
import os
import time
import uuid
from urllib.parse import parse_qs

import _interpreters

INSTANCE = uuid.uuid4().hex
LIFE = {"startup": False, "shutdown": False, "marker": None, "lifespan_calls": 0}

FAIL_MESSAGE = "vivarium-test: the database is unreachable"
FAIL_EXCEPTION = "vivarium-test: startup exploded"


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


def on_shutdown():
    LIFE["shutdown"] = True
    print(f"vivarium-lifespan-shutdown {INSTANCE}", flush=True)
    if LIFE["marker"]:
        with open(LIFE["marker"], "w") as fh:
            fh.write(INSTANCE)


async def lifespan(scope, receive, send):
    LIFE["lifespan_calls"] += 1
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await asyncio.sleep(0.3)  # traffic must wait for this
            scope["state"]["greeting"] = "hello from startup"
            scope["state"]["instance"] = INSTANCE
            scope["state"]["started_at"] = time.time()
            LIFE["startup"] = True
            print(f"vivarium-lifespan-startup {INSTANCE}", flush=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    path = scope["path"][len(scope.get("root_path", "")):]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
    if path == "/state":
        has_state = "state" in scope
        state = scope.get("state")
        seen = dict(state) if state is not None else None
        if state is not None:
            state["mutated_by_request"] = True  # must not leak into other requests
        await send_json(send, {"has_state": has_state, "state": seen, "instance": INSTANCE})
    elif path == "/arm":
        LIFE["marker"] = query["marker"]
        await send_json(send, {"armed": LIFE["marker"], "instance": INSTANCE})
    elif path == "/info":
        await send_json(
            send,
            {
                "instance": INSTANCE,
                "startup": LIFE["startup"],
                "lifespan_calls": LIFE["lifespan_calls"],
                "pid": os.getpid(),
                "interp_id": int(_interpreters.get_current()[0]),
            },
        )
    else:
        await send_json(send, {"error": f"no route {path}"}, status=404)


async def fails_with_message(scope, receive, send):
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": FAIL_MESSAGE})
        return
    await send_json(send, {"error": "must never serve"}, status=500)


def explode_in_startup():
    raise RuntimeError(FAIL_EXCEPTION)


async def fails_with_exception(scope, receive, send):
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        explode_in_startup()
    await send_json(send, {"error": "must never serve"}, status=500)
