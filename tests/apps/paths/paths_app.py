"""Path test app: tells where it thinks it is mounted. Standard library only.

  wsgi   WSGI: {"script_name", "path_info", "request_uri", "link"}; link is the URL
         the app builds for its own /next, as frameworks do (SCRIPT_NAME + path)
  asgi   ASGI: {"root_path", "path", "raw_path", "link"}
  shop   WSGI, an app written for a server that hands it the full path (caddy-snake,
         gunicorn behind a proxy): PATH_INFO /item/<x> answers 200 with x, else 404
"""

import json


def _json(obj):
    return json.dumps(obj).encode()


def wsgi(environ, start_response):
    body = _json(
        {
            "script_name": environ["SCRIPT_NAME"],
            "path_info": environ["PATH_INFO"],
            "request_uri": environ.get("REQUEST_URI"),
            "link": environ["SCRIPT_NAME"] + "/next",
        }
    )
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


async def asgi(scope, receive, send):
    assert scope["type"] == "http"
    body = _json(
        {
            "root_path": scope["root_path"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "link": scope["root_path"] + "/next",
        }
    )
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def shop(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/item/"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [path[len("/item/"):].encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found: " + path.encode()]
