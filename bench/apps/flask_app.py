"""The Flask app every WSGI server in the benchmark runs: Vivarium, gunicorn, Granian."""

from flask import Flask, Response, request

from work import HELLO, burn, download_body

app = Flask(__name__)


@app.get("/")
def hello():
    return Response(HELLO, mimetype="text/plain")


@app.get("/cpu")
def cpu():
    return Response(str(burn()), mimetype="text/plain")


@app.get("/download")
def download():
    return Response(download_body(), mimetype="application/octet-stream")


@app.post("/upload")
def upload():
    size = 0
    while chunk := request.stream.read(256 * 1024):
        size += len(chunk)
    return Response(str(size), mimetype="text/plain")
