"""The Starlette app every ASGI server in the benchmark runs: Vivarium, uvicorn, Granian."""

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from work import HELLO


async def hello(request):
    return PlainTextResponse(HELLO)


app = Starlette(routes=[Route("/", hello)])
