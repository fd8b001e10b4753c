"""FastAPI hello. pydantic_core refuses own-GIL interpreters, so Vivarium runs
this app with `isolation main` or `isolation process`."""

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from work import HELLO

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def hello():
    return HELLO
