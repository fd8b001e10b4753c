"""A Starlette app (Starlette comes from the app's venv), served with lifespan on.

Routes (below the mount prefix):
  GET /info              pid, interpreter id, Starlette's version and file, the URL
                         Starlette builds for this route, the lifespan state
  GET /items/{n:int}     a path parameter, echoed with the query string
  WS  /ws                echoes text messages, with the lifespan state's greeting
"""

import contextlib
import os

import _interpreters
import starlette
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from starlette lifespan"}


async def info(request):
    return JSONResponse(
        {
            "framework": "starlette",
            "pid": os.getpid(),
            "interp_id": int(_interpreters.get_current()[0]),
            "gil": _interpreters.get_config(_interpreters.get_current()[0]).gil,
            "version": starlette.__version__,
            "file": starlette.__file__,
            "url_for": str(request.url_for("info")),
            "root_path": request.scope.get("root_path"),
            "greeting": request.state.greeting,
        }
    )


async def item(request):
    return JSONResponse({"n": request.path_params["n"], "q": request.query_params.get("q")})


async def ws_echo(websocket):
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        greeting = websocket.state.greeting  # lifespan state reaches WebSockets too
        await websocket.send_text(f"starlette:{message.get('text', '')}:{greeting}")


app = Starlette(
    routes=[
        Route("/info", info, name="info"),
        Route("/items/{n:int}", item),
        WebSocketRoute("/ws", ws_echo),
    ],
    lifespan=lifespan,
)
