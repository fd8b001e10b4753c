"""A small FastAPI app for the Vivarium demo: pydantic models, a dependency, lifespan.

FastAPI needs pydantic v2, whose compiled core (pydantic_core, built with PyO3) refuses
own-GIL subinterpreters. So examples/Caddyfile runs this app with ``isolation process``
and ``interpreters 2``: in two child processes of Caddy, each with the app in its main
interpreter (interpreter id 0), while the Flask, Django and Starlette apps have
interpreters of their own in the Caddy process. ``caddy python-check "app:app"
--working-dir examples/fastapi --venv examples/fastapi/.venv`` shows why.

Caddy mounts it under /fastapi (``handle_path /fastapi/* { python {...} }``): the ASGI scope has
root_path=/fastapi and the full path, e.g. /fastapi/items, and FastAPI routes and
builds its /docs page from that by itself.

Nothing here knows about Vivarium: the same file runs under any ASGI server, e.g.
``pip install uvicorn && uvicorn app:app`` (then at / instead of /fastapi/).

Routes:
  GET  /          a short HTML page with the links below
  POST /items     a JSON body validated by a pydantic model -> the priced item
                  (a bad body -> 422 with FastAPI's ``detail``)
  GET  /whoami    a dependency chain: the X-Token header -> a user, or 401
  GET  /info      interpreter id (0: the main interpreter), pid and parent pid (Caddy's),
                  versions, lifespan state
  GET  /docs      FastAPI's interactive API docs: Swagger UI, its JS and CSS served
                  from this app's venv (swagger-ui-bundle-v2), so it works offline
"""

import contextlib
import datetime
import html
import os
import sys
import threading
from importlib.metadata import version
from typing import Annotated

import fastapi
import pydantic
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from swagger_ui_bundle import swagger_ui_path

try:  # CPython's private module; present on 3.13+, the versions Vivarium supports
    import _interpreters
except ImportError:  # pragma: no cover - other Pythons, e.g. under uvicorn elsewhere
    _interpreters = None


def interpreter_id():
    return _interpreters.get_current()[0] if _interpreters else None


def now():
    return datetime.datetime.now(datetime.timezone.utc)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    """ASGI lifespan (``lifespan on`` in the Caddyfile): runs before the first request,
    and its shutdown on reload and exit. print() goes to Caddy's log."""
    app.state.started_at = now().isoformat(timespec="seconds")
    print(f"fastapi demo: startup in interpreter {interpreter_id()}", flush=True)
    yield
    print(f"fastapi demo: shutdown in interpreter {interpreter_id()}", flush=True)


# FastAPI's own /docs and /redoc pages load their JavaScript from a CDN and stay blank
# offline; /docs below serves Swagger UI from the venv instead, and ReDoc is left out.
app = FastAPI(title="Vivarium FastAPI demo", lifespan=lifespan, docs_url=None, redoc_url=None)
app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")


@app.get("/docs", include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    # Absolute URLs under the mount point: root_path is /fastapi under Caddy.
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root + app.openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
        swagger_favicon_url=f"{root}/docs-assets/favicon-32x32.png",
    )


# ------------------------------------------------------------ pydantic models


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    price: float = Field(gt=0, description="unit price")
    quantity: int = Field(default=1, ge=1, le=1000)
    tags: list[str] = []


class PricedItem(BaseModel):
    name: str
    quantity: int
    unit_price: float
    total: float
    tags: list[str]
    interpreter_id: int | None


@app.post("/items", response_model=PricedItem)
async def price_item(item: Item):
    """Validated by pydantic: a missing name, a price <= 0 or a quantity that is not a
    whole number gets FastAPI's 422 with one entry per problem."""
    return PricedItem(
        name=item.name,
        quantity=item.quantity,
        unit_price=item.price,
        total=round(item.price * item.quantity, 2),
        tags=sorted(set(item.tags)),
        interpreter_id=interpreter_id(),
    )


# --------------------------------------------------------------- dependencies

# Demo tokens. A real app would look the token up in a database.
USERS = {"t-alice": "alice", "t-bob": "bob"}


def token(x_token: Annotated[str, Header(description="t-alice or t-bob")]) -> str:
    return x_token


def current_user(tok: Annotated[str, Depends(token)]) -> str:
    user = USERS.get(tok)
    if user is None:
        raise HTTPException(status_code=401, detail="unknown token; try t-alice or t-bob")
    return user


@app.get("/whoami")
def whoami(user: Annotated[str, Depends(current_user)]):
    """A dependency chain: X-Token header -> token() -> current_user() -> user.
    No header: 422; an unknown token: 401."""
    return {"user": user}


# ----------------------------------------------------------------------- info


@app.get("/info")
def info(request: Request):
    return {
        # 0: the main interpreter of this process, a child of Caddy (isolation process).
        "interpreter_id": interpreter_id(),
        "pid": os.getpid(),
        "parent_pid": os.getppid(),
        "thread_id": threading.get_native_id(),
        "python": sys.version.split()[0],
        "sys_prefix": sys.prefix,
        "fastapi_version": fastapi.__version__,
        "pydantic_version": pydantic.VERSION,
        "pydantic_core_version": version("pydantic_core"),
        "starlette_version": version("starlette"),
        "fastapi_location": os.path.dirname(fastapi.__file__),
        # from lifespan (None when the server sends no lifespan events: lifespan off)
        "started_at": getattr(request.app.state, "started_at", None),
        "root_path": request.scope.get("root_path"),
        "path": request.url.path,
    }


PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>FastAPI on Vivarium</title>
<style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}}
code,pre{{background:#f3f3f3;padding:0 .2em}}</style></head>
<body>
<h1>Hello from FastAPI</h1>
<p>This page is served by a FastAPI app (ASGI) running in a child process of Caddy
(process <code>{pid}</code>, Caddy's is <code>{ppid}</code>), in that process's main
interpreter (id <code>{interp}</code>): <code>isolation process</code>, because
pydantic's compiled core refuses own-GIL subinterpreters. Two such processes serve
it. It has its own venv: FastAPI {fastapi_version}, pydantic {pydantic_version}.</p>
<ul>
  <li><a href="{root}/info">{root}/info</a> &mdash; JSON: interpreter, process, versions, lifespan state</li>
  <li><a href="{root}/docs">{root}/docs</a> &mdash; interactive API docs (try <code>POST /items</code>)</li>
  <li><a href="{root}/whoami">{root}/whoami</a> &mdash; a dependency; without an
    <code>X-Token</code> header it answers 422</li>
</ul>
<pre>curl -s -X POST {origin}{root}/items -H 'Content-Type: application/json' \\
     -d '{{"name": "pen", "price": 1.25, "quantity": 4}}'
curl -s {origin}{root}/whoami -H 'X-Token: t-alice'</pre>
<p><a href="/">&larr; all demo apps</a></p>
</body>
</html>
"""


@app.get("/", response_class=HTMLResponse, include_in_schema=False)
def homepage(request: Request):
    return PAGE.format(
        interp=interpreter_id(),
        pid=os.getpid(),
        ppid=os.getppid(),
        fastapi_version=fastapi.__version__,
        pydantic_version=pydantic.VERSION,
        root=html.escape(request.scope.get("root_path", "")),
        origin=html.escape(f"{request.url.scheme}://{request.url.netloc}"),
    )
