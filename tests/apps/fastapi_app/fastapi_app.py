"""FastAPI test app (ASGI), for `isolation main` and `isolation shared`.

FastAPI needs pydantic_core, a PyO3 extension that refuses own-GIL interpreters.
Routes:
  GET  /info               pid, interpreter id, sys.path, code versions, lifespan state
  GET  /import?name=M      whether module M is importable here, and from which file
  POST /items              JSON body validated by a pydantic model -> computed total
                           (a bad body -> 422 with FastAPI's `detail`)
  GET  /whoami             dependency injection: X-Token header -> user (Depends chain)
  POST /tasks/{key}?value= answers at once; a BackgroundTask records value afterwards
  GET  /tasks/{key}        what the background task recorded (404 until it ran)
  GET  /lifespan           state the lifespan startup set
  GET  /cpu?n=N            a pure-Python loop of N iterations on the event loop's thread;
                           reports its CPU time, the pid, and when it began and ended
                           (time.monotonic, the same clock in every process)
  WS   /ws                 echoes each text message as "echo:<text>", bytes reversed
"""

import importlib
import os
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager

import _interpreters
import pydantic
import pydantic_core
from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, WebSocket
from fastapi import WebSocketDisconnect
from pydantic import BaseModel, Field

import fastapi_helpers

CODE_VERSION = "original"

# A mark on the compiled PyO3 module object: it survives as long as that object is not
# replaced by a fresh import (reloads of an `isolation main` app must keep it).
_compiled = sys.modules["pydantic_core._pydantic_core"]
if not hasattr(_compiled, "vivarium_test_stamp"):
    _compiled.vivarium_test_stamp = uuid.uuid4().hex
RECORDED: dict[str, dict] = {}
LIFESPAN = {"startups": 0, "shutdowns": 0, "token": None}


def interp_id() -> int:
    return int(_interpreters.get_current()[0])


@asynccontextmanager
async def lifespan(app: FastAPI):
    LIFESPAN["startups"] += 1
    LIFESPAN["token"] = uuid.uuid4().hex
    app.state.started_token = LIFESPAN["token"]
    app.state.started_in = interp_id()
    yield
    LIFESPAN["shutdowns"] += 1


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)
    quantity: int = Field(default=1, ge=1)
    tags: list[str] = []


class Priced(BaseModel):
    name: str
    total: float
    tags: list[str]
    interp_id: int


@app.get("/info")
def info():
    return {
        "app": "fastapi",
        "pid": os.getpid(),
        "interp_id": interp_id(),
        "sys_path": list(sys.path),
        "code_version": CODE_VERSION,
        "helper_version": fastapi_helpers.HELPER_VERSION,
        "pydantic": pydantic.VERSION,
        "pydantic_core_file": pydantic_core.__file__,
        "pydantic_core_stamp": _compiled.vivarium_test_stamp,
        "thread_ident": threading.get_ident(),
    }


@app.get("/import")
def import_module(name: str):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        return {"ok": False, "error": repr(exc)}
    return {"ok": True, "version": getattr(module, "__version__", None), "file": getattr(module, "__file__", None)}


@app.post("/items", response_model=Priced)
async def price_item(item: Item):
    return Priced(
        name=item.name.upper(),
        total=fastapi_helpers.total(item.price, item.quantity),
        tags=sorted(item.tags),
        interp_id=interp_id(),
    )


USERS = {"t-alice": "alice", "t-bob": "bob"}


def token_header(x_token: str = Header()) -> str:
    return x_token


def current_user(token: str = Depends(token_header)) -> str:
    user = USERS.get(token)
    if user is None:
        raise HTTPException(status_code=401, detail="unknown token")
    return user


@app.get("/whoami")
def whoami(user: str = Depends(current_user)):
    return {"user": user}


def record(key: str, value: str) -> None:
    RECORDED[key] = {"value": value, "interp_id": interp_id()}


@app.post("/tasks/{key}")
def start_task(key: str, value: str, background: BackgroundTasks):
    background.add_task(record, key, value)
    return {"queued": key}


@app.get("/tasks/{key}")
def task_result(key: str):
    if key not in RECORDED:
        raise HTTPException(status_code=404, detail="not recorded yet")
    return RECORDED[key]


@app.get("/lifespan")
def lifespan_state():
    return {
        "token": getattr(app.state, "started_token", None),
        "started_in": getattr(app.state, "started_in", None),
        "startups": LIFESPAN["startups"],
    }


@app.get("/cpu")
async def cpu(n: int):
    began, started = time.monotonic(), time.thread_time()
    x = 0
    for i in range(n):
        x += i * i
    return {"cpu": time.thread_time() - started, "pid": os.getpid(), "x": x % 7,
            "began": began, "ended": time.monotonic()}


@app.websocket("/ws")
async def echo(ws: WebSocket):
    await ws.accept()
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await ws.send_text("echo:" + message["text"])
            elif message.get("bytes") is not None:
                await ws.send_bytes(message["bytes"][::-1])
    except WebSocketDisconnect:
        return
