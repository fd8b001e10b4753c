"""Flask app that builds its own URLs: under a mount prefix they must carry it."""

from flask import Flask, redirect, url_for

app = Flask(__name__)


@app.get("/page")
def page():
    return {"self": url_for("page"), "external": url_for("page", _external=True)}


@app.get("/go")
def go():
    return redirect(url_for("page"))
