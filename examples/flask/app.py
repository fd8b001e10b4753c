"""A small Flask app for the Vivarium demo.

Caddy mounts it under /flask (``handle_path /flask/* { python {...} }`` in examples/Caddyfile), so the
server passes SCRIPT_NAME=/flask and Flask's url_for() builds /flask/... links by itself.
Nothing here knows about Vivarium: the same file runs under any WSGI server.
"""

import datetime
import os
import sys
import threading
import time

from importlib.metadata import version

import flask
from flask import Flask, Response, jsonify, render_template_string, request

try:  # CPython's private module; present on 3.13+, the versions Vivarium supports
    import _interpreters
except ImportError:  # pragma: no cover - other Pythons, e.g. running under flask run
    _interpreters = None

app = Flask(__name__)

# Process-wide facts are the same for every app in the Vivarium process (pid, cwd);
# the interpreter id and the imported Flask (from this app's venv) are per app.
STARTED = datetime.datetime.now(datetime.timezone.utc)
FLASK_VERSION = version("flask")  # found in this app's venv, not the process's


def interpreter_info():
    return {
        "interpreter_id": _interpreters.get_current()[0] if _interpreters else None,
        "pid": os.getpid(),
        "thread_id": threading.get_native_id(),
        "python": sys.version.split()[0],
        "sys_prefix": sys.prefix,
        "flask_version": FLASK_VERSION,
        "flask_location": os.path.dirname(flask.__file__),
        "started": STARTED.isoformat(timespec="seconds"),
    }


PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Flask on Vivarium</title>
<style>body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .2em}</style></head>
<body>
<h1>Hello from Flask</h1>
<p>This page is served by a Flask app running inside Caddy, in its own
own-GIL subinterpreter (id <code>{{ info.interpreter_id }}</code>, process
<code>{{ info.pid }}</code>).</p>
<p>Mounted at <code>{{ request.script_root or "/" }}</code>; this request's path inside
the app is <code>{{ request.path }}</code>.</p>
<ul>
  <li><a href="{{ url_for('hello_json') }}">{{ url_for('hello_json') }}</a> &mdash; JSON</li>
  <li><a href="{{ url_for('interpreter') }}">{{ url_for('interpreter') }}</a> &mdash; which interpreter answered</li>
  <li><a href="{{ url_for('stream') }}">{{ url_for('stream') }}</a> &mdash; a streamed response</li>
</ul>
<p><a href="/">&larr; all demo apps</a></p>
</body>
</html>
"""


@app.get("/")
def index():
    return render_template_string(PAGE, info=interpreter_info())


@app.get("/api/hello")
def hello_json():
    name = request.args.get("name", "world")
    return jsonify(
        message=f"Hello, {name}!",
        time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        script_root=request.script_root,
        path=request.path,
    )


@app.get("/interpreter")
def interpreter():
    return jsonify(interpreter_info())


@app.get("/stream")
def stream():
    """Sends one line every 0.2 s; curl -N shows them arriving one by one."""
    try:
        count = max(1, min(int(request.args.get("n", 10)), 100))
    except ValueError:
        count = 10

    def lines():
        for i in range(1, count + 1):
            yield f"line {i} of {count} at {time.monotonic():.3f}\n"
            if i < count:
                time.sleep(0.2)

    return Response(lines(), mimetype="text/plain")


if __name__ == "__main__":  # plain `python app.py` for comparison, without Vivarium
    app.run(port=5000)
