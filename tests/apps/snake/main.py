"""The Flask app of caddy-snake's README, as its users write it, plus the
interpreter that answered."""

import os

import _interpreters
from flask import Flask

app = Flask(__name__)


@app.route("/hello-world")
def hello():
    return "Hello world!"


@app.route("/item/<name>")
def item(name):
    return {"item": name, "interp_id": int(_interpreters.get_current()[0])}


@app.route("/env/<name>")
def env(name):
    return {"name": name, "value": os.environ.get(name)}
