"""Flask test app (WSGI), for `isolation interpreter`.

Routes:
  GET /info            interpreter id, pid, Flask version
  GET /square?n=N      {"app": "flask", "n": N, "square": N*N, "interp_id": ...}
  GET /import?name=M   whether module M is importable here
"""

import importlib
import os

import _interpreters
import flask
from flask import Flask, jsonify, request

app = Flask(__name__)


def interp_id() -> int:
    return int(_interpreters.get_current()[0])


@app.get("/info")
def info():
    return jsonify(app="flask", pid=os.getpid(), interp_id=interp_id(), version=flask.__version__)


@app.get("/square")
def square():
    n = int(request.args["n"])
    return jsonify(app="flask", n=n, square=n * n, interp_id=interp_id())


@app.get("/import")
def import_module():
    try:
        module = importlib.import_module(request.args["name"])
    except ImportError as exc:
        return jsonify(ok=False, error=repr(exc))
    return jsonify(ok=True, file=getattr(module, "__file__", None))
