"""Shared WSGI app of the stop_threads apps: reports this instance and its thread.

GET /instance -> {"instance", "thread", "thread_alive", "interp_count"}
"""

import json

import _interpreters


def make_app(instance, thread):
    def app(environ, start_response):
        body = json.dumps(
            {
                "instance": instance,
                "thread": thread.name if thread else None,
                "thread_alive": bool(thread and thread.is_alive()),
                "interp_count": len(_interpreters.list_all()),
            }
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    return app
